"""Caffe's Data, ImageData and HDF5Data layers against Caffe's DataTransformer written out here."""
import cv2
import h5py
import numpy as np
import pytest
import torch

from datatest_util import write_photos
from vgg_caffe import Net
from vgg_caffe.data import mean as mean_lib
from vgg_caffe.data import transforms
from vgg_caffe.data.convert import Options, convert_imageset
from vgg_caffe.errors import CaffeError

NAMES = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
QUIET = dict(progress=False, log=lambda *a: None)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("caffe")
    root = tmp / "imgs"
    write_photos(root, size=(40, 30))
    (tmp / "list.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(NAMES)))
    convert_imageset(str(root), str(tmp / "list.txt"), str(tmp / "raw"), Options(), **QUIET)
    convert_imageset(str(root), str(tmp / "list.txt"), str(tmp / "enc"), Options(encoded=True), **QUIET)
    m, _, _ = mean_lib.compute(str(tmp / "raw"))
    mean_lib.write(m, m.mean(axis=(1, 2)), 4, str(tmp / "mean.binaryproto"), None)
    return tmp


def caffe_transform_ref(x, u, train, crop, mirror, mean, scale):
    """DataTransformer::Transform: do_mirror = mirror && Rand(2); TRAIN offsets Rand(H - crop + 1),
    TEST (H - crop) / 2; out[c, h, w'] = (x[c, h_off + h, w_off + w] - mean[c, h_off + h, w_off + w]) * scale."""
    c, H, W = x.shape
    do_mirror = mirror and u[0] < 0.5
    h_off = int(np.floor(u[1] * (H - crop + 1))) if train else (H - crop) // 2
    w_off = int(np.floor(u[2] * (W - crop + 1))) if train else (W - crop) // 2
    out = np.zeros((c, crop, crop))
    for h in range(crop):
        for w in range(crop):
            wt = crop - 1 - w if do_mirror else w
            out[:, h, wt] = (x[:, h_off + h, w_off + w] - mean[:, h_off + h, w_off + w]) * scale
    return out


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_data_layer_mean_file_crop_mirror_scale(tree, phase):
    net = Net(f'''layer {{ name: "d" type: "Data" top: "data" top: "label"
        data_param {{ source: "{tree / 'raw'}" batch_size: 3 backend: LMDB }}
        transform_param {{ crop_size: 24 mirror: true scale: 0.5 mean_file: "{tree / 'mean.binaryproto'}" }} }}''', phase)
    assert net.blob_shapes["data"] == (3, 3, 24, 24)
    layer = net.layer("d")
    mean = mean_lib.read_mean_file(str(tree / "mean.binaryproto"))
    for it in (0, 1):
        data, label = layer.batch(it)
        for j in range(3):
            g = it * 3 + j
            x = cv2.imread(str(tree / "imgs" / NAMES[g % 4])).transpose(2, 0, 1).astype(np.float64)
            u = transforms.caffe_draws(0, "Data", it, j)
            ref = caffe_transform_ref(x, u, phase == "TRAIN", 24, True, mean, 0.5)
            np.testing.assert_allclose(data[j].numpy(), ref, atol=1e-4)
            assert label[j] == g % 4


def test_encoded_force_gray_and_mean_value(tree):
    net = Net(f'''layer {{ name: "d" type: "Data" top: "data"
        data_param {{ source: "{tree / 'enc'}" batch_size: 2 backend: LMDB }}
        transform_param {{ force_gray: true mean_value: 100 }} }}''', "TEST")
    assert net.blob_shapes["data"] == (2, 1, 30, 40)
    data, = net.layer("d").batch(0)
    ref = cv2.imread(str(tree / "imgs" / NAMES[1]), cv2.IMREAD_GRAYSCALE).astype(np.float32) - 100
    np.testing.assert_array_equal(data[1, 0].numpy(), ref)


def test_image_data_layer(tree):
    net = Net(f'''layer {{ name: "d" type: "ImageData" top: "data" top: "label"
        image_data_param {{ source: "{tree / 'list.txt'}" root_folder: "{tree / 'imgs'}/" batch_size: 4
                           new_height: 20 new_width: 25 shuffle: true }} }}''', "TEST")
    data, label = net.layer("d").batch(0)
    assert data.shape == (4, 3, 20, 25) and sorted(label.tolist()) == [0, 1, 2, 3]
    for j in range(4):
        img = cv2.imread(str(tree / "imgs" / NAMES[int(label[j])]))
        ref = cv2.resize(img, (25, 20)).transpose(2, 0, 1)
        np.testing.assert_array_equal(data[j].numpy(), ref)


def test_missing_source_names_layer(tmp_path):
    with pytest.raises(CaffeError, match=r"layer 'd' \(Data\).*nope.*does not exist"):
        Net(f'layer {{ name: "d" type: "Data" top: "data" data_param {{ source: "{tmp_path}/nope" batch_size: 2 }} }}',
            "TRAIN")


def test_hdf5_data(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 2, 3)).astype(np.float64)
    b = rng.standard_normal((3, 2, 3)).astype(np.float64)
    for name, x in (("a.h5", a), ("b.h5", b)):
        with h5py.File(tmp_path / name, "w") as f:
            f["data"] = x
            f["label"] = np.arange(len(x)) + (0 if name == "a.h5" else 100)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'a.h5'}\nb.h5\n")  # relative names: next to the list
    proto = f'''layer {{ name: "h" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param {{ source: "{tmp_path / 'list.txt'}" batch_size: 3 SHUFFLE }} }}'''
    net = Net(proto.replace("SHUFFLE", ""), "TRAIN")
    assert net.blob_shapes["data"] == (3, 2, 3) and net.blob_shapes["label"] == (3,)
    layer = net.layer("h")
    rows = np.concatenate([a, b])
    labels = np.array([0, 1, 2, 3, 4, 100, 101, 102])
    for it in range(4):
        data, label = layer.batch(it)
        idx = [(it * 3 + j) % 8 for j in range(3)]
        assert data.dtype == torch.float32
        np.testing.assert_array_equal(data.numpy(), rows[idx].astype(np.float32))
        np.testing.assert_array_equal(label.numpy(), labels[idx])
    shuffled = Net(proto.replace("SHUFFLE", "shuffle: true"), "TRAIN").layer("h")
    epoch = torch.cat([shuffled.batch(it)[1] for it in range(8)])[:8]  # 24 rows = 3 epochs; first one
    assert sorted(epoch.tolist()) == sorted(labels.tolist()) and epoch.tolist() != labels.tolist()
    with pytest.raises(CaffeError, match="no dataset"):
        Net(proto.replace("SHUFFLE", "").replace('top: "label"', 'top: "lbl"'), "TRAIN")
