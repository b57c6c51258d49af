"""compute_image_mean: the BlobProto against numpy's mean of the same images."""
import json

import cv2
import numpy as np
import pytest

from datatest_util import call_tool as run_tool, photo, write_photos
from vgg_caffe.data import mean as mean_lib
from vgg_caffe.data.convert import Options, convert_imageset
from vgg_caffe.errors import CaffeError
from vgg_caffe.proto import pb

QUIET = dict(progress=False, log=lambda *a: None)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "imgs"
    write_photos(root, size=(40, 30))
    cv2.imwrite(str(root / "big.jpg"), photo("astronaut", (50, 30)))
    names = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    (tmp_path / "same.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    (tmp_path / "mixed.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names + ["big.jpg"])))
    return root, names


@pytest.mark.parametrize("encoded", [False, True])
def test_mean_blob_and_pixel(tree, tmp_path, encoded):
    root, names = tree
    db = tmp_path / "db"
    convert_imageset(str(root), str(tmp_path / "same.txt"), str(db), Options(encoded=encoded), **QUIET)
    out = tmp_path / "mean.binaryproto"
    r = run_tool("compute_image_mean", db, out)
    imgs = np.stack([cv2.imread(str(root / n)).astype(np.float64) for n in names])
    expected = imgs.mean(axis=0).transpose(2, 0, 1)  # (C, H, W), BGR
    blob = pb.BlobProto.FromString(out.read_bytes())
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, 30, 40)
    np.testing.assert_allclose(np.asarray(blob.data).reshape(3, 30, 40), expected, rtol=0, atol=1e-4)
    pixel = json.loads((tmp_path / "mean.json").read_text())["mean_pixel_bgr"]
    np.testing.assert_allclose(pixel, expected.mean(axis=(1, 2)), atol=1e-6)
    assert f"mean_value channel [0]: {expected[0].mean():.6f}" in r.stdout
    np.testing.assert_allclose(mean_lib.read_mean_file(out), expected, atol=1e-4)


def test_size_mismatch_names_key(tree, tmp_path):
    root, names = tree
    db = tmp_path / "db"
    convert_imageset(str(root), str(tmp_path / "mixed.txt"), str(db), Options(), **QUIET)
    r = run_tool("compute_image_mean", db, tmp_path / "m.binaryproto", "--check_size", check=False)
    assert r.returncode == 1 and "00000004_big.jpg" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "m.binaryproto").exists() and not (tmp_path / "m.json").exists()
    with pytest.raises(CaffeError, match="00000004_big.jpg"):
        mean_lib.compute(str(db))
    _, pixel, count = mean_lib.compute(str(db), per_pixel=False)
    imgs = [cv2.imread(str(root / n)).astype(np.float64).reshape(-1, 3) for n in names + ["big.jpg"]]
    np.testing.assert_allclose(pixel, np.concatenate(imgs).mean(axis=0), atol=1e-6)
    assert count == 5


def test_readme_pipeline_min_side_then_mean(tmp_path):
    """The README's sequence on photos of different aspect ratios: convert_imageset --min_side
    keeps them, so sizes differ; compute_image_mean then gives the mean pixel (what VGG subtracts:
    the per-channel mean over every pixel of every record, numpy's here), says the per-pixel blob
    was not written, and leaves a blob from an earlier run as it was."""
    root = tmp_path / "imgs"
    sizes = {"astronaut": (64, 48), "chelsea": (40, 80), "coffee": (50, 50), "rocket": (90, 30)}
    root.mkdir()
    for name, (w, h) in sizes.items():
        cv2.imwrite(str(root / f"{name}.png"), photo(name, (w, h)))
    (tmp_path / "list.txt").write_text("".join(f"{n}.png {i}\n" for i, n in enumerate(sizes)))
    r = run_tool("convert_imageset", root, tmp_path / "list.txt", tmp_path / "db", "--min_side", "32", "--quiet")
    out = tmp_path / "mean.binaryproto"
    out.write_bytes(b"from an earlier run")
    r = run_tool("compute_image_mean", tmp_path / "db", out)
    assert out.read_bytes() == b"from an earlier run"
    assert "records differ in size" in r.stderr and "was not written" in r.stderr and "mean_value:" in r.stderr
    # The reference: the same rescale by OpenCV, then the mean over all pixels.
    pixels = []
    for name in sizes:
        img = cv2.imread(str(root / f"{name}.png"))
        h, w = img.shape[:2]
        th, tw = (32, round(w * 32 / h)) if h <= w else (round(h * 32 / w), 32)
        pixels.append(cv2.resize(img, (tw, th), interpolation=cv2.INTER_LINEAR).reshape(-1, 3).astype(np.float64))
    expected = np.concatenate(pixels).mean(axis=0)
    info = json.loads((tmp_path / "mean.json").read_text())
    np.testing.assert_allclose(info["mean_pixel_bgr"], expected, atol=1e-6)
    assert info["records"] == 4 and "shape_chw" not in info
    for c in range(3):
        assert f"mean_value channel [{c}]: {expected[c]:.6f}" in r.stdout
