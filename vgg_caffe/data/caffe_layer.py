"""Caffe's Data and ImageData layers: records in order, DataTransformer, (data, label) tops.

Data (data_layer.cpp): reads Datum records from an LMDB in key order, wrapping at the end, after
skipping Rand() % rand_skip records once; each record goes through the DataTransformer
(transforms.caffe_transform: crop random in TRAIN / centre in TEST, mirror, mean_file or
mean_value, scale); encoded records are decoded natively, or to colour / grey with force_color /
force_gray. The top shape comes from the first record: (batch, C, crop or H, crop or W); labels are
floats. ImageData (image_data_layer.cpp): the same from a "path label" list file, images read from
root_folder + path, resized to new_height x new_width when both are set, colour unless
is_color: false, the list reshuffled every epoch when shuffle is set.
Like Caffe's BasePrefetchingDataLayer, a GPU run prefetches batches (both phases) into pinned
memory (vgg_caffe.data.loader, configured by vgg_caffe.train.devices).
Randomness comes from vgg_caffe.rng keyed by (seed, iteration, sample index), never from a
process-local generator; `seed` defaults to 0 and the solver may set `layer.seed` (before the
first batch).
"""
import os

import numpy as np
import torch

from .. import rng
from ..layers.base import Layer
from . import datum as datum_io
from . import image, transforms
from .convert import read_list
from .db import Reader
from .loader import BatchLoader
from .mean import read_mean_file


class LMDBRecords:
    """Record g of the cursor -> ((H, W, C) image, label)."""

    def __init__(self, path, skip):
        self.reader, self.skip, self.path = Reader(path), skip, path

    def get(self, g, mode):
        key, value = self.reader.get(g + self.skip)
        where = f"{self.path}: key {key.decode(errors='replace')}"
        d = datum_io.parse(value, where)
        return datum_io.to_image(d, mode, where), float(d.label)


class ImageListRecords:
    """Line g of a list file (reshuffled per epoch when asked) -> ((H, W, C) image, label)."""

    def __init__(self, listfile, root, skip, shuffle, seed, new_height, new_width, is_color):
        self.entries, bad = read_list(listfile)
        if bad:
            n, text, reason = bad[0]
            raise ValueError(f"{listfile}:{n}: {reason}: {text!r}")
        if not self.entries:
            raise ValueError(f"{listfile}: the list is empty")
        self.root, self.skip, self.shuffle, self.seed = root, skip, shuffle, seed
        self.size = (new_height, new_width)
        self.is_color = is_color
        self._perm = (None, None)

    def get(self, g, mode):
        g += self.skip
        n = len(self.entries)
        epoch, i = divmod(g, n)
        if self.shuffle:
            if self._perm[0] != (self.seed, epoch):
                self._perm = ((self.seed, epoch), rng.numpy_rng(self.seed, "ImageData", epoch).permutation(n))
            i = int(self._perm[1][i])
        path, label = self.entries[i]
        full = os.path.join(self.root, path) if self.root else path
        try:
            with open(full, "rb") as f:
                img = image.decode(f.read(), image.COLOR if self.is_color else image.GRAY)
        except (OSError, image.DecodeError) as e:
            raise ValueError(f"{full}: cannot read image ({e})") from None
        if self.size[0] > 0 and self.size[1] > 0:
            img = image.resize(img, *self.size)
        return img, float(label)


class CaffeSampler:
    def __init__(self, records, batch_size, train, crop, mirror, mean, scale, mode, seed, tag):
        self.records, self.batch_size, self.train = records, batch_size, train
        self.crop, self.mirror, self.mean, self.scale = crop, mirror, mean, scale
        self.mode, self.seed, self.tag = mode, seed, tag

    def sample(self, iteration, j):
        img, label = self.records.get(iteration * self.batch_size + j, self.mode)
        draws = transforms.caffe_draws(self.seed, self.tag, iteration, j)
        return transforms.caffe_transform(img, draws, self.train, self.crop, self.mirror, self.mean,
                                          self.scale), label

    @staticmethod
    def collate(samples):
        shapes = {s[0].shape for s in samples}
        if len(shapes) > 1:
            raise ValueError(f"records of different sizes {sorted(shapes)} in one batch; "
                             "set transform_param.crop_size or resize when converting")
        data = torch.from_numpy(np.stack([s[0] for s in samples]))
        return [data, torch.tensor([s[1] for s in samples], dtype=torch.float32)]


