"""VGGData: the VGG paper's training data layer, run natively for a `type: "Python"` layer.

    layer { name: "data" type: "Python" top: "data" top: "label"
            python_param { module: "vgg_caffe.data.vgg_layer" layer: "VGGData"
                           param_str: '{"source": "train_lmdb", "batch_size": 256,
                                        "scale": [256, 512], "crop_size": 224, "mirror": true,
                                        "color_shift": 0.1, "mean_value": [103.939, 116.779, 123.68]}' } }

Upstream Caffe cannot rescale isotropically or jitter the scale, so the generated prototxt names
this class through python_param (upstream still parses it); our runtime instantiates it directly.
Per image (see transforms.py): decode the Datum (raw or encoded), rescale so the smallest side is S
(S fixed, or an integer drawn uniformly from [S_min, S_max]), random crop, random flip, AlexNet
colour shift, minus the mean pixel. TEST phase: S = S_min, centre crop, no flip, no colour shift.
Records are read in key order like Caffe's cursor (global sample g = iteration * batch_size + j,
wrapping around the DB; no shuffling: the converter shuffles). Tops: data (N, 3, crop, crop)
float32 BGR and label (N,) float32.
param_str keys: source, batch_size, scale, crop_size, mirror, color_shift, mean_value, and
optionally seed (0), workers ("auto": in this process on a CPU, the cores shared among the ranks
on a GPU, set by the solver; 0: always in this process), prefetch (2 iterations ahead), and the
speed options (false by default; their pixel-level differences are stated in transforms.py):
reduced_decode (decode a JPEG at 1/2, 1/4 or 1/8 of its stored size when S is at most that
fraction of its smaller side) and fast_resize (resize the crop from a small window of the decoded
image instead of resizing the whole image).
How a batch is made fast (bench/bench_data_speed.py; none of it changes a pixel):
  * two passes over the batch (VGGSampler.samples): first every sample's Python steps (the reads,
    in one LMDB transaction, the Datum parse, the random draws, the JPEG header checks and the
    crop's geometry from the header's size), then the decodes and crops, OpenCV calls with little
    Python between them (a decode evicts the interpreter from the CPU caches, and Python run
    between decodes is several times slower);
  * a JPEG is decoded only down to the last row its crop reads (image.decode_top, through the
    system's libjpeg: the whole decode's rows, for about four fifths of its work on average);
  * the default crop resizes only the top-left part of the image up to the crop's far corner,
    which gives exactly the whole rescale's pixels (image.resize_corner); the crop is a view of it,
    a flip one cv2.flip;
  * the colour shifts of the batch in one product, then the shift, the mean and the conversion
    to float in one OpenCV pass per sample into an NHWC batch (a recycled buffer), handed on as an
    NCHW-shaped tensor in channels-last memory -- the layout Net feeds its convolutions
    (vgg_caffe.precision), so no transpose is made on either side;
  * on a GPU (the solver calls finish_on(device)), the batch crosses to the device as uint8 and
    the shift, the mean and the float conversion are done there, for the whole batch in one op
    (`finish`): a quarter of the pinned memory and of the host-to-device copy, and no float pass
    on the host. The float32 batch is bitwise the host's (float32(pixel) + float32(shift - mean)
    either way; tested).
"""
import json
import sys

import cv2
import numpy as np
import torch

from ..errors import CaffeError
from ..layers.base import Layer
from . import datum as datum_io
from . import image, transforms
from .db import Reader
from .loader import BatchLoader

DEFAULTS = {"scale": [256, 256], "crop_size": 224, "mirror": True, "color_shift": 0.1,
            "mean_value": [103.939, 116.779, 123.68], "seed": 0, "workers": "auto", "prefetch": 2,
            "reduced_decode": False, "fast_resize": False}
REQUIRED = ("source", "batch_size")


class BatchBuffers:
    """Batch buffers (float32, or uint8 for batches finished on the device), each reused once
    nothing made from it is alive any more (no tensor, view or array: CPython's reference count
    says so), so that a batch does not cost fresh pages (the page faults of a new 19 MB batch are
    about 5% of the layer's time)."""

    def __init__(self, keep=4):
        self.keep, self.buffers = keep, []

    def take(self, shape, dtype=np.float32):
        for i in range(len(self.buffers)):
            buf = self.buffers[i]
            # Three references when idle: the list's, `buf` and getrefcount's argument.
            if buf.shape == shape and buf.dtype == dtype and sys.getrefcount(buf) == 3:
                return buf
        buf = np.empty(shape, dtype)
        self.buffers = ([buf] + self.buffers)[:self.keep]
        return buf


