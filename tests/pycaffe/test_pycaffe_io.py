"""caffe.io: the Transformer against a hand computation on a real photo (skimage's chelsea) and in
round trips, resize_image against OpenCV's bilinear resize, load_image in colour and grey,
oversample's ten crops by hand, and the proto <-> array conversions."""
import cv2
import numpy as np
import pytest
import skimage.data

from vgg_caffe.errors import CaffeError
from vgg_caffe.proto import pb

MEAN = np.array([104.0, 117.0, 123.0], np.float32)


@pytest.fixture(scope="module")
def chelsea():
    return skimage.data.chelsea()   # (300, 451, 3) uint8 RGB


def classic(caffe, shape, mean=MEAN):
    t = caffe.io.Transformer({"data": shape})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255)
    t.set_mean("data", mean)
    t.set_input_scale("data", 0.5)
    return t


def test_preprocess_by_hand_on_a_photo(caffe, chelsea):
    img = chelsea.astype(np.float32) / 255
    before = img.copy()
    out = classic(caffe, (1, 3, 300, 451)).preprocess("data", img)
    bgr = chelsea[:, :, ::-1].astype(np.float64)                  # RGB -> BGR, back to 0..255
    expected = (bgr.transpose(2, 0, 1) - MEAN[:, None, None]) * 0.5
    assert out.shape == (3, 300, 451) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(img, before)   # the caller's image is left alone


def test_round_trips(caffe, chelsea):
    img = chelsea.astype(np.float32) / 255
    t = classic(caffe, (1, 3, 300, 451))
    np.testing.assert_allclose(t.deprocess("data", t.preprocess("data", img)), img, atol=1e-5)
    batch = t.preprocess("data", img)[None]   # deprocess also takes the 1 x K x H x W blob
    np.testing.assert_allclose(t.deprocess("data", batch), img, atol=1e-5)
    mean_image = np.random.RandomState(0).rand(3, 300, 451).astype(np.float32) * 255
    t2 = classic(caffe, (1, 3, 300, 451), mean=mean_image)
    np.testing.assert_allclose(t2.deprocess("data", t2.preprocess("data", img)), img, atol=1e-4)
    # a transpose without a channel swap, on a 2-channel input
    t3 = caffe.io.Transformer({"x": (1, 2, 5, 4)})
    t3.set_transpose("x", (2, 1, 0))   # H x W x K -> K x W x H, whose inverse is itself
    patch = np.random.RandomState(1).rand(5, 4, 2).astype(np.float32)   # H x W as the input's last axes
    np.testing.assert_array_equal(t3.preprocess("x", patch), patch.transpose(2, 1, 0))
    np.testing.assert_allclose(t3.deprocess("x", t3.preprocess("x", patch)), patch)


def test_resize_matches_opencv_bilinear_inside(caffe, chelsea):
    img = chelsea.astype(np.float32) / 255
    for shape in [(64, 96), (520, 700)]:
        mine = caffe.io.resize_image(img, shape)
        theirs = cv2.resize(img, shape[::-1], interpolation=cv2.INTER_LINEAR)
        assert mine.shape == shape + (3,) and mine.dtype == np.float32
        np.testing.assert_allclose(mine[2:-2, 2:-2], theirs[2:-2, 2:-2], atol=2e-5)
    t = classic(caffe, (1, 3, 64, 96))
    out = t.preprocess("data", img)
    resized = cv2.resize(img, (96, 64), interpolation=cv2.INTER_LINEAR)
    expected = (resized[:, :, ::-1].transpose(2, 0, 1) * 255 - MEAN[:, None, None]) * 0.5
    np.testing.assert_allclose(out[:, 2:-2, 2:-2], expected[:, 2:-2, 2:-2], atol=1e-2)
    flat = np.full((4, 5, 3), 0.25, np.float32)
    assert (caffe.io.resize_image(flat, (7, 9)) == 0.25).all()
    five = np.random.RandomState(2).rand(6, 8, 5).astype(np.float32)
    assert caffe.io.resize_image(five, (12, 16)).shape == (12, 16, 5)


def test_transformer_checks(caffe):
    t = caffe.io.Transformer({"data": (1, 3, 8, 8)})
    with pytest.raises(CaffeError, match=r"nope is not one of the net inputs: \['data'\]"):
        t.set_raw_scale("nope", 2)
    with pytest.raises(ValueError, match="Mean channels incompatible"):
        t.set_mean("data", np.zeros(4))
    with pytest.raises(ValueError, match="Mean shape incompatible"):
        t.set_mean("data", np.zeros((3, 7, 8)))
    with pytest.raises(CaffeError, match="Channel swap"):
        t.set_channel_swap("data", (1, 0))
    with pytest.raises(CaffeError, match="Transpose order"):
        t.set_transpose("data", (1, 0))


