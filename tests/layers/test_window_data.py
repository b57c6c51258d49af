"""WindowData: R-CNN windows files over real photos, crops checked against OpenCV warps written here."""
import cv2
import numpy as np
import pytest
import skimage.data
import torch

from vgg_caffe import Net
from vgg_caffe.errors import CaffeError
from vgg_caffe.layers.window_data import read_windows_file
from vgg_caffe.proto import pb

MEAN = np.array([104.0, 117.0, 123.0])


def photo(name, size):
    """A scikit-image sample photo as BGR uint8, resized to (w, h)."""
    return np.ascontiguousarray(cv2.resize(getattr(skimage.data, name)()[:, :, ::-1], size,
                                           interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("windows")
    imgs = {"astronaut": photo("astronaut", (120, 100)), "chelsea": photo("chelsea", (90, 110))}
    for name, img in imgs.items():
        cv2.imwrite(str(root / f"{name}.png"), img)  # PNG: read back pixel for pixel
    return root, imgs


def write_windows(path, records):
    """records: [(image path, (channels, height, width), [(class, overlap, x1, y1, x2, y2), ...])]."""
    lines = []
    for i, (img, dims, windows) in enumerate(records):
        lines += [f"# {i}", img, *map(str, dims), str(len(windows))]
        lines += [" ".join(map(str, w)) for w in windows]
    path.write_text("\n".join(lines) + "\n")
    return path


def net_text(source, batch, crop, fg_fraction=0.5, extra="", transform="", root=""):
    return f'''layer {{ name: "data" type: "WindowData" top: "data" top: "label"
        transform_param {{ crop_size: {crop} {transform} }}
        window_data_param {{ source: "{source}" batch_size: {batch} fg_fraction: {fg_fraction}
          fg_threshold: 0.5 bg_threshold: 0.5 root_folder: "{root}" {extra} }} }}'''


def chw(img):
    return img.transpose(2, 0, 1).astype(np.float64)


def test_windows_file_classification(tmp_path):
    f = write_windows(tmp_path / "w.txt", [
        ("a.png", (3, 100, 120), [(3, 0.8, 1, 2, 30, 40), (2, 0.4, 0, 0, 9, 9), (4, 0.1, 5, 5, 20, 20)]),
        ("b.png", (3, 110, 90), [(1, 0.5, 0, 0, 5, 5)])])
    images, fg, bg = read_windows_file(str(f), "/root/", fg_threshold=0.5, bg_threshold=0.3)
    assert [p for p, _ in images] == ["/root/a.png", "/root/b.png"]
    # overlap >= fg_threshold: foreground, class kept; < bg_threshold: background, label 0; else dropped.
    assert [(w["image"], w["label"], w["x1"], w["y2"]) for w in fg] == [(0, 3, 1, 40), (1, 1, 0, 5)]
    assert [(w["image"], w["label"], w["overlap"], w["x2"]) for w in bg] == [(0, 0, 0.0, 20)]


def test_warp_mode_background_first_then_foreground(photos, tmp_path):
    root, imgs = photos
    src = write_windows(tmp_path / "w.txt", [
        (str(root / "astronaut.png"), (3, 100, 120), [(3, 0.8, 10, 20, 70, 90)]),
        (str(root / "chelsea.png"), (3, 110, 90), [(5, 0.1, 0, 0, 50, 40)])])
    net = Net(net_text(src, 4, 24, extra="scale: 0.5", transform="mean_value: 104 mean_value: 117 mean_value: 123"),
              "TRAIN")
    assert net.blob_shapes["data"] == (4, 3, 24, 24) and net.blob_shapes["label"] == (4,)
    net()
    data, label = net.blobs["data"].double().numpy(), net.blobs["label"]
    # batch_size - int(batch_size * fg_fraction) = 2 background windows first, label forced to 0.
    assert label.tolist() == [0, 0, 3, 3]
    bg = (chw(cv2.resize(imgs["chelsea"][0:41, 0:51], (24, 24), interpolation=cv2.INTER_LINEAR)) - MEAN[:, None, None]) * 0.5
    fg = (chw(cv2.resize(imgs["astronaut"][20:91, 10:71], (24, 24), interpolation=cv2.INTER_LINEAR)) - MEAN[:, None, None]) * 0.5
    for j, want in enumerate([bg, bg, fg, fg]):
        np.testing.assert_allclose(data[j], want, atol=1e-4)


def _context_net(photos, tmp_path, mirror, fg_fraction=1.0, batch=2):
    root, _ = photos
    src = write_windows(tmp_path / "w.txt", [(str(root / "astronaut.png"), (3, 100, 120), [(7, 0.9, 5, 10, 60, 70)])])
    return Net(net_text(src, batch, 32, fg_fraction, extra="context_pad: 4",
                        transform="mirror: true" if mirror else ""))


def test_context_pad_clips_at_the_border_and_pads_with_zero(photos, tmp_path):
    """Box (5, 10)-(60, 70), crop 32, context_pad 4, image 120x100. Worked by hand:
    context_scale = 32 / 24; half sizes (28, 30.5), centre (33, 40.5); expanded box
    x: round(33 -+ 37.33) = -4..70, y: round(40.5 -+ 40.67) = 0..81, so 75 x 82 unclipped;
    clipped x 0..70 (71 wide, 4 cut on the left); warped size round(71 * 32/75) = 30 wide,
    round(82 * 32/82) = 32 high; left padding round(4 * 32/75) = 2 columns of zeros."""
    _, imgs = photos
    net = _context_net(photos, tmp_path, mirror=False)
    net()
    got = net.blobs["data"][0].double().numpy()
    want = np.zeros((3, 32, 32))
    want[:, :, 2:32] = chw(cv2.resize(imgs["astronaut"][0:82, 0:71], (30, 32), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert net.blobs["label"].tolist() == [7, 7]


def test_mirror_flips_the_window_and_its_padding(photos, tmp_path):
    _, imgs = photos
    net = _context_net(photos, tmp_path, mirror=True, batch=16)
    net()
    warped = chw(cv2.resize(imgs["astronaut"][0:82, 0:71], (30, 32), interpolation=cv2.INTER_LINEAR))
    plain = np.zeros((3, 32, 32))
    plain[:, :, 2:] = warped
    # Mirrored: the padding follows the right edge (pad_x2 = 0), the warped window is flipped.
    flipped = np.zeros((3, 32, 32))
    flipped[:, :, :30] = warped[:, :, ::-1]
    kinds = []
    for sample in net.blobs["data"].double().numpy():
        if np.allclose(sample, plain, atol=1e-4):
            kinds.append("plain")
        else:
            np.testing.assert_allclose(sample, flipped, atol=1e-4)
            kinds.append("flipped")
    assert set(kinds) == {"plain", "flipped"}  # 16 coins


def test_square_mode(photos, tmp_path):
    """Box (30, 20)-(49, 79) is 20 x 60; square mode grows the width to the height about the
    centre (40, 50): x 10..70, y 20..80, warped whole to 24 x 24."""
    root, imgs = photos
    src = write_windows(tmp_path / "w.txt", [(str(root / "astronaut.png"), (3, 100, 120), [(2, 1.0, 30, 20, 49, 79)])])
    net = Net(net_text(src, 1, 24, 1.0, extra='crop_mode: "square"'))
    net()
    want = chw(cv2.resize(imgs["astronaut"][20:81, 10:71], (24, 24), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_allclose(net.blobs["data"][0].double().numpy(), want, atol=1e-4)


def test_mean_file_cache_images_and_root_folder(photos, tmp_path):
    root, imgs = photos
    g = np.random.default_rng(0)
    mean = g.uniform(0, 255, (3, 30, 28)).astype(np.float32)
    blob = pb.BlobProto(num=1, channels=3, height=30, width=28)
    blob.data.extend(mean.ravel().tolist())
    (tmp_path / "mean.binaryproto").write_bytes(blob.SerializeToString())
    src = write_windows(tmp_path / "w.txt", [("chelsea.png", (3, 110, 90), [(1, 0.9, 20, 30, 79, 99)])])
    outs = []
    for cache in ("false", "true"):
        net = Net(net_text(src, 2, 24, 1.0, extra=f"cache_images: {cache}", root=f"{root}/",
                           transform=f'mean_file: "{tmp_path / "mean.binaryproto"}"'))
        net()
        outs.append(net.blobs["data"].double().numpy())
    # The mean is read at offset (mean_width - crop) / 2 = 2 in both directions.
    want = chw(cv2.resize(imgs["chelsea"][30:100, 20:80], (24, 24), interpolation=cv2.INTER_LINEAR)) - mean[:, 2:26, 2:26]
    for out in outs:
        np.testing.assert_allclose(out[0], want, atol=1e-3)
        np.testing.assert_allclose(out[1], want, atol=1e-3)


def test_batches_are_keyed_by_iteration(photos, tmp_path):
    root, _ = photos
    src = write_windows(tmp_path / "w.txt", [
        (str(root / "astronaut.png"), (3, 100, 120), [(c, 0.9, 4 * c, 3 * c, 40 + 4 * c, 50 + 3 * c) for c in range(1, 9)])])
    layer = Net(net_text(src, 6, 16, 1.0)).layer("data")
    whole = layer.batch(5)
    part = layer.batch(5, 2, 4)
    assert torch.equal(part[0], whole[0][2:4]) and torch.equal(part[1], whole[1][2:4])
    labels = torch.cat([layer.batch(i)[1] for i in range(10)])
    assert len(set(labels.tolist())) >= 6  # uniform draws over the 8 foreground windows


MALFORMED = [
    ("", "is empty", None),
    ("0\na.png\n3\n10\n10\n0\n", "expected '#'", 1),
    ("# 1\na.png\n3\n10\n10\n0\n", "image_index 1, expected 0", 1),
    ("# 0\na.png\n3\n10\nwide\n0\n", "width must be an integer", 5),
    ("# 0\na.png\n3\n10\n10\n1\n1 0.9 0 0 5\n", "ends where y2", 7),
    ("# 0\na.png\n3\n10\n10\n1\n1 high 0 0 5 5\n", "overlap must be a number", 7),
    ("# 0\na.png\n3\n10\n10\n2\n1 0.9 0 0 5 5\n0 0.8 1 1 4 4\n", "foreground classes must be > 0", 8),
    ("# 0\na.png\n3\n10\n10\n1\n1 0.9 6 0 5 5\n", "is not a box", 7),
]


@pytest.mark.parametrize("text, reason, line", MALFORMED)
def test_malformed_windows_file_names_file_and_line(photos, tmp_path, text, reason, line):
    root, _ = photos
    src = tmp_path / "bad_windows.txt"
    src.write_text(text.replace("a.png", str(root / "astronaut.png")))
    where = f"bad_windows.txt, line {line}" if line else "bad_windows.txt"
    with pytest.raises(CaffeError, match=rf"layer 'data' \(WindowData\).*{where}.*{reason}"):
        Net(net_text(src, 2, 16))


def test_missing_image_and_window_outside_image(photos, tmp_path):
    root, _ = photos
    src = write_windows(tmp_path / "w.txt", [("nothere.png", (3, 10, 10), [(1, 0.9, 0, 0, 5, 5)])])
    with pytest.raises(CaffeError, match=r"w.txt, line 2: image .*nothere.png does not exist"):
        Net(net_text(src, 1, 16, 1.0))
    src = write_windows(tmp_path / "w.txt", [(str(root / "astronaut.png"), (3, 100, 120), [(1, 0.9, 100, 50, 130, 80)])])
    net = Net(net_text(src, 1, 16, 1.0))
    with pytest.raises(CaffeError, match=r"w.txt, line 7: window 100 50 130 80 lies outside image"):
        net()


@pytest.mark.parametrize("crop, fg_fraction, extra, reason", [
    (0, 0.5, "", "crop_size"),
    (16, 0.5, 'crop_mode: "stretch"', "crop_mode 'stretch' is not one of: warp, square"),
    (16, 0.5, "context_pad: 8", "context_pad 8"),
    (16, 0.5, "", "needs 1 background windows, the file has none"),
])
def test_bad_parameters(photos, tmp_path, crop, fg_fraction, extra, reason):
    root, _ = photos
    src = write_windows(tmp_path / "w.txt", [(str(root / "astronaut.png"), (3, 100, 120), [(1, 0.9, 0, 0, 5, 5)])])
    with pytest.raises(CaffeError, match=rf"layer 'data' \(WindowData\).*{reason}"):
        Net(net_text(src, 2, crop, fg_fraction, extra=extra))
