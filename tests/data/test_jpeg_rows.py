"""image.decode_top (the top rows of a JPEG through the system's libjpeg, vgg_caffe/data/_jpegrows.c)
against OpenCV's cv2.imdecode of the whole file, bitwise: real photos in 4:2:0, 4:4:4,
progressive, grey, odd sizes and libjpeg's reduced sizes; the files it must decline (an EXIF
orientation OpenCV applies, CMYK, PNG, corrupt data); and VGGData's batches with it against the
batches of whole decodes."""
import io
import json

import cv2
import numpy as np
import pytest

from datatest_util import photo, write_photos
from vgg_caffe import Net
from vgg_caffe.data import image, transforms
from vgg_caffe.data.convert import Options, convert_imageset

pytestmark = pytest.mark.skipif(image._jpegrows is None, reason="built without libjpeg's headers")


def encodings():
    """(name, JPEG bytes) of real photos written several ways."""
    out = []
    for name, size in (("astronaut", (203, 157)), ("chelsea", (160, 120)), ("coffee", (123, 77))):
        img = photo(name, size)
        out.append((f"{name} 4:2:0", image.encode(img, "jpg")))
        out.append((f"{name} progressive",
                    cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()))
        out.append((f"{name} 4:4:4", cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                                                cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])[1].tobytes()))
    out.append(("camera grey", image.encode(photo("camera", (141, 99)), "jpg")))
    return out


@pytest.mark.parametrize("name,data", encodings(), ids=[n for n, _ in encodings()])
def test_top_rows_are_opencvs_rows(name, data):
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}
    for reduce, flag in flags.items():
        whole = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        h = whole.shape[0]
        for rows in sorted({1, h // 3, h // 2 + 1, h - 1, h}):
            img, valid = image.decode_top(data, rows, reduce)
            assert img.shape == whole.shape and rows <= valid <= h
            assert np.array_equal(img[:valid], whole[:valid]), (name, reduce, rows)


def test_files_it_declines():
    from PIL import Image

    img = photo("coffee", (160, 120))
    pil = Image.fromarray(img[:, :, ::-1])

    def with_orientation(value):
        exif = pil.getexif()
        exif[0x0112] = value
        buf = io.BytesIO()
        pil.save(buf, "JPEG", quality=95, exif=exif.tobytes())
        return buf.getvalue()

    upright, turned = with_orientation(1), with_orientation(6)
    assert image.jpeg_orientation(upright) == 1 and image.jpeg_orientation(turned) == 6
    assert image.jpeg_orientation(image.encode(img, "jpg")) == 1   # no EXIF at all
    jpeg = image.encode(img, "jpg")
    assert image.jpeg_orientation(jpeg[:2] + b"\x00" + jpeg[2:]) == 0   # markers that do not parse
    assert image.decode_top(jpeg[:2] + b"\x00" + jpeg[2:], 50) is None
    got = image.decode_top(upright, 50)
    assert got is not None and np.array_equal(got[0][:got[1]], image.decode(upright)[:got[1]])
    assert image.decode_top(turned, 50) is None                   # OpenCV turns it: decode() does
    cmyk = io.BytesIO()
    pil.convert("CMYK").save(cmyk, "JPEG")
    assert image.decode_top(cmyk.getvalue(), 50) is None          # Pillow's exact CMYK path
    assert image.decode_top(image.encode(img, "png"), 50) is None
    jpeg = image.encode(img, "jpg")
    corrupt = jpeg[:200] + bytes(len(jpeg) - 202) + jpeg[-2:]     # header intact, scan zeroed
    out = image.decode_top(corrupt, 50)
    assert out is None or out[0].shape == (120, 160, 3)           # never a crash or a raise


def test_plan_rows_cover_what_the_crop_reads():
    """plan_rows: the crop from a decode holding only those rows (the rest filled with noise)
    is the crop of the whole decode, for corner and window plans over many random draws; a
    warp plan needs every row."""
    full = photo("astronaut", (203, 157))
    rng = np.random.default_rng(3)
    kinds = set()
    for k in range(300):
        d = {"S": int(rng.integers(40, 90)), "uy": rng.random(), "ux": rng.random(),
             "flip": bool(rng.random() < 0.5), "alpha": np.zeros(3)}
        for fast in (False, True):
            plan = transforms.vgg_plan(full.shape[:2], d, 32, True, 1, fast)
            rows = transforms.plan_rows(plan, full.shape[0])
            kinds.add(plan[0])
            if plan[0] == "warp":
                assert rows == full.shape[0]
                continue
            partial = full.copy()
            partial[rows:] = rng.integers(0, 256, partial[rows:].shape, dtype=np.uint8)
            got = transforms.vgg_apply(partial, plan, rows)
            assert got is not None and np.array_equal(got, transforms.vgg_apply(full, plan)), (k, fast, plan[0])
    assert {"corner", "window"} <= kinds
    # A window that comes out short falls back to the warp, which reads anywhere: the caller
    # must decode the whole image then.
    plan = ("warp", np.array([[1.0, 0, 0], [0, 1.0, 0]]), 32, False, None)
    assert transforms.vgg_apply(full, plan, full.shape[0] - 1) is None


def test_layer_batches_are_those_of_whole_decodes(tmp_path, monkeypatch):
    """VGGData with decode_top against the same layer decoding every image whole (the extension
    switched off), default and fast_resize, with scale jitter, bitwise; and the top-row decode
    really ran, stopping short of the last row."""
    write_photos(tmp_path / "imgs", size=(203, 157))
    names = sorted(p.name for p in (tmp_path / "imgs").iterdir())
    (tmp_path / "list.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names * 3)))
    convert_imageset(str(tmp_path / "imgs"), str(tmp_path / "list.txt"), str(tmp_path / "db"),
                     Options(encoded=True, shuffle=True), progress=False, log=lambda *a: None)
    stops = []
    real = image.decode_top

    def spy(data, rows, reduce=1, probed=None):
        out = real(data, rows, reduce, probed)
        if out is not None:
            stops.append((rows, out[0].shape[0]))
        return out

    def make(**options):
        cfg = {"source": str(tmp_path / "db"), "batch_size": 6, "scale": [40, 120], "crop_size": 32,
               "color_shift": 0.1, **options}
        return Net('layer { name: "data" type: "Python" top: "data" top: "label" python_param { '
                   f'module: "vgg_caffe.data.vgg_layer" layer: "VGGData" param_str: \'{json.dumps(cfg)}\' }} }}',
                   "TRAIN").layer("data")

    monkeypatch.setattr(image, "decode_top", spy)
    for options in ({}, {"fast_resize": True}):
        tops = [make(**options).batch(it)[0] for it in range(4)]
        with monkeypatch.context() as m:
            m.setattr(image, "_jpegrows", None)
            wholes = [make(**options).batch(it)[0] for it in range(4)]
        for a, b in zip(tops, wholes):
            assert np.array_equal(a.numpy(), b.numpy())
    assert stops and all(rows < height for rows, height in stops)
