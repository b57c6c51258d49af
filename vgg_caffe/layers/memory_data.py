"""MemoryData: batches served from arrays handed over from Python (Caffe's MemoryDataLayer).

memory_data_layer.cpp with pycaffe's Net.set_input_arrays:
- memory_data_param batch_size, channels, height, width (all required, positive) give the tops
  (batch_size, C, H, W) and labels (batch_size,).
- set_input_arrays(data, labels) (Caffe's Reset): data (N, C, H, W), labels (N,), N a multiple of
  batch_size; the arrays are served as they are, transform_param is NOT applied (Caffe only warns
  that it "does not transform array data on Reset()", and so do we).
- add_images(images, labels) / add_datums(datums) (Caffe's AddMatVector / AddDatumVector): each
  (H, W, C) image goes through the DataTransformer (crop random in TRAIN / centre in TEST, mirror,
  mean_file or mean_value, scale) and must then have the layer's (C, H, W); adding again before
  every row of the last addition was served is refused, as in Caffe.
- Each forward pass serves the next batch_size rows in order, wrapping after N, starting at row 0
  after every set_input_arrays/add_*. A forward pass before any array was set is an error.
The transformer's random draws come from vgg_caffe.rng keyed by (seed, layer, addition, row).
"""
import warnings

import numpy as np
import torch

from .. import rng
from ..data import datum as datum_io
from ..data import image, transforms
from ..data.mean import read_mean_file
from .base import Layer, register


