"""Caffe's HDF5 weight layout (Net::ToHDF5 and Net::CopyTrainedLayersFromHDF5), with h5py.

The file has a group "data" with one subgroup per layer of the net (layers without blobs too),
named by the layer name, holding one dataset per blob named by its index ("0", "1", ...), float32
with the blob's full shape (no legacy 4-d padding: Caffe's HDF5 loader compares shapes exactly).
A blob a layer shares from an earlier one is written only by its owner, so its dataset is absent
in later layers. Snapshots may add a "diff" group, which holds gradients and is not read here.
"""
import os

import h5py
import numpy as np

from ..errors import CaffeError
from ..fileio import atomic_open


class HDF5Blob:
    """One dataset of data/<layer>/: its shape and how to read it."""

    legacy = False

    def __init__(self, dataset, where):
        self.dataset, self.where = dataset, where
        self.shape = tuple(dataset.shape)
        self.count = int(dataset.size)
        self.dtype = dataset.dtype
        if dataset.dtype.kind not in "fiu":
            raise CaffeError(f"{where}: dataset of type {dataset.dtype}, expected floats")

    def read(self, out=None):
        try:
            if out is None:
                return np.asarray(self.dataset[()])
            if out.size != self.count:
                raise CaffeError(f"{self.where}: the file holds {self.count} values, {out.size} expected")
            if out.dtype == self.dtype and out.flags.c_contiguous:
                if self.count:
                    self.dataset.read_direct(out.reshape(self.shape))
            else:
                np.copyto(out, np.asarray(self.dataset[()]).reshape(out.shape), casting="same_kind")
            return out
        except (OSError, KeyError, ValueError) as e:
            raise CaffeError(f"{self.where}: cannot read ({e}); the file may be truncated or corrupt") from None


class HDF5Weights:
    """An open HDF5 weights file: `layers` maps layer name -> StoredLayer (blobs HDF5Blob or None)."""

    def __init__(self, path, layer_cls):
        self.path = os.fspath(path)
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as e:
            raise CaffeError(f"{self.path}: not a readable HDF5 file ({e}); it may be truncated or corrupt") from None
        try:
            self.layers = self._index(layer_cls)
        except BaseException:
            self.close()
            raise

    def _index(self, layer_cls):
        if "data" not in self.file and "history" in self.file and "iter" in self.file:
            raise CaffeError(f"{self.path} is an HDF5 .solverstate (the solver's iteration and momentum "
                             "history), not Caffe HDF5 weights: weights are the PREFIX_iter_N.caffemodel.h5 "
                             f"written beside it; to continue that training run use `solve --snapshot {self.path}`")
        if "data" not in self.file or not isinstance(self.file["data"], h5py.Group):
            raise CaffeError(f"{self.path}: no group 'data'; Caffe's HDF5 weights have data/<layer>/<blob "
                             f"index> (top-level names here: {', '.join(self.file.keys()) or 'none'})")
        layers = {}
        data = self.file["data"]
        for name in data:  # h5py lists links in name order, as Caffe's loader visits them
            group = data[name]
            where = f"{self.path}: data/{name}"
            if not isinstance(group, h5py.Group):
                raise CaffeError(f"{where} is a dataset; expected a group of blobs per layer")
            blobs = {}
            for key in group:
                if not key.isdigit() or not isinstance(group[key], h5py.Dataset):
                    raise CaffeError(f"{where}/{key}: expected datasets named 0, 1, ... (one per blob)")
                blobs[int(key)] = HDF5Blob(group[key], f"{where}/{key}")
            count = max(blobs) + 1 if blobs else 0
            layers[name] = layer_cls(name, "", [blobs.get(j) for j in range(count)])
        return layers

    def close(self):
        if getattr(self, "file", None) is not None:
            self.file.close()
            self.file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write(path, layers):
    """Write [(layer name, [array or None])] in Caffe's layout (None: a shared blob, left out)."""
    path = os.fspath(path)
    seen = set()
    for name, _ in layers:
        if "/" in name or not name or name in (".",):
            raise CaffeError(f"{path}: layer name '{name}' cannot be an HDF5 group name")
        if name in seen:
            raise CaffeError(f"{path}: two layers named '{name}'")
        seen.add(name)
    with atomic_open(path) as f:
        with h5py.File(f, "w") as h5:
            data = h5.create_group("data")
            for name, arrays in layers:
                group = data.create_group(name)
                for j, a in enumerate(arrays):
                    if a is not None:
                        group.create_dataset(str(j), data=np.ascontiguousarray(a).reshape(np.shape(a)))
