"""Weight files: .caffemodel (V1 and current format) and Caffe's HDF5 layout, read and written fast.

Reproduces Caffe's Net::CopyTrainedLayersFrom (binary and HDF5) and Net::ToProto / ToHDF5:
- Weights are copied by layer name. A file layer the net does not have is ignored and reported
  ("Ignoring source layer" in Caffe's log); the blob counts must agree; each blob's shape must
  equal the net's, where a blob stored with the legacy num/channels/height/width dims matches
  when the net's shape, padded on the left with 1s to 4 axes, equals them (Blob::ShapeEquals:
  inner-product weights were (1, 1, N, K), biases (1, 1, 1, N)). double_data wins over data.
- Beyond Caffe, `strict` (the default) also requires every net layer with learnable blobs to be
  found in the file, and a file that shares no layer name with the net is an error, never a
  silent no-op. `layers=[...]` copies only the named layers (the paper's initialisation of the
  deeper nets from net A).
- Saving writes the current format (every layer of the net, blobs with `shape` and packed
  `data`), or Caffe's HDF5 layout when the path ends in .h5/.hdf5.

The binary codec is vgg_caffe.io.wire (a hand walk of the wire format with protobuf for the small
parts); HDF5 is vgg_caffe.io.hdf5. Floats go from the file into their final buffer (a numpy
array or a torch parameter) with one pread: loading the 553 MB VGG-16 file costs about the time
and memory of reading its bytes once.
"""
import logging
import math
import mmap
import os
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

from . import hdf5 as hdf5_weights
from . import wire
from .kinds import HDF5_SUFFIXES, _refuse_foreign, is_hdf5  # noqa: F401  (HDF5_SUFFIXES, is_hdf5: re-exported)
from ..errors import CaffeError
from ..fileio import atomic_open
from ..proto import V1_TYPE_NAMES, pb

log = logging.getLogger(__name__)

_LITTLE = np.little_endian


# ----------------------------------------------------------------------------------------------
# Stored blobs and layers, whatever the file format
# ----------------------------------------------------------------------------------------------

@dataclass
class StoredLayer:
    """A layer of a weights file: name, type string, and its blobs (StoredBlob; None for a blob
    an HDF5 file leaves out because the net shares it)."""
    name: str
    type: str
    blobs: list = field(default_factory=list)
    param: object = None     # the non-blob fields (caffemodel only)


class CaffemodelBlob:
    """A blob of a .caffemodel: its stored shape and how to read its values."""

    def __init__(self, source, record, where):
        self.source, self.record, self.where = source, record, where
        self.shape = tuple(record.shape)
        self.legacy = record.legacy
        self.count = record.count
        self.dtype = record.dtype

    def read(self, out=None):
        """The values as an array of the stored shape, or written into `out` (any shape with the
        same count; float32 contiguous arrays are filled straight from the file)."""
        rec = self.record
        if out is None:
            if self.shape and _count(self.shape) != rec.count:
                raise CaffeError(f"{self.where}: shape {self.shape} needs {_count(self.shape)} values, "
                                 f"the file holds {rec.count}; it is corrupt")
            out = _alloc(self.shape if self.shape else (rec.count,), rec.dtype)
        if out.size != rec.count:
            raise CaffeError(f"{self.where}: the file holds {rec.count} values, {out.size} expected")
        if rec.array is not None:
            np.copyto(out, rec.array.reshape(out.shape), casting="same_kind")
        elif (out.dtype == rec.dtype and out.flags.c_contiguous and _LITTLE) and rec.count:
            got = os.preadv(self.source.fd, [memoryview(out.reshape(-1)).cast("B")], rec.offset)
            if got != rec.nbytes:
                raise CaffeError(f"{self.where}: the file changed while being read")
        elif rec.count:
            view = np.frombuffer(self.source.buffer, rec.dtype, count=rec.count, offset=rec.offset)
            np.copyto(out, view.reshape(out.shape), casting="same_kind")
        return out


