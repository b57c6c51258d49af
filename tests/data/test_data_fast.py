"""VGGData's speed options against independent references: reduced JPEG decoding (libjpeg's sizes,
and the pixels against an anti-aliased INTER_AREA resize), the crop-window warp against the
bilinear sample positions written out in numpy, and the channels-last batch with recycled buffers."""
import json

import cv2
import numpy as np
import pytest
import torch

from datatest_util import photo, write_photos
from vgg_caffe import Net
from vgg_caffe.data import image, transforms
from vgg_caffe.data.convert import Options, convert_imageset

NAMES = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
BATCH, SCALE, CROP = 8, [40, 56], 32


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fast")
    write_photos(tmp / "imgs", size=(160, 120))
    (tmp / "list.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(NAMES)))
    convert_imageset(str(tmp / "imgs"), str(tmp / "list.txt"), str(tmp / "db"), Options(encoded=True),
                     progress=False, log=lambda *a: None)
    return tmp


def layer(db, **options):
    cfg = {"source": str(db / "db"), "batch_size": BATCH, "scale": SCALE, "crop_size": CROP, "mirror": True,
           "color_shift": 0.0, "mean_value": [0, 0, 0], **options}
    return Net('layer { name: "data" type: "Python" top: "data" top: "label" python_param { '
               f'module: "vgg_caffe.data.vgg_layer" layer: "VGGData" param_str: \'{json.dumps(cfg)}\' }} }}',
               "TRAIN").layer("data")


def draws(it, j):
    return transforms.vgg_draws(0, it, j, True, SCALE, True, 0.0)


def test_reduced_decode_sizes():
    img = photo("chelsea", (203, 157))
    jpeg = image.encode(img, "jpg")
    assert image.jpeg_frame(jpeg) == (3, 157, 203)
    for f in (2, 4, 8):
        want = (-(-157 // f), -(-203 // f))          # libjpeg's scaled size: ceil(H/f) x ceil(W/f)
        assert image.reduced_size(157, 203, f) == want
        assert image.decode(jpeg, image.COLOR, reduce=f).shape == want + (3,)
        assert image.decode(jpeg, image.GRAY, reduce=f).shape == want + (1,)
    assert image.decode(image.encode(img, "png"), image.COLOR, reduce=2).shape == (157, 203, 3)  # not JPEG
    # The largest f with S * f <= the smaller side: never upscaled after the reduced decode.
    assert image.reduction(157, 203, 48) == 2 and image.reduction(157, 203, 39) == 4
    assert image.reduction(400, 600, 50) == 8 and image.reduction(157, 203, 79) == 1
    # Each reduced pixel is about the mean of its f x f block.
    full = image.decode(jpeg, image.COLOR).astype(np.float64)
    block = full[:156, :202].reshape(78, 2, 101, 2, 3).mean((1, 3))
    assert np.abs(image.decode(jpeg, image.COLOR, reduce=2)[:78, :101] - block).mean() < 2.0


def area_twin(db, it, j):
    """The crop of the stored photo resized to smallest side S with OpenCV's anti-aliased
    INTER_AREA (block averages), at the draws' offsets and flip."""
    d = draws(it, j)
    img = cv2.imread(str(db / "imgs" / NAMES[(it * BATCH + j) % 4]))
    h, w = (d["S"], int(round(160 * d["S"] / 120)))
    r = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    y, x = int(d["uy"] * (h - CROP + 1)), int(d["ux"] * (w - CROP + 1))
    out = r[y:y + CROP, x:x + CROP]
    return (out[:, ::-1] if d["flip"] else out).transpose(2, 0, 1)


def test_reduced_decode_in_the_layer(db, monkeypatch):
    factors = []
    real = image.decode

    def spy(data, mode=image.COLOR, reduce=1):
        factors.append(reduce)
        return real(data, mode, reduce)

    monkeypatch.setattr(image, "decode", spy)
    reduced, exact = layer(db, reduced_decode=True), layer(db)
    warped = layer(db, reduced_decode=True, fast_resize=True)
    errors = {"reduced": [], "exact": [], "warped": []}
    for it in range(3):
        factors.clear()
        got, label = reduced.batch(it)
        assert factors == [2] * BATCH          # S <= 56 <= 120 / 2: decoded at half size
        assert got.shape == (BATCH, 3, CROP, CROP) and label.shape == (BATCH,)
        full, warp = exact.batch(it)[0], warped.batch(it)[0]
        for j in range(BATCH):
            ref = area_twin(db, it, j)
            errors["reduced"].append(np.abs(got[j].numpy() - ref).mean())
            errors["exact"].append(np.abs(full[j].numpy() - ref).mean())
            errors["warped"].append(np.abs(warp[j].numpy() - ref).mean())
    # The documented pixel-level difference: the block means of the reduced decode sit closer
    # to an anti-aliased resize than bilinear samples of the full decode do (and a crop off by
    # a pixel would be far from both).
    assert max(np.mean(errors["reduced"]), np.mean(errors["warped"])) < np.mean(errors["exact"]) < 6.0
    assert abs(np.mean(errors["warped"]) - np.mean(errors["reduced"])) < 0.2
    factors.clear()
    layer(db, reduced_decode=True, scale=[64, 80], crop_size=32).batch(0)
    assert factors == [1] * BATCH              # S > 120 / 2: full size


def bilinear_twin(img, S, uy, ux, flip, crop):
    """Bilinear samples at ((y + i + 0.5) * H / h - 0.5, (x + j + 0.5) * W / w - 0.5), borders
    replicated: the rescale to smallest side S followed by the crop, in float64 numpy."""
    H, W = img.shape[:2]
    h, w = (S, int(round(W * S / H))) if H <= W else (int(round(H * S / W)), S)
    y, x = int(uy * (h - crop + 1)), int(ux * (w - crop + 1))
    rows = np.clip((y + np.arange(crop) + 0.5) * H / h - 0.5, 0, H - 1)
    cols = np.clip((x + np.arange(crop) + 0.5) * W / w - 0.5, 0, W - 1)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, H - 1), np.minimum(c0 + 1, W - 1)
    fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
    f = img.astype(np.float64)
    out = ((1 - fr) * ((1 - fc) * f[r0][:, c0] + fc * f[r0][:, c1])
           + fr * ((1 - fc) * f[r1][:, c0] + fc * f[r1][:, c1]))
    return out[:, ::-1] if flip else out


def test_fast_resize_samples_the_same_positions(db):
    fast, exact = layer(db, fast_resize=True), layer(db)
    diffs = []
    for it in range(3):
        got, full = fast.batch(it)[0], exact.batch(it)[0]
        for j in range(BATCH):
            d = draws(it, j)
            img = cv2.imread(str(db / "imgs" / NAMES[(it * BATCH + j) % 4]))
            ref = bilinear_twin(img, d["S"], d["uy"], d["ux"], d["flip"], CROP).transpose(2, 0, 1)
            # OpenCV's warp quantises positions to 1/32 pixel: a few levels at sharp edges at most.
            assert np.abs(got[j].numpy() - ref).max() <= 6
            diffs.append(np.abs(got[j].numpy() - full[j].numpy()))
    diffs = np.stack(diffs)
    assert diffs.mean() < 0.5 and (diffs > 2).mean() < 0.01    # the documented rounding difference


def test_batch_is_channels_last_and_buffers_recycled_only_when_free(db):
    l = layer(db)
    first, _ = l.batch(0)
    assert first.shape == (BATCH, 3, CROP, CROP) and first.dtype == torch.float32
    assert first.is_contiguous(memory_format=torch.channels_last)
    keep = first.clone()
    second, _ = l.batch(1)                     # `first` is alive: a new buffer
    assert second.data_ptr() != first.data_ptr() and torch.equal(first, keep)
    ptr = second.data_ptr()
    del second
    third, _ = l.batch(2)                      # `second` was released: its buffer is reused
    assert third.data_ptr() == ptr and torch.equal(first, keep)
    assert torch.equal(third, layer(db).batch(2)[0])
    # The net reads it as it is: channels-last, no copy.
    net = Net(f'''layer {{ name: "data" type: "Python" top: "data" top: "label" python_param {{
        module: "vgg_caffe.data.vgg_layer" layer: "VGGData" param_str: '{json.dumps({"source": str(db / "db"),
        "batch_size": BATCH, "scale": SCALE, "crop_size": CROP})}' }} }}
        layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param {{ num_output: 2 kernel_size: 3 }} }}''',
              "TRAIN")
    net()
    assert net.blobs["data"].is_contiguous(memory_format=torch.channels_last)