class VGGSampler:
    """Sample j of the batch at an iteration -> (uint8 HWC crop, colour-shift alphas, label);
    samples() computes several at once (the loader's inline batches and worker chunks), collate
    turns samples into the batch. Picklable (worker processes)."""

    def __init__(self, reader, batch_size, train, scale, crop, mirror, color_shift, mean, seed,
                 reduced_decode=False, fast_resize=False):
        self.reader, self.batch_size, self.train = reader, batch_size, train
        self.scale, self.crop, self.mirror = scale, crop, mirror
        self.color_shift, self.mean, self.seed = color_shift, np.asarray(mean, np.float64), seed
        self.reduced_decode, self.fast_resize = reduced_decode, fast_resize
        self.buffers = BatchBuffers()
        self.raw = False   # collate uint8 batches, finished by `finish` (VGGData.finish_on)

    def __getstate__(self):  # worker processes get the settings, not the parent's buffers
        state = dict(self.__dict__)
        state["buffers"] = BatchBuffers()
        return state

    def sample(self, iteration, j):
        return self.samples(iteration, [j])[0]

    def samples(self, iteration, js):
        """[sample(iteration, j) for j in js], in two passes: every sample's Python steps first
        (read, parse, random draws, the decoder's header checks, the crop's geometry from the
        stored size), then the decodes and crops (OpenCV calls, little Python between them). A
        decode evicts the interpreter's working set from the CPU caches, and Python code run
        between two decodes is several times slower (the draws: 0.03 ms alone, 0.13 ms after a
        decode). The samples are the same either way."""
        read = self.reader.get_many([iteration * self.batch_size + j for j in js])   # one transaction
        records = [self._record(iteration, j, kv) for j, kv in zip(js, read)]
        return [self._crop(*r) for r in records]

    def _record(self, iteration, j, kv):
        key, value = kv
        where = f"{self.reader.path}: key {key.decode(errors='replace')}"
        d = datum_io.parse(value, where)
        draws = transforms.vgg_draws(self.seed, iteration, j, self.train, self.scale, self.mirror,
                                     self.color_shift)
        data = probed = stored = plan = None
        factor = 1
        if d.encoded:
            data = d.data
            try:
                probed = image.probe(data)
            except image.DecodeError as e:
                raise CaffeError(f"{where}: encoded Datum does not decode ({e})") from None
            if probed[1]:   # a JPEG: its frame header gives the stored size
                stored = probed[1][1:]
                if self.reduced_decode and probed[1][0] != 4:   # (CMYK goes through Pillow)
                    factor = image.reduction(*stored, draws["S"])
        elif d.data:
            stored = (d.height, d.width)
        if stored:
            plan = transforms.vgg_plan(stored, draws, self.crop, self.train, factor, self.fast_resize)
        return d, data, probed, draws, stored, factor, plan, float(d.label), where

    def _crop(self, d, data, probed, draws, stored, factor, plan, label, where):
        """Decode, then crop as planned when the decode has the planned size: the stored size
        reduced by `factor` (reduced only when asked and S allows). Otherwise (a JPEG the decoder
        rotates by its EXIF orientation, a PNG, float data) the geometry comes from the decode.
        A JPEG is decoded only down to the last row the crop reads, where it can be
        (image.decode_top: the same rows as the whole decode)."""
        if data is not None and plan is not None:
            crop = self._crop_top(data, probed, stored, factor, plan)
            if crop is not None:
                return crop, draws["alpha"], label
        if data is None:
            img = datum_io.to_image(d, image.COLOR, where)
        else:
            try:
                img = image.decode(data, image.COLOR, factor, probed)
            except image.DecodeError as e:
                raise CaffeError(f"{where}: encoded Datum does not decode ({e})") from None
        if img.dtype != np.uint8:
            img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        if stored and img.shape[:2] == image.reduced_size(*stored, factor):
            if img.shape[2] == 3:
                return transforms.vgg_apply(img, plan), draws["alpha"], label
            crop = transforms.vgg_crop(img, draws, self.crop, self.train, stored, factor, self.fast_resize)
        else:   # as decoded, e.g. at full size after all
            crop = transforms.vgg_crop(img, draws, self.crop, self.train, None, 1, self.fast_resize)
        return crop, draws["alpha"], label

    @staticmethod
    def _crop_top(data, probed, stored, factor, plan):
        """The planned crop from a decode of the rows it reads, or None (no rows to save, or
        image.decode_top cannot stand for the decode here)."""
        height = image.reduced_size(*stored, factor)[0]
        rows = transforms.plan_rows(plan, height)
        top = image.decode_top(data, rows, factor, probed) if rows < height else None
        if top is None:
            return None
        img, valid = top
        return transforms.vgg_apply(img, plan, valid)

    def collate(self, samples):
        # The colour shifts of the whole batch in one product; then one pass per sample: uint8
        # HWC crop (a view is fine) + (shift - mean) -> float32, written into an NHWC batch by
        # OpenCV's vectorised add (5x NumPy's mixed-type add, 2x torch's; the pass is bound by
        # writing the float32 batch, so one op per sample costs no more than one per batch).
        n = len(samples)
        h, w, c = samples[0][0].shape if n else (0, 0, 3)
        alphas = np.array([s[1] for s in samples], np.float64).reshape(n, 3)
        shifts = (transforms.color_shifts_bgr(alphas) - self.mean).astype(np.float32)
        labels = torch.from_numpy(np.array([s[2] for s in samples], np.float32))
        if self.raw:   # uint8 NHWC + the (N, 3) shifts; `finish` makes the float batch
            data = self.buffers.take((n, h, w, c), np.uint8)
            for k, (crop, _, _) in enumerate(samples):
                data[k] = crop
            return [torch.from_numpy(data).permute(0, 3, 1, 2), labels, torch.from_numpy(shifts)]
        data = self.buffers.take((n, h, w, c))
        for k, ((crop, _, _), shift) in enumerate(zip(samples, shifts.tolist())):
            dst = data[k]
            out = cv2.add(crop, (*shift, 0.0), dst=dst, dtype=cv2.CV_32F)
            if out is not dst:  # OpenCV allocated instead of writing in place
                dst[...] = out
        # NCHW shape, NHWC memory (channels-last): what Net feeds its convolutions.
        return [torch.from_numpy(data).permute(0, 3, 1, 2), labels]