class Caffemodel:
    """An open .caffemodel: `net` (the header fields), `layers` (StoredLayer by name, file order)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        try:
            self.fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise CaffeError(f"{self.path}: cannot open ({e.strerror or e})") from None
        try:
            size = os.fstat(self.fd).st_size
            if size == 0:
                raise CaffeError(f"{self.path}: the file is empty (expected a binary NetParameter)")
            self.mm = mmap.mmap(self.fd, 0, access=mmap.ACCESS_READ)
            self.buffer = memoryview(self.mm)
            self.net, records = wire.read_layers(self.buffer, self.path)
            self.v1 = any(r.v1 for r in records)
            self.layers = _by_name(self.path, [
                StoredLayer(r.name, r.type,
                            [CaffemodelBlob(self, b, f"{self.path}: layer '{r.name}' blob {j}")
                             for j, b in enumerate(r.blobs)], r.param)
                for r in records])
        except BaseException:
            self.close()
            raise

    def close(self):
        buf = getattr(self, "buffer", None)
        if buf is not None:
            try:
                buf.release()
            except BufferError:  # a numpy view still refers to it; it goes with that view
                pass
            self.buffer = None
        if getattr(self, "mm", None) is not None:
            try:
                self.mm.close()
            except BufferError:  # a numpy view still refers to it; it closes when that goes
                pass
            self.mm = None
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _by_name(source, layers):
    """Layers keyed by name. Duplicate names are allowed only without blobs (a train/test net's
    two data layers); a blob-carrying duplicate would make copying ambiguous."""
    out = OrderedDict()
    for layer in layers:
        if layer.name in out:
            if layer.blobs and out[layer.name].blobs:
                raise CaffeError(f"{source}: two layers named '{layer.name}' both hold blobs")
            if not layer.blobs:
                continue
        out[layer.name] = layer
    return out


def _count(shape):
    return math.prod(shape)


def _alloc(shape, dtype):
    """An uninitialised array. Large ones live in an anonymous mmap rather than np.empty: numpy
    asks the kernel for transparent huge pages on big arrays (madvise), and faulting those in
    while reading can stall on memory compaction (measured: 4.3 s instead of 0.85 s to read
    553 MB). Plain pages cost what reading into a bytes object costs."""
    dtype = np.dtype(dtype)
    nbytes = _count(shape) * dtype.itemsize
    if nbytes < 1 << 20:
        return np.empty(shape, dtype)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype).reshape(shape)




def open_weights(path):
    """An open weights file (a context manager with `.layers`), caffemodel or HDF5 by content.
    A safetensors, PyTorch or .solverstate file is refused by name before any parsing."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CaffeError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CaffeError(f"{path}: is a directory, expected a .caffemodel or .h5 weights file")
    if is_hdf5(path):
        return hdf5_weights.HDF5Weights(path, StoredLayer)
    _refuse_foreign(path)
    return Caffemodel(path)


# ----------------------------------------------------------------------------------------------
# Plain arrays
# ----------------------------------------------------------------------------------------------

# Minimum rank of a legacy 4-d blob once its padding 1s are dropped: a convolution weight keeps
# its four axes and an inner-product weight two even when num_output is 1.
_MIN_RANK = {("Convolution", 0): 4, ("Deconvolution", 0): 4, ("InnerProduct", 0): 2}


def modern_shape(shape, layer_type, index):
    """The current-format shape of a blob stored with legacy 4-d dims (leading 1s dropped)."""
    shape = tuple(shape)
    keep = _MIN_RANK.get((layer_type, index), 1)
    while len(shape) > keep and shape[0] == 1:
        shape = shape[1:]
    return shape