class CaffeDataLayer(Layer):
    """Shared body of Data and ImageData; subclasses say where records come from."""
    bottoms = (0, 0)
    tops = (1, 2)
    is_data = True
    seed = 0

    def batch_param(self):
        raise NotImplementedError

    def open_records(self, skip):
        raise NotImplementedError

    def setup(self):
        bp = self.batch_param()
        tp = self.param.transform_param
        legacy = bp if hasattr(bp, "crop_size") else None
        if not bp.source:
            raise self.error("source is required")
        self.batch_size = int(bp.batch_size)
        if self.batch_size <= 0:
            raise self.error("batch_size must be positive")
        if tp.force_color and tp.force_gray:
            raise self.error("transform_param: force_color and force_gray exclude each other")
        self.mode = image.COLOR if tp.force_color else image.GRAY if tp.force_gray else image.NATIVE
        # Legacy nets put crop_size/mirror/scale/mean_file in the data parameter (Caffe upgrades them).
        crop = tp.crop_size or (legacy.crop_size if legacy is not None else 0)
        mirror = tp.mirror or (legacy is not None and legacy.mirror)
        scale = tp.scale if tp.HasField("scale") else (legacy.scale if legacy is not None else 1.0)
        mean_file = tp.mean_file or (legacy.mean_file if legacy is not None else "")
        skip = rng.key(self.seed, "rand_skip", self.name) % bp.rand_skip if bp.rand_skip else 0
        try:
            self.records = self.open_records(skip)
            first, _ = self.records.get(0, self.mode)
        except Exception as e:  # CaffeError / ValueError from the source: name the layer
            raise self.error(f"source {bp.source}: {e}") from None
        h, w, c = first.shape
        if crop and (crop > h or crop > w):
            raise self.error(f"crop_size {crop} is larger than the first record ({h}x{w})")
        mean = None
        if mean_file and len(tp.mean_value):
            raise self.error("specify mean_file or mean_value, not both")
        if mean_file:
            mean = read_mean_file(mean_file, f"layer '{self.name}': ")
            if mean.shape != (c, h, w):
                raise self.error(f"mean_file {mean_file} has shape {mean.shape}, the records are {(c, h, w)}")
        elif len(tp.mean_value):
            values = list(tp.mean_value)
            if len(values) not in (1, c):
                raise self.error(f"mean_value has {len(values)} values; the records have {c} channels")
            mean = np.array(values * c if len(values) == 1 else values, np.float32)
        self.out_shape = (c, crop or h, crop or w)
        self.sampler = CaffeSampler(self.records, self.batch_size, self.phase == "TRAIN", crop, mirror,
                                    mean, float(scale), self.mode, self.seed, self.type)
        # Workers "auto": decoded in this process on a CPU; the solver gives a GPU run worker
        # processes, pinned batches and Caffe's prefetch queue (DataParameter.prefetch, default 4).
        prefetch = int(bp.prefetch) if hasattr(bp, "prefetch") else 4
        self.loader = BatchLoader(self.sampler, self.batch_size, None, prefetch)

    def reshape(self, bottom_shapes):
        shapes = [(self.batch_size,) + self.out_shape, (self.batch_size,)]
        return shapes[:len(self.param.top)]

    def batch(self, iteration, start=0, stop=None):
        self.sampler.seed = self.seed
        if isinstance(self.records, ImageListRecords):
            self.records.seed = self.seed
        try:
            out = self.loader.batch(iteration, start, stop)
        except ValueError as e:
            raise self.error(str(e)) from None
        return out[:len(self.param.top)]

    def forward(self):
        raise self.error("data layers are fed by Net; call batch(iteration)")

    def close(self):
        self.loader.close()


class DataLayer(CaffeDataLayer):
    type = "Data"

    def batch_param(self):
        return self.param.data_param

    def open_records(self, skip):
        return LMDBRecords(self.param.data_param.source, skip)


class ImageDataLayer(CaffeDataLayer):
    type = "ImageData"

    def batch_param(self):
        return self.param.image_data_param

    def open_records(self, skip):
        p = self.param.image_data_param
        if not os.path.isfile(p.source):
            raise ValueError(f"list file {p.source} does not exist")
        return ImageListRecords(p.source, p.root_folder, skip, p.shuffle, self.seed, p.new_height,
                                p.new_width, p.is_color)
