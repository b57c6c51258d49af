"""HDF5Output: writes its two bottoms to an HDF5 file as datasets "data" and "label" (Caffe's
HDF5OutputLayer).

hdf5_output_layer.cpp: two bottoms with the same number of rows, no tops, nothing propagated back;
the file (hdf5_output_param.file_name) is created, truncated, when the layer is set up, and each
forward pass saves the bottoms as float datasets "data" and "label" with the bottoms' legacy 4-D
shapes (num, channels, height, width; missing trailing axes are 1, so a (N,) label is stored
(N, 1, 1, 1)).

Beyond Caffe: Caffe fails on the second forward pass (the datasets already exist, BVLC/caffe
issue #1726); here every forward pass appends its rows and rewrites the file, atomically (a
temporary file renamed into place), so the file always holds the rows of every pass so far, and
after one pass it is the file Caffe writes. Nothing is written before the first pass, so building
a net (info, drawing, shape checks) has no side effects. The file I/O runs in Python even inside
a TorchScript-compiled net (torch.jit.ignore), so nets with this layer still script.
"""
import uuid
import weakref

import numpy as np
import torch

from ..errors import CaffeError
from ..fileio import atomic_open
from .base import Layer, register

# Rows written so far, per layer instance (keyed by a token string, which TorchScript copies into
# a compiled layer, so the compiled and the eager layer append to the same file).
_ROWS = {}


def legacy_4d(shape):
    """Caffe's num/channels/height/width view of a blob of at most 4 axes."""
    return tuple(shape) + (1,) * (4 - len(shape))


@torch.jit.ignore
def _save(token: str, file_name: str, where: str, data: torch.Tensor, label: torch.Tensor) -> None:
    if data.shape[0] != label.shape[0]:
        raise CaffeError(f"{where}data and label must have the same number of rows; have {tuple(data.shape)} "
                         f"and {tuple(label.shape)}")
    rows = _ROWS[token]
    for name, blob in (("data", data), ("label", label)):
        value = blob.detach().to("cpu", torch.float32).numpy()
        rows[name].append(value.reshape(legacy_4d(value.shape)))
    import h5py
    with atomic_open(file_name, "w+b") as f, h5py.File(f, "w") as h5:
        for name, parts in rows.items():
            h5.create_dataset(name, data=np.concatenate(parts))


@register
class HDF5Output(Layer):
    type = "HDF5Output"
    bottoms = (2, 2)
    tops = (0, 0)
    __constants__ = ["file_name", "token", "where"]

    def setup(self):
        self.file_name = self.param.hdf5_output_param.file_name
        if not self.file_name:
            raise self.error("hdf5_output_param.file_name is required")
        # The prefix of self.error's messages, for the writer, which runs outside the layer object.
        self.where = (f"{self.source}: " if self.source else "") + f"layer '{self.name}' ({self.type}): "
        self.token = uuid.uuid4().hex
        _ROWS[self.token] = {"data": [], "label": []}
        weakref.finalize(self, _ROWS.pop, self.token, None)

    def reshape(self, bottom_shapes):
        for name, shape in zip(("data", "label"), bottom_shapes):
            if not 1 <= len(shape) <= 4:
                raise self.error(f"bottom '{name}' has shape {tuple(shape)}; HDF5Output stores blobs of 1 to 4 axes")
        if bottom_shapes[0][0] != bottom_shapes[1][0]:
            raise self.error(f"data and label must have the same number of rows; have {tuple(bottom_shapes[0])} "
                             f"and {tuple(bottom_shapes[1])}")
        return []

    def forward(self, data, label):
        _save(self.token, self.file_name, self.where, data, label)
        tops: list[torch.Tensor] = []
        return tops

    def extra_repr(self):
        return f"name={self.name!r}, file_name={self.file_name!r}"