def read_weights(path, modern_shapes=True):
    """OrderedDict layer name -> (type, [np.ndarray]) of every layer of a .caffemodel or .h5.

    Arrays own their memory. Legacy 4-d shapes become current-format shapes (inner-product
    weights (N, K), biases (N,)) unless modern_shapes=False. A blob an HDF5 file leaves out (a
    shared parameter) is None."""
    out = OrderedDict()
    with open_weights(path) as f:
        for name, layer in f.layers.items():
            arrays = []
            for j, blob in enumerate(layer.blobs):
                if blob is None:
                    arrays.append(None)
                    continue
                shape = blob.shape if blob.shape else (blob.count,)
                if _count(shape) != blob.count:
                    raise CaffeError(f"{path}: layer '{name}' blob {j}: shape {shape} needs {_count(shape)} "
                                     f"values, the file holds {blob.count}; it is corrupt")
                a = blob.read(_alloc(shape, blob.dtype))
                if blob.legacy and modern_shapes:
                    a = a.reshape(modern_shape(a.shape, layer.type, j))
                arrays.append(a)
            out[name] = (layer.type, arrays)
    return out


def _layer_param(name, type_name, v1):
    """A LayerParameter, or for V1 a V1LayerParameter with the type's enum value (None when the
    type has none: such a layer, Input for one, is left out of a V1 file if it has no blobs)."""
    if not v1:
        return pb.LayerParameter(name=name, type=type_name)
    param = pb.V1LayerParameter(name=name)
    if type_name:
        enum = {v: k for k, v in V1_TYPE_NAMES.items()}.get(type_name)
        if enum is None:
            return None
        param.type = pb.V1LayerParameter.LayerType.Value(enum)
    return param


def _as_array(a, where):
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        if a.dtype not in (torch.float32, torch.float64):
            a = a.float()
        return a.numpy()
    a = np.asarray(a)
    if a.dtype not in (np.float32, np.float64):
        if not np.issubdtype(a.dtype, np.number):
            raise CaffeError(f"{where}: blobs must be numeric arrays, got {a.dtype}")
        a = a.astype(np.float32)
    return a


def write_weights(path, layers, net_name="", v1=False):
    """Write weights as a .caffemodel (current format; V1 with legacy dims when v1=True) or, for a
    .h5/.hdf5 path, Caffe's HDF5 layout.

    layers: a mapping name -> (type, [arrays]) as read_weights returns, or a list of
    (LayerParameter, [arrays]) to keep every field of the layer definitions. Arrays may be numpy
    arrays or tensors; float64 ones are stored as double_data (HDF5: float64 datasets)."""
    path = os.fspath(path)
    items = []
    if isinstance(layers, dict):
        layers = [(_layer_param(name, type_name, v1), list(arrays), name, type_name)
                  for name, (type_name, arrays) in layers.items()]
    else:
        layers = [(_layer_param(p.name, p.type, True) if v1 and isinstance(p, pb.LayerParameter) else p,
                   list(arrays), p.name, getattr(p, "type", "")) for p, arrays in layers]
    for param, arrays, name, type_name in layers:
        if param is None:
            if arrays:
                raise CaffeError(f"{path}: layer '{name}': type '{type_name}' has no V1 enum value")
            continue
        items.append((param, arrays))
    items = [(p, [None if a is None else _as_array(a, f"{path}: layer '{p.name}'") for a in arrays])
             for p, arrays in items]
    if path.lower().endswith(HDF5_SUFFIXES):
        hdf5_weights.write(path, [(p.name, arrays) for p, arrays in items])
        return
    for p, arrays in items:
        if any(a is None for a in arrays):
            raise CaffeError(f"{path}: layer '{p.name}' has a missing blob; a caffemodel stores every blob")
    header = pb.NetParameter(name=net_name)
    with atomic_open(path) as f:
        for piece in wire.net_pieces(header, items, v1=v1):
            f.write(piece)


# ----------------------------------------------------------------------------------------------
# Nets
# ----------------------------------------------------------------------------------------------


