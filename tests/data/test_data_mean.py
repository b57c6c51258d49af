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
    r = run_tool("compute_image_mean", db, tmp_path / "m.binaryproto", check=False)
    assert r.returncode == 1 and "00000004_big.jpg" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(CaffeError, match="00000004_big.jpg"):
        mean_lib.compute(str(db))
    _, pixel, count = mean_lib.compute(str(db), per_pixel=False)
    imgs = [cv2.imread(str(root / n)).astype(np.float64).reshape(-1, 3) for n in names + ["big.jpg"]]
    np.testing.assert_allclose(pixel, np.concatenate(imgs).mean(axis=0), atol=1e-6)
    assert count == 5