@register
class MemoryData(Layer):
    type = "MemoryData"
    bottoms = (0, 0)
    tops = (2, 2)
    is_data = True
    seed = 0

    def setup(self):
        p = self.param.memory_data_param
        self.batch_size, self.channels = int(p.batch_size), int(p.channels)
        self.height, self.width = int(p.height), int(p.width)
        sizes = {"batch_size": self.batch_size, "channels": self.channels, "height": self.height, "width": self.width}
        bad = [f"{k}={v}" for k, v in sizes.items() if v <= 0]
        if bad:
            raise self.error(f"memory_data_param: batch_size, channels, height and width must be given "
                             f"and positive; have {', '.join(bad)}")
        self._data = self._labels = None
        self._origin = None        # the iteration that serves row 0 of the current arrays
        self._additions = 0        # add_images/add_datums calls so far (keys the transformer's draws)
        self._unconsumed = False   # Caffe's has_new_data_

    def reshape(self, bottom_shapes):
        return [(self.batch_size, self.channels, self.height, self.width), (self.batch_size,)]

    # -- feeding -------------------------------------------------------------------------------

    def set_input_arrays(self, data, labels):
        """Serve `data` (N, C, H, W) and `labels` (N,) batch by batch from the next forward pass on.
        Values are converted to float32 (pycaffe insists on float32 arrays); no transform is applied."""
        data = np.asarray(data.detach().cpu() if torch.is_tensor(data) else data)
        labels = np.asarray(labels.detach().cpu() if torch.is_tensor(labels) else labels)
        want = (self.channels, self.height, self.width)
        if data.ndim != 4 or data.shape[1:] != want:
            raise self.error(f"set_input_arrays: data must have shape (N, {', '.join(map(str, want))}); "
                             f"has {data.shape}")
        if labels.ndim > 1 and all(d == 1 for d in labels.shape[1:]):
            labels = labels.reshape(len(labels))  # pycaffe accepts labels as (N, 1, 1, 1) too
        if labels.ndim != 1 or len(labels) != len(data):
            raise self.error(f"set_input_arrays: labels must have shape ({len(data)},) to match the data; "
                             f"has {labels.shape}")
        if not (np.issubdtype(data.dtype, np.number) and np.issubdtype(labels.dtype, np.number)):
            raise self.error(f"set_input_arrays: data and labels must be numeric; have {data.dtype}, {labels.dtype}")
        if self.param.HasField("transform_param"):
            warnings.warn(f"layer '{self.name}' (MemoryData) does not transform array data passed to "
                          "set_input_arrays (as Caffe's Reset); transform_param applies to add_images", stacklevel=2)
        self._reset(data, labels)

    def add_images(self, images, labels):
        """Transform (H, W, C) images with transform_param, as Caffe's AddMatVector, and serve them."""
        images = list(images)
        labels = [float(v) for v in labels]
        if not images:
            raise self.error("add_images: there is no image to add")
        if len(labels) != len(images):
            raise self.error(f"add_images: {len(images)} images but {len(labels)} labels")
        if self._unconsumed:
            raise self.error("cannot add data until the current data has been consumed")
        out = self._transform([np.asarray(im) for im in images])
        self._reset(out, np.asarray(labels, np.float32))
        self._unconsumed = True

    def add_datums(self, datums):
        """As add_images, from Datum messages (raw or encoded), as Caffe's AddDatumVector."""
        datums = list(datums)
        where = f"layer '{self.name}' (MemoryData)"
        mode = self._mode()
        self.add_images([datum_io.to_image(d, mode, where) for d in datums], [d.label for d in datums])

    def _mode(self):
        tp = self.param.transform_param
        if tp.force_color and tp.force_gray:
            raise self.error("transform_param: force_color and force_gray exclude each other")
        return image.COLOR if tp.force_color else image.GRAY if tp.force_gray else image.NATIVE

    def _transform(self, images):
        tp = self.param.transform_param
        crop = int(tp.crop_size)
        want_hw = (crop, crop) if crop else (self.height, self.width)
        if crop and (crop, crop) != (self.height, self.width):
            raise self.error(f"transform_param.crop_size {crop} must equal memory_data_param height and "
                             f"width ({self.height}x{self.width})")
        mean = None
        if tp.mean_file and len(tp.mean_value):
            raise self.error("transform_param: specify mean_file or mean_value, not both")
        if tp.mean_file:
            mean = read_mean_file(tp.mean_file, f"layer '{self.name}': ")
        elif len(tp.mean_value):
            values = list(tp.mean_value)
            if len(values) not in (1, self.channels):
                raise self.error(f"transform_param.mean_value has {len(values)} values; the layer has "
                                 f"{self.channels} channels")
            mean = np.array(values * self.channels if len(values) == 1 else values, np.float32)
        out = np.empty((len(images), self.channels, self.height, self.width), np.float32)
        for j, img in enumerate(images):
            if img.ndim == 2:
                img = img[:, :, None]
            h, w, c = img.shape
            if c != self.channels:
                raise self.error(f"image {j} has {c} channels; memory_data_param.channels is {self.channels}")
            if crop and (h < crop or w < crop):
                raise self.error(f"image {j} ({h}x{w}) is smaller than crop_size {crop}")
            if not crop and (h, w) != want_hw:
                raise self.error(f"image {j} is {h}x{w}; memory_data_param wants {want_hw[0]}x{want_hw[1]}")
            if mean is not None and mean.ndim == 3 and mean.shape != (c, h, w):
                raise self.error(f"mean_file {tp.mean_file} has shape {mean.shape}, image {j} is {(c, h, w)}")
            draws = rng.numpy_rng(self.seed, "MemoryData", self.name, self._additions, j).random(3)
            out[j] = transforms.caffe_transform(img, draws, self.phase == "TRAIN", crop, tp.mirror, mean,
                                                float(tp.scale))
        self._additions += 1
        return out

    def _reset(self, data, labels):
        if len(data) == 0 or len(data) % self.batch_size:
            raise self.error(f"the number of rows ({len(data)}) must be a positive multiple of "
                             f"batch_size ({self.batch_size})")
        self._data = torch.from_numpy(np.ascontiguousarray(data, np.float32))
        self._labels = torch.from_numpy(np.ascontiguousarray(labels, np.float32))
        self._origin = None
        self._unconsumed = False

    # -- serving -------------------------------------------------------------------------------

    def batch(self, iteration, start=0, stop=None):
        if self._data is None:
            raise self.error("no data: call set_input_arrays(data, labels) (or add_images) before the "
                             "forward pass")
        if self._origin is None:
            self._origin = iteration
        stop = self.batch_size if stop is None else stop
        n = len(self._data)
        first = (iteration - self._origin) * self.batch_size
        rows = torch.tensor([(first + j) % n for j in range(start, stop)], dtype=torch.long)
        if (first + self.batch_size) % n == 0:
            self._unconsumed = False  # every row of the last addition has been served
        return [self._data[rows], self._labels[rows]]

    def forward(self):
        raise self.error("data layers are fed by Net; call batch(iteration)")
