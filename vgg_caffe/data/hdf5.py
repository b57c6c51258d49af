"""Caffe's HDF5Data layer: rows of HDF5 datasets named by the layer's tops.

hdf5_data_layer.cpp: `source` is a text file listing .h5 files (one a line); each file holds a
dataset per top (e.g. "data", "label") with the same number of rows; batches take batch_size
consecutive rows, moving on to the next file and wrapping after the last; data are converted to
float (Caffe's Dtype). With shuffle, the file order is permuted every epoch and the rows within
each file every time it is visited; here the permutations come from vgg_caffe.rng keyed by
(seed, epoch[, file]) so any process can compute global row g on its own.
"""
import os

import numpy as np
import torch

from .. import rng
from ..layers.base import Layer


class HDF5Rows:
    def __init__(self, listfile, tops, shuffle, seed):
        try:
            with open(listfile, encoding="utf-8") as f:
                names = [ln.strip() for ln in f if ln.strip()]
        except OSError as e:
            raise ValueError(f"cannot read the list file ({e.strerror or e})") from None
        if not names:
            raise ValueError("the list file names no .h5 files")
        base = os.path.dirname(os.path.abspath(listfile))
        self.files = [n if os.path.isabs(n) or os.path.exists(n) else os.path.join(base, n) for n in names]
        self.tops, self.shuffle, self.seed = list(tops), shuffle, seed
        self.rows, self.shapes = [], None
        for path in self.files:
            shapes = self._shapes(path)
            if self.shapes is None:
                self.shapes = [s[1:] for s in shapes]
            elif [s[1:] for s in shapes] != self.shapes:
                raise ValueError(f"{path}: dataset shapes {shapes} differ from the first file's rows {self.shapes}")
            self.rows.append(shapes[0][0])
        self.total = sum(self.rows)
        self._cache = (None, None)

    def _shapes(self, path):
        import h5py
        try:
            with h5py.File(path, "r") as f:
                missing = [t for t in self.tops if t not in f]
                if missing:
                    raise ValueError(f"{path}: no dataset {missing}; it has {sorted(f.keys())}")
                shapes = [tuple(f[t].shape) for t in self.tops]
        except OSError as e:
            raise ValueError(f"{path}: cannot open as HDF5 ({e})") from None
        if len({s[0] for s in shapes}) != 1 or shapes[0][0] == 0:
            raise ValueError(f"{path}: datasets {self.tops} need the same, non-zero number of rows; have {shapes}")
        return shapes

    def _load(self, index):
        if self._cache[0] != index:
            import h5py
            with h5py.File(self.files[index], "r") as f:
                self._cache = (index, [np.asarray(f[t], np.float32) for t in self.tops])
        return self._cache[1]

    def locate(self, g):
        """(file index, row) of global row g."""
        epoch, r = divmod(g, self.total)
        order = list(range(len(self.files)))
        if self.shuffle:
            order = [int(i) for i in rng.numpy_rng(self.seed, "HDF5Data", epoch).permutation(len(self.files))]
        for f in order:
            if r < self.rows[f]:
                if self.shuffle:
                    r = int(rng.numpy_rng(self.seed, "HDF5Data", epoch, f).permutation(self.rows[f])[r])
                return f, r
            r -= self.rows[f]
        raise AssertionError("unreachable")

    def get(self, g):
        f, r = self.locate(g)
        return [a[r] for a in self._load(f)]


class HDF5DataLayer(Layer):
    type = "HDF5Data"
    bottoms = (0, 0)
    tops = (1, None)
    is_data = True
    seed = 0

    def setup(self):
        p = self.param.hdf5_data_param
        if not p.source:
            raise self.error("hdf5_data_param.source is required")
        self.batch_size = int(p.batch_size)
        if self.batch_size <= 0:
            raise self.error("batch_size must be positive")
        try:
            self.rows = HDF5Rows(p.source, self.param.top, p.shuffle, self.seed)
        except ValueError as e:
            raise self.error(f"source {p.source}: {e}") from None

    def reshape(self, bottom_shapes):
        return [(self.batch_size,) + tuple(s) for s in self.rows.shapes]

    def batch(self, iteration, start=0, stop=None):
        stop = self.batch_size if stop is None else stop
        self.rows.seed = self.seed
        rows = [self.rows.get(iteration * self.batch_size + j) for j in range(start, stop)]
        return [torch.from_numpy(np.stack([r[k] for r in rows])) for k in range(len(self.rows.tops))]

    def forward(self):
        raise self.error("data layers are fed by Net; call batch(iteration)")
