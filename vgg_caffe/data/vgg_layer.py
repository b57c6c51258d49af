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
optionally seed (0), workers (0: decode in this process), prefetch (2 iterations ahead).
"""
import json

import numpy as np
import torch

from ..layers.base import Layer
from . import datum as datum_io
from . import image, transforms
from .db import Reader
from .loader import BatchLoader

DEFAULTS = {"scale": [256, 256], "crop_size": 224, "mirror": True, "color_shift": 0.1,
            "mean_value": [103.939, 116.779, 123.68], "seed": 0, "workers": 0, "prefetch": 2}
REQUIRED = ("source", "batch_size")


class VGGSampler:
    """Sample j of the batch at an iteration -> (uint8 crop, BGR offset, label); picklable."""

    def __init__(self, reader, batch_size, train, scale, crop, mirror, color_shift, mean, seed):
        self.reader, self.batch_size, self.train = reader, batch_size, train
        self.scale, self.crop, self.mirror = scale, crop, mirror
        self.color_shift, self.mean, self.seed = color_shift, np.asarray(mean, np.float64), seed

    def sample(self, iteration, j):
        key, value = self.reader.get(iteration * self.batch_size + j)
        where = f"{self.reader.path}: key {key.decode(errors='replace')}"
        d = datum_io.parse(value, where)
        img = datum_io.to_image(d, image.COLOR, where)
        if img.dtype != np.uint8:
            img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        draws = transforms.vgg_draws(self.seed, iteration, j, self.train, self.scale, self.mirror,
                                     self.color_shift)
        crop, shift = transforms.vgg_sample(img, draws, self.crop, self.train)
        return crop, (shift - self.mean).astype(np.float32), float(d.label)

    @staticmethod
    def collate(samples):
        # NumPy, single-threaded: torch's intra-op pool costs more than this small sum saves.
        data = np.stack([s[0] for s in samples]).astype(np.float32)
        data += np.stack([s[1] for s in samples])[:, :, None, None]
        labels = np.array([s[2] for s in samples], np.float32)
        return [torch.from_numpy(data), torch.from_numpy(labels)]


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
        try:
            reader = Reader(cfg["source"])
        except Exception as e:  # CaffeError from the reader: add the layer name
            raise self.error(f"source: {e}") from None
        self.sampler = VGGSampler(reader, self.batch_size, self.phase == "TRAIN", scale, crop,
                                  bool(cfg["mirror"]), float(cfg["color_shift"]), cfg["mean_value"],
                                  int(cfg["seed"]))
        self.loader = BatchLoader(self.sampler, self.batch_size, int(cfg["workers"]), int(cfg["prefetch"]))

    def reshape(self, bottom_shapes):
        return [(self.batch_size, 3, self.crop, self.crop), (self.batch_size,)]

    def batch(self, iteration, start=0, stop=None):
        return self.loader.batch(iteration, start, stop)

    def forward(self):
        raise self.error("data layers are fed by Net; call batch(iteration)")

    def close(self):
        self.loader.close()
