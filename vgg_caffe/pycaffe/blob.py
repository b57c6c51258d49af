"""Blob: pycaffe's caffe.Blob, a named pair of arrays (data, diff) over torch tensors.

As in pycaffe (_caffe.cpp), `blob.data` and `blob.diff` are float32 numpy arrays that *are* the
blob's memory: writing `blob.data[...] = x` changes what the net computes with, and a view taken
before a forward pass shows the values after it, because the net copies every result into the
same persistent tensor (Caffe's blobs are persistent buffers too). The arrays share memory with
torch tensors both ways (`tensor.numpy()`), so torch code sees numpy writes and vice versa.

A blob either owns its tensors (the net's activations) or wraps a learnable nn.Parameter, whose
`.data` is the blob's data and whose `.grad` its diff (created as zeros when absent).
shape, count, num/channels/height/width (Caffe's legacy accessors: axes 0..3, 1 where the blob has
fewer axes, an error beyond four axes) and reshape(*shape) behave as Caffe's. BlobVec is the list type
of `layer.blobs`, with pycaffe's add_blob(*shape).
"""
import math

import numpy as np
import torch

from ..errors import CaffeError


class BlobShapeError(CaffeError, ValueError):
    """An array that does not fit the blob it is assigned to."""


class BlobArray(np.ndarray):
    """The ndarray view of a blob's data or diff. Only two things differ from a plain ndarray:
    an assignment that does not fit names the blob, and arithmetic results are plain arrays."""

    def __array_finalize__(self, obj):
        self._where = getattr(obj, "_where", None)

    def __setitem__(self, key, value):
        try:
            super().__setitem__(key, value)
        except ValueError as e:
            if "broadcast" not in str(e) or self._where is None:
                raise
            have = np.shape(value)
            target = np.ndarray.__getitem__(self, key).shape
            raise BlobShapeError(
                f"{self._where}: cannot assign an array of shape {have} to shape {tuple(target)} ({e}); "
                "to change a blob's shape call blob.reshape(*shape) and then net.reshape()") from None

    def __array_wrap__(self, array, context=None, return_scalar=False):
        # np.exp(blob.data), blob.data * 2, blob.data.sum(): results are not blob memory.
        array = array.view(np.ndarray)
        return array[()] if return_scalar else array

    def __repr__(self):
        return repr(self.view(np.ndarray))

    def __reduce__(self):
        return np.ndarray.__reduce__(self.view(np.ndarray))


def _view(tensor, where):
    array = tensor.detach().numpy().view(BlobArray)
    array._where = where
    return array


class Blob:
    """caffe.Blob. Blob(shape, name) owns zero-filled float32 tensors; Blob.of_param(p, name)
    wraps a learnable parameter."""

    def __init__(self, shape=(), name=None):
        self.name = name
        self._param = None
        self._tensors = {"data": torch.zeros(tuple(shape)), "diff": torch.zeros(tuple(shape))}
        self._views = {}

    @classmethod
    def of_param(cls, param, name=None):
        blob = cls.__new__(cls)
        blob.name, blob._param, blob._tensors, blob._views = name, param, None, {}
        return blob

    # -- the tensors ----------------------------------------------------------------------------

    @property
    def data_tensor(self):
        """The torch tensor holding `data` (no autograd history)."""
        if self._param is not None:
            return self._param.detach()
        return self._tensors["data"]

    @property
    def diff_tensor(self):
        """The torch tensor holding `diff`; for a parameter, its .grad (zeros when absent)."""
        if self._param is not None:
            p = self._param
            if p.grad is None or p.grad.shape != p.shape:
                p.grad = torch.zeros_like(p, memory_format=torch.contiguous_format)
            return p.grad
        return self._tensors["diff"]

    def _array(self, kind, tensor):
        if tensor.device.type != "cpu":
            raise CaffeError(f"{self._where(kind)}: the tensor is on {tensor.device}; numpy views need "
                             "host memory (pycaffe nets run on the CPU)")
        key = (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()))
        cached = self._views.get(kind)
        if cached is None or cached[0] != key:
            cached = (key, _view(tensor, self._where(kind)))
            self._views[kind] = cached
        return cached[1]

    def _where(self, kind):
        return f"blob '{self.name}' {kind}" if self.name else f"blob {kind}"

    @property
    def data(self):
        return self._array("data", self.data_tensor)

    @data.setter
    def data(self, value):
        # pycaffe's data is read-only; assigning means copying in, with the shape checked.
        self.data[...] = value

    @property
    def diff(self):
        return self._array("diff", self.diff_tensor)

    @diff.setter
    def diff(self, value):
        self.diff[...] = value

    # -- shape ----------------------------------------------------------------------------------

    @property
    def shape(self):
        return tuple(int(d) for d in self.data_tensor.shape)

    @property
    def count(self):
        return math.prod(self.shape)

    @property
    def num_axes(self):
        return len(self.shape)

    def _legacy(self, index, what):
        shape = self.shape
        if len(shape) > 4:
            raise CaffeError(f"{self._where(what)}: legacy accessors (num/channels/height/width) need at most "
                             f"4 axes; the blob has shape {shape}")
        return shape[index] if index < len(shape) else 1   # Caffe's LegacyShape: missing axes are 1

    @property
    def num(self):
        return self._legacy(0, "num")

    @property
    def channels(self):
        return self._legacy(1, "channels")

    @property
    def height(self):
        return self._legacy(2, "height")

    @property
    def width(self):
        return self._legacy(3, "width")

    def reshape(self, *shape, **kwargs):
        """Blob::Reshape: the same memory when the count is unchanged, fresh zeros otherwise."""
        if kwargs:
            raise TypeError("Blob.reshape takes no kwargs")
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        try:
            shape = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            raise CaffeError(f"{self._where('reshape')}: dimensions must be integers, got {shape}") from None
        if any(d < 0 for d in shape):
            raise CaffeError(f"{self._where('reshape')}: negative dimension in {shape}")
        self.set_shape(shape)

    def set_shape(self, shape):
        shape = tuple(shape)
        if shape == self.shape:
            return
        if self._param is not None:
            p = self._param
            with torch.no_grad():
                p.data = (p.data.reshape(shape) if math.prod(shape) == p.numel()
                          else torch.zeros(shape, dtype=p.dtype, device=p.device))
            p.grad = None
            return
        for kind, t in self._tensors.items():
            self._tensors[kind] = t.view(shape) if math.prod(shape) == t.numel() else torch.zeros(shape, dtype=t.dtype)

    def __repr__(self):
        return f"<Blob {self.name!r} shape {self.shape}>"


class BlobVec(list):
    """layer.blobs: a list of Blob with pycaffe's add_blob(*shape).

    For a Python layer the list is tied to the runtime layer's nn.ParameterList (`params`), so
    blobs added in setup() are learnable parameters the solvers update and files store."""

    def __init__(self, blobs=(), params=None, name=None):
        super().__init__(blobs)
        self._params, self._name = params, name

    def add_blob(self, *shape, **kwargs):
        if kwargs:
            raise TypeError("BlobVec.add_blob takes no kwargs")
        shape = tuple(int(d) for d in (shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape))
        label = f"{self._name}[{len(self)}]" if self._name else None
        if self._params is None:
            self.append(Blob(shape, label))
            return
        self._params.append(torch.nn.Parameter(torch.zeros(shape)))
        self.append(Blob.of_param(self._params[-1], label))
