"""VGGData's speed paths against independent references: the default's partial rescale against
the whole cv2.resize (bitwise), reduced JPEG decoding (libjpeg's sizes, and the pixels against an
anti-aliased INTER_AREA resize), fast_resize's window resize and warp against the bilinear sample
positions written out in numpy, the two-pass batch against one sample at a time, and the
channels-last batch with recycled buffers."""
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
    real, real_top = image.decode, image.decode_top

    def spy(data, mode=image.COLOR, reduce=1, probed=None):
        factors.append(reduce)
        return real(data, mode, reduce, probed)

    def spy_top(data, rows, reduce=1, probed=None):   # a decode of the top rows instead
        out = real_top(data, rows, reduce, probed)
        if out is not None:
            factors.append(reduce)
        return out

    monkeypatch.setattr(image, "decode", spy)
    monkeypatch.setattr(image, "decode_top", spy_top)
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


def bilinear_twin(img, S, uy, ux, flip, crop, shift=(0.0, 0.0)):
    """Bilinear samples at ((y + i + 0.5) * H / h - 0.5, (x + j + 0.5) * W / w - 0.5), borders
    replicated: the rescale to smallest side S followed by the crop, in float64 numpy; `shift`
    (rows, columns) is added to every position."""
    H, W = img.shape[:2]
    h, w = (S, int(round(W * S / H))) if H <= W else (int(round(H * S / W)), S)
    y, x = int(uy * (h - crop + 1)), int(ux * (w - crop + 1))
    rows = np.clip((y + np.arange(crop) + 0.5) * H / h - 0.5 + shift[0], 0, H - 1)
    cols = np.clip((x + np.arange(crop) + 0.5) * W / w - 0.5 + shift[1], 0, W - 1)
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
            # Positions within 1/64 pixel (window) or rounded to 1/32 (warp): a few levels at most.
            assert np.abs(got[j].numpy() - ref).max() <= 6
            diffs.append(np.abs(got[j].numpy() - full[j].numpy()))
    diffs = np.stack(diffs)
    assert diffs.mean() < 0.5 and (diffs > 2).mean() < 0.01    # the documented rounding difference