def test_load_image_colour_grey_alpha(caffe, chelsea, tmp_path):
    path = str(tmp_path / "cat.png")
    cv2.imwrite(path, chelsea[:, :, ::-1])
    img = caffe.io.load_image(path)
    assert img.shape == (300, 451, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img, chelsea / 255.0, atol=1e-7)
    grey = caffe.io.load_image(path, color=False)
    c = chelsea / 255.0
    assert grey.shape == (300, 451, 1)
    np.testing.assert_allclose(grey[:, :, 0], 0.2125 * c[..., 0] + 0.7154 * c[..., 1] + 0.0721 * c[..., 2], atol=1e-6)
    gpath = str(tmp_path / "grey.png")
    cv2.imwrite(gpath, chelsea[:, :, 1])
    tiled = caffe.io.load_image(gpath)
    assert tiled.shape == (300, 451, 3) and (tiled[..., 0] == tiled[..., 2]).all()
    np.testing.assert_allclose(tiled[..., 0], chelsea[:, :, 1] / 255.0, atol=1e-7)
    apath = str(tmp_path / "alpha.png")
    cv2.imwrite(apath, np.dstack([chelsea[:, :, ::-1], np.full((300, 451), 7, np.uint8)]))
    np.testing.assert_allclose(caffe.io.load_image(apath), chelsea / 255.0, atol=1e-7)
    with pytest.raises(CaffeError, match="missing.png"):
        caffe.io.load_image(str(tmp_path / "missing.png"))


def test_oversample_ten_crops_by_hand(caffe):
    rng = np.random.RandomState(3)
    images = [rng.rand(7, 9, 2).astype(np.float32) for _ in range(2)]
    crops = caffe.io.oversample(images, (4, 6))
    assert crops.shape == (20, 4, 6, 2)
    for k, im in enumerate(images):
        # corners, then the centre (int(7/2 - 2), int(9/2 - 3)) = (1, 1), then the five mirrored
        windows = [im[0:4, 0:6], im[0:4, 3:9], im[3:7, 0:6], im[3:7, 3:9], im[1:5, 1:7]]
        expected = windows + [w[:, ::-1] for w in windows]
        np.testing.assert_array_equal(crops[10 * k:10 * k + 10], np.stack(expected))


def test_blobproto_conversions(caffe):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    blob = caffe.io.array_to_blobproto(a, diff=-a)
    assert list(blob.shape.dim) == [2, 3, 4]
    np.testing.assert_array_equal(caffe.io.blobproto_to_array(blob), a)
    np.testing.assert_array_equal(caffe.io.blobproto_to_array(blob, return_diff=True), -a)
    legacy = pb.BlobProto(num=1, channels=2, height=3, width=1, data=range(6))
    assert caffe.io.blobproto_to_array(legacy).shape == (1, 2, 3, 1)
    arrays = [a, np.ones((1, 2, 2, 2))]
    back = caffe.io.blobprotovector_str_to_arraylist(caffe.io.arraylist_to_blobprotovector_str(arrays))
    assert [x.shape for x in back] == [(2, 3, 4), (1, 2, 2, 2)]
    np.testing.assert_array_equal(back[0], a)


def test_datum_conversions(caffe, chelsea):
    small = np.ascontiguousarray(chelsea[:5, :6].transpose(2, 0, 1))   # C x H x W uint8
    d = caffe.io.array_to_datum(small, label=3)
    assert (d.channels, d.height, d.width, d.label) == (3, 5, 6, 3) and d.data == small.tobytes()
    np.testing.assert_array_equal(caffe.io.datum_to_array(d), small)
    f = caffe.io.array_to_datum(small.astype(np.float32) / 2)
    assert len(f.float_data) == small.size and not f.data
    np.testing.assert_allclose(caffe.io.datum_to_array(f), small / 2.0)
    ok, png = cv2.imencode(".png", chelsea[:5, :6, ::-1])
    encoded = pb.Datum(data=png.tobytes(), encoded=True, label=1)
    np.testing.assert_array_equal(caffe.io.datum_to_array(encoded), chelsea[:5, :6, ::-1].transpose(2, 0, 1))
    with pytest.raises(ValueError, match="3-d"):
        caffe.io.array_to_datum(np.zeros((2, 2)))