def finish(data, shifts, device):
    """The float32 batch on `device` from a raw collate's uint8 batch (NCHW shape, channels-last
    memory) and its (N, 3) shifts (colour shift minus mean, float32): float32(pixel) + shift, the
    host collate's arithmetic, for the whole batch in one op; the layout is kept."""
    x = data.to(device, non_blocking=True)
    s = shifts.to(device, non_blocking=True)
    return x.float().add_(s.view(-1, 3, 1, 1))


class VGGData(Layer):
    type = "Python"
    bottoms = (0, 0)
    tops = (2, 2)
    is_data = True

    def setup(self):
        text = self.param.python_param.param_str or "{}"
        try:
            cfg = json.loads(text)
        except ValueError as e:
            raise self.error(f"param_str is not valid JSON ({e}): {text!r}") from None
        if not isinstance(cfg, dict):
            raise self.error(f"param_str must be a JSON object, got {text!r}")
        unknown = sorted(set(cfg) - set(DEFAULTS) - set(REQUIRED))
        if unknown:
            raise self.error(f"unknown param_str keys {unknown}; known: {sorted(set(DEFAULTS) | set(REQUIRED))}")
        missing = [k for k in REQUIRED if k not in cfg]
        if missing:
            raise self.error(f"param_str needs {missing}")
        cfg = {**DEFAULTS, **cfg}
        scale = cfg["scale"] if isinstance(cfg["scale"], list) else [cfg["scale"], cfg["scale"]]
        if len(scale) != 2 or not all(isinstance(s, int) and s > 0 for s in scale) or scale[0] > scale[1]:
            raise self.error(f"scale must be [S_min, S_max] of positive integers with S_min <= S_max, got {cfg['scale']}")
        crop = int(cfg["crop_size"])
        if crop <= 0 or crop > scale[0]:
            raise self.error(f"crop_size {crop} must be positive and at most S_min = {scale[0]}")
        if len(cfg["mean_value"]) != 3:
            raise self.error(f"mean_value needs 3 values (B, G, R), got {cfg['mean_value']}")
        self.batch_size = int(cfg["batch_size"])
        if self.batch_size <= 0:
            raise self.error("batch_size must be positive")
        self.crop = crop
        self.config = cfg
        self.finish_device = None
        try:
            reader = Reader(cfg["source"])
        except Exception as e:  # CaffeError from the reader: add the layer name
            raise self.error(f"source: {e}") from None
        self.sampler = VGGSampler(reader, self.batch_size, self.phase == "TRAIN", scale, crop,
                                  bool(cfg["mirror"]), float(cfg["color_shift"]), cfg["mean_value"],
                                  int(cfg["seed"]), bool(cfg["reduced_decode"]), bool(cfg["fast_resize"]))
        self.loader = BatchLoader(self.sampler, self.batch_size,
                                  None if cfg["workers"] == "auto" else int(cfg["workers"]), int(cfg["prefetch"]))

    def reshape(self, bottom_shapes):
        return [(self.batch_size, 3, self.crop, self.crop), (self.batch_size,)]

    def finish_on(self, device):
        """Make the float batch on `device` (the solver calls this on a GPU): the loader then
        hands over uint8 batches, and batch() returns data already on `device`. None: the host
        collate again."""
        self.finish_device = None if device is None else torch.device(device)
        self.sampler.raw = self.finish_device is not None
        self.loader.pending.clear()   # batches worked on ahead were collated the other way

    def batch(self, iteration, start=0, stop=None):
        out = self.loader.batch(iteration, start, stop)
        if not self.sampler.raw:
            return out
        data, labels, shifts = out
        return [finish(data, shifts, self.finish_device), labels]

    def forward(self):
        raise self.error("data layers are fed by Net; call batch(iteration)")

    def close(self):
        self.loader.close()
