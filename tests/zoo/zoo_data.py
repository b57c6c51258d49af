"""Small data files for the zoo nets, written where their prototxt look (Caffe's relative paths).

`make_all(root)` writes, under `root`, every file tests/zoo/nets/*.prototxt reads: MNIST-, CIFAR-
and ImageNet-like LMDBs of Datum records and their mean blobs, the Flickr Style list files and
images, R-CNN windows files over photos, and the HDF5 files of hdf5_classification, the LSTM
language model and the FCN. Photos are scikit-image's samples; everything is seeded, so every run
sees the same records. The zoo tests run with `root` as the working directory, as Caffe's examples
run from the Caffe root.
"""
import os

import cv2
import h5py
import numpy as np
import skimage.data

from vgg_caffe.data import datum as datum_io
from vgg_caffe.data import mean as mean_lib
from vgg_caffe.data.db import Writer

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
NETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nets")


def photo(name, size):
    """A sample photo as BGR uint8 resized to (w, h) (grey photos as H x W x 1)."""
    img = getattr(skimage.data, name)()
    img = img[:, :, :3][:, :, ::-1] if img.ndim == 3 else img
    img = cv2.resize(np.ascontiguousarray(img), size, interpolation=cv2.INTER_AREA)
    return img if img.ndim == 3 else img[:, :, None]


def write_lmdb(path, images, labels):
    writer = Writer(path)
    for i, (img, label) in enumerate(zip(images, labels)):
        writer.put(f"{i:08d}", datum_io.from_image(img, label).SerializeToString())
    writer.close()


def write_mean(path, images):
    mean = np.mean([img.transpose(2, 0, 1).astype(np.float64) for img in images], axis=0)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(mean_lib.to_blob(mean.astype(np.float32)).SerializeToString())


def write_h5(list_path, h5_name, arrays):
    """A list file naming one .h5 file (relative to the working directory, as upstream's)."""
    os.makedirs(os.path.dirname(list_path), exist_ok=True)
    h5_path = os.path.join(os.path.dirname(list_path), h5_name)
    with h5py.File(h5_path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    with open(list_path, "w") as f:
        f.write(h5_path + "\n")


def mnist_like(g, n):
    """28x28 grey crops of the camera photo, shifted about, labels 0..9."""
    cam = photo("camera", (40, 40))
    imgs = []
    for _ in range(n):
        y, x = g.integers(0, 13, 2)
        imgs.append(np.ascontiguousarray(cam[y:y + 28, x:x + 28]))
    return imgs, [i % 10 for i in range(n)]


def photos(size, n, g):
    base = [photo(p, size) for p in PHOTOS]
    out = []
    for i in range(n):
        img = base[i % len(base)]
        out.append(np.ascontiguousarray(np.roll(img, int(g.integers(0, 8)), axis=1)))
    return out


def make_lmdbs(root, g):
    for split, n in (("train", 8), ("test", 6)):
        imgs, labels = mnist_like(g, n)
        write_lmdb(f"{root}/examples/mnist/mnist_{split}_lmdb", imgs, labels)
        pairs = [np.concatenate([imgs[i], imgs[(i + 1 + i % 2) % n]], axis=2) for i in range(n)]
        write_lmdb(f"{root}/examples/siamese/mnist_siamese_{split}_lmdb", pairs, [i % 2 for i in range(n)])
        cifar = photos((32, 32), n, g)
        write_lmdb(f"{root}/examples/cifar10/cifar10_{split}_lmdb", cifar, [i % 10 for i in range(n)])
        imagenet = photos((112, 112), n, g)
        write_lmdb(f"{root}/examples/imagenet/ilsvrc12_{'val' if split == 'test' else 'train'}_lmdb", imagenet,
                   [(3 * i) % 10 for i in range(n)])
    write_mean(f"{root}/examples/cifar10/mean.binaryproto", photos((32, 32), 8, g))
    write_mean(f"{root}/data/ilsvrc12/imagenet_mean.binaryproto", photos((112, 112), 8, g))


def make_flickr(root):
    folder = f"{root}/data/flickr_style/images"
    os.makedirs(folder, exist_ok=True)
    for split, names in (("train", PHOTOS), ("test", PHOTOS[::-1])):
        lines = []
        for i, name in enumerate(names):
            path = f"data/flickr_style/images/{name}.jpg"
            cv2.imwrite(f"{root}/{path}", photo(name, (150 - 10 * i, 120)))
            lines.append(f"{path} {(5 * i + 3) % 20}\n")
        with open(f"{root}/data/flickr_style/{split}.txt", "w") as f:
            f.writelines(lines)


def make_windows(root):
    folder = f"{root}/data/pascal/images"
    os.makedirs(folder, exist_ok=True)
    for split in ("trainval", "test"):
        lines = []
        for i, name in enumerate(PHOTOS):
            path = f"data/pascal/images/{name}.jpg"
            cv2.imwrite(f"{root}/{path}", photo(name, (160, 120)))
            windows = [(1 + (4 * i) % 20, 0.9, 20, 10, 110, 100), (2 + i, 0.6, 0, 0, 80, 70),
                       (7, 0.3, 40, 30, 159, 119), (3, 0.1, 100, 60, 150, 110)]
            lines += [f"# {i}", path, "3", "120", "160", str(len(windows))]
            lines += [" ".join(map(str, w)) for w in windows]
        with open(f"{root}/examples/finetune_pascal_detection/window_file_2007_{split}.txt", "w") as f:
            f.write("\n".join(lines) + "\n")


def make_hdf5(root, g):
    for split in ("train", "test"):
        x = g.standard_normal((20, 4)).astype(np.float32)
        y = (x[:, 0] + x[:, 1] ** 2 > 1).astype(np.float32)
        write_h5(f"{root}/examples/hdf5_classification/data/{split}.txt", f"{split}.h5", {"data": x, "label": y})
        # Two batches of 5 time steps x 3 streams; each stream starts a sentence at t = 0 and one
        # of them again later; targets are the next word, -1 past a sentence's end.
        words = g.integers(1, 20, (10, 3)).astype(np.float32)
        cont = np.ones((10, 3), np.float32)
        cont[0] = 0
        cont[6, 1] = 0
        target = np.roll(words, -1, axis=0)
        target[9] = 0
        target[5, 1] = -1
        write_h5(f"{root}/examples/lstm/{split}.txt", f"{split}.h5",
                 {"cont_sentence": cont, "input_sentence": words, "target_sentence": target})
        images = np.stack([photo(p, (32, 32)).transpose(2, 0, 1) for p in PHOTOS]).astype(np.float32)
        labels = g.integers(0, 5, (4, 1, 32, 32)).astype(np.float32)
        labels[:, :, :3] = 255  # a border of "ignore"
        write_h5(f"{root}/examples/fcn/{split}.txt", f"{split}.h5", {"data": images - 110, "label": labels})


def make_all(root):
    root = os.fspath(root)
    g = np.random.default_rng(2015)
    os.makedirs(f"{root}/examples/finetune_pascal_detection", exist_ok=True)
    make_lmdbs(root, g)
    make_flickr(root)
    make_windows(root)
    make_hdf5(root, g)
    return root