def test_resize_corner_is_the_whole_resize():
    """The top-left part of a resize computed from the top-left part of the image: bitwise the
    whole resize's pixels (OpenCV's positions depend only on the output index and the scale)."""
    rs = np.random.default_rng(0)
    cases = [((95, 99), (94, 99), 13, 85),      # the window would come out at its own size
             ((120, 160), (60, 80), 40, 50),    # exactly half: OpenCV's INTER_AREA shortcut
             ((60, 80), (120, 160), 100, 30),   # exactly twice
             ((120, 160), (120, 160), 50, 60)]  # no rescale at all
    for _ in range(300):
        H, W = (int(v) for v in rs.integers(8, 400, 2))
        h, w = int(rs.integers(max(1, H // 4), 2 * H)), int(rs.integers(max(1, W // 4), 2 * W))
        cases.append(((H, W), (h, w), int(rs.integers(1, h + 1)), int(rs.integers(1, w + 1))))
    for k, ((H, W), (h, w), rows, cols) in enumerate(cases):
        img = rs.integers(0, 256, (H, W, 1 if k % 7 == 3 else 3), dtype=np.uint8)
        if k % 5 == 0:
            img = cv2.GaussianBlur(img, (5, 5), 1.5).reshape(img.shape)
        whole = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
        got = image.resize_corner(img, h, w, rows, cols)
        assert got.shape == (rows, cols, img.shape[2]) and np.array_equal(got, whole[:rows, :cols]), (H, W, h, w)


def test_default_crop_is_the_whole_rescale_cropped():
    """vgg_crop (default), and the layer's plan-then-apply path, against cv2.resize of the whole
    photo, cropped and flipped in numpy: bitwise."""
    img = photo("chelsea", (333, 250))
    for it in range(40):
        d = transforms.vgg_draws(3, it, 0, it % 4 != 0, [224, 400], True, 0.1)
        h, w = image.min_side_size(250, 333, d["S"])
        train = it % 4 != 0
        y, x = transforms.crop_offset(h, 224, d["uy"], train), transforms.crop_offset(w, 224, d["ux"], train)
        ref = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)[y:y + 224, x:x + 224]
        ref = ref[:, ::-1] if d["flip"] else ref
        assert np.array_equal(transforms.vgg_crop(img, d, 224, train), ref)
        assert np.array_equal(transforms.vgg_apply(img, transforms.vgg_plan((250, 333), d, 224, train)), ref)


def test_window_origins():
    """_window: the crop's rows inside the window sit within ALIGN_TOL of the exact positions, the
    first one reads no row above the window unless it starts at 0, it covers every row read, and
    it is None only when no offset up to ALIGN_MAX qualifies (brute force)."""
    rs = np.random.default_rng(1)
    found = 0
    for _ in range(2000):
        s, crop = float(rs.uniform(0.3, 5.0)), int(rs.integers(16, 256))
        size = int(np.ceil((crop + rs.integers(0, 600)) * s)) + 1
        y = int(rs.integers(0, max(1, int(size / s) - crop)))
        got = transforms._window(y, s, size, crop)
        ok = [o for o in range(min(y, transforms.ALIGN_MAX) + 1)
              if abs(round((y - o) * s) - (y - o) * s) <= transforms.ALIGN_TOL
              and ((o + 0.5) * s >= 0.5 or round((y - o) * s) == 0)]
        if got is None:
            assert not ok
            continue
        found += 1
        o, r0, n = got
        assert o == ok[0] and abs(r0 - (y - o) * s) <= transforms.ALIGN_TOL
        assert r0 == 0 or (o + 0.5) * s - 0.5 >= 0
        last = int(np.floor((o + crop - 0.5) * s - 0.5)) + 1      # the last row read, window rows
        assert n == size - r0 or n > last + 1
    assert found > 1900


def test_fast_resize_window_and_warp(db, monkeypatch):
    """fast_resize's two methods on a photo: the window resize against the bilinear twin at the
    exact positions shifted by the window's offset (OpenCV's 1/2048 rounding only), and the warp
    (forced: no window may start before the crop) against the twin at the exact positions."""
    img = cv2.imread(str(db / "imgs" / NAMES[1]))
    kinds = []
    for it in range(30):
        d = draws(it, 0)
        plan = transforms.vgg_plan(img.shape[:2], d, CROP, True, 1, True)
        kinds.append(plan[0])
        got = transforms.vgg_apply(img, plan).astype(np.float64)
        if plan[0] == "window":
            window = plan
            (oy, r0, _), (ox, c0, _), fy, fx = plan[1]
            h, w = image.min_side_size(120, 160, d["S"])
            y, x = transforms.crop_offset(h, CROP, d["uy"], True), transforms.crop_offset(w, CROP, d["ux"], True)
            shift = (r0 - (y - oy) / fy, c0 - (x - ox) / fx)
            assert max(abs(v) for v in shift) <= transforms.ALIGN_TOL
            assert np.abs(got - bilinear_twin(img, d["S"], d["uy"], d["ux"], d["flip"], CROP, shift)).max() <= 1
        assert np.abs(got - bilinear_twin(img, d["S"], d["uy"], d["ux"], d["flip"], CROP)).max() <= 6
    assert kinds.count("window") > 20
    # A window whose resize comes out short falls back to the warp.
    (oy, r0, _), cols, fy, fx = window[1]
    short = ("window", ((oy, r0, 3), cols, fy, fx), CROP, True, (1 / fy, 1 / fx, 5, 7))
    warp = ("warp", transforms._warp_matrix(1 / fy, 1 / fx, 5, 7, CROP, True), CROP, True, None)
    assert np.array_equal(transforms.vgg_apply(img, short), transforms.vgg_apply(img, warp))
    monkeypatch.setattr(transforms, "ALIGN_MAX", 0)
    warped = 0
    for it in range(30):
        d = draws(it, 0)
        plan = transforms.vgg_plan(img.shape[:2], d, CROP, True, 1, True)
        warped += plan[0] == "warp"
        ref = bilinear_twin(img, d["S"], d["uy"], d["ux"], d["flip"], CROP)
        assert np.abs(transforms.vgg_apply(img, plan) - ref).max() <= 6
    assert warped > 20


def test_two_pass_batch_is_one_sample_at_a_time(db):
    for options in ({}, {"fast_resize": True}, {"fast_resize": True, "reduced_decode": True}):
        sampler = layer(db, **options).sampler
        many = sampler.samples(2, range(BATCH))
        for j, (crop, alpha, label) in enumerate(many):
            one = sampler.sample(2, j)
            assert np.array_equal(crop, one[0]) and np.array_equal(alpha, one[1]) and label == one[2]
        # The batch: crop + (colour shift - mean) in float32, the NHWC buffer read as NCHW.
        data = sampler.collate(many)[0].numpy()
        shifts = (transforms.color_shifts_bgr([a for _, a, _ in many]) - sampler.mean).astype(np.float32)
        for j, (crop, _, _) in enumerate(many):
            assert np.array_equal(data[j].transpose(1, 2, 0), crop.astype(np.float32) + shifts[j])


def test_rotated_jpeg_is_cropped_as_decoded(tmp_path):
    """A JPEG whose EXIF orientation turns it (the decoder applies it): the header's size is not the
    decode's, and the layer crops the decode as it is, with or without fast_resize."""
    from PIL import Image
    from vgg_caffe.data import datum, db as db_io
    pil = Image.fromarray(photo("coffee", (160, 120))[:, :, ::-1])
    exif = pil.getexif()
    exif[0x0112] = 6                                   # rotate 90 degrees clockwise
    buf = __import__("io").BytesIO()
    pil.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    w = db_io.Writer(str(tmp_path / "db"))
    w.put(b"00000000", datum.from_encoded(buf.getvalue(), 3).SerializeToString())
    w.close()
    decoded = image.decode(buf.getvalue())
    assert image.jpeg_frame(buf.getvalue())[1:] == (120, 160) and decoded.shape == (160, 120, 3)
    cfg = {"source": str(tmp_path / "db"), "batch_size": 2, "scale": SCALE, "crop_size": CROP, "mirror": True,
           "color_shift": 0.0, "mean_value": [0, 0, 0]}
    for fast in (False, True):
        sampler = layer(tmp_path, **{**cfg, "fast_resize": fast}).sampler
        for j in range(2):
            ref = transforms.vgg_crop(decoded, draws(0, j), CROP, True, fast_resize=fast)
            assert np.array_equal(sampler.sample(0, j)[0], ref)


def test_probe_is_what_decode_checks():
    jpeg = image.encode(photo("rocket", (64, 48)), "jpg")
    assert image.probe(jpeg) == ("jpeg", (3, 48, 64))
    assert image.probe(image.encode(photo("rocket", (64, 48)), "png")) == ("png", None)
    assert np.array_equal(image.decode(jpeg, probed=image.probe(jpeg)), image.decode(jpeg))
    for bad, why in ((b"", "empty file"), (jpeg[:-2][:len(jpeg) // 2], "truncated JPEG")):
        with pytest.raises(image.DecodeError, match=why):
            image.probe(bad)
        with pytest.raises(image.DecodeError, match=why):
            image.decode(bad)


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


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_finished_on_the_device_are_the_host_batches(db, workers):
    """finish_on (what the solver does on a GPU; here on the CPU, which runs the same code): the
    loader hands over uint8 crops and (N, 3) shifts, the float batch is pixel + (shift - mean) made
    by one torch op, bitwise the host collate's (OpenCV's float add), channels-last kept; also with
    worker processes and for a slice of the batch."""
    opts = {"color_shift": 0.1, "mean_value": [103.939, 116.779, 123.68], "workers": workers}
    host, dev = layer(db, **opts), layer(db, **opts)
    dev.finish_on(torch.device("cpu"))
    for it, (start, stop) in ((0, (0, BATCH)), (1, (0, BATCH)), (3, (2, 7))):
        a, la = host.batch(it, start, stop)
        b, lb = dev.batch(it, start, stop)
        assert b.dtype == torch.float32 and b.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(a, b) and torch.equal(la, lb)
    raw = dev.loader.batch(1)   # what crosses to the device: uint8 pixels, the shifts apart
    assert raw[0].dtype == torch.uint8 and raw[2].shape == (BATCH, 3)
    crops = dev.loader.samples(1)
    shifts = (transforms.color_shifts_bgr([a for _, a, _ in crops]) - np.array(opts["mean_value"])).astype(np.float32)
    assert np.array_equal(raw[2].numpy(), shifts)
    for j, (crop, _, _) in enumerate(crops):
        assert np.array_equal(raw[0][j].permute(1, 2, 0).numpy(), crop)
    dev.finish_on(None)   # back to the host collate
    assert torch.equal(dev.batch(1)[0], host.batch(1)[0])
    host.close(), dev.close()


def test_solver_on_a_gpu_finishes_vgg_batches_there(db, monkeypatch):
    """devices.feed_data_layers: on CUDA the VGG data layer is told to finish its batches on the
    device (its loader gets workers and pinned memory); on the CPU nothing changes."""
    from vgg_caffe.train import devices

    seen = []
    l = layer(db)
    monkeypatch.setattr(l, "finish_on", seen.append)
    devices.feed_data_layers([l], torch.device("cpu"), 1)
    assert seen == [] and l.loader.workers == 0 and not l.loader.pin_memory
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    devices.feed_data_layers([l], torch.device("cuda", 0), 1)
    assert seen == [torch.device("cuda", 0)] and l.loader.pin_memory
