"""Reading and writing .solverstate files: Caffe's SolverState in binary protobuf or HDF5.

Binary (SGDSolver::SnapshotSolverStateToBinaryProto): a SolverState message with iter,
learned_net (the .caffemodel written beside it), current_step and one BlobProto per learnable blob
(`history`, shape + packed float data). A VGG state holds ~133M floats, so the history blobs are
written and read straight on the wire format (np.ndarray.tobytes / np.frombuffer) rather than
through protobuf's repeated-float containers; everything else goes through our schema.

HDF5 (SnapshotSolverStateToHDF5, ".solverstate.h5"): int datasets "iter" and "current_step" of
shape (1,), a string dataset "learned_net", and a group "history" with datasets "0", "1", ...
Our plateau fields are stored beside them ("plateau_best", "plateau_bad_tests"); Caffe ignores them.
"""
import os

import numpy as np

from .errors import CaffeError
from .fileio import atomic_open
from .proto import pb

_HISTORY = 3          # SolverState.history
_BLOB_DATA = 5        # BlobProto.data (packed float)
_BLOB_SHAPE = 7       # BlobProto.shape
_BLOB_DOUBLE = 8      # BlobProto.double_data
_LEGACY_DIMS = {1: 0, 2: 1, 3: 2, 4: 3}  # num, channels, height, width


def is_hdf5(path):
    return os.fspath(path).lower().endswith(".h5")


def write(path, state, history):
    """Write SolverState `state` (its history field ignored) with `history`, a list of float32
    numpy arrays, to `path` (HDF5 when it ends in .h5)."""
    if is_hdf5(path):
        return _write_hdf5(path, state, history)
    head = pb.SolverState()
    head.CopyFrom(state)
    del head.history[:]
    with atomic_open(path, "wb") as f:
        f.write(head.SerializeToString())
        for arr in history:
            arr = np.ascontiguousarray(arr, dtype="<f4")
            shape = pb.BlobShape(dim=arr.shape).SerializeToString()
            data_len = arr.nbytes
            body_len = (1 + _varint_len(len(shape)) + len(shape)
                        + 1 + _varint_len(data_len) + data_len)
            f.write(bytes([_HISTORY << 3 | 2]) + _varint(body_len))
            f.write(bytes([_BLOB_SHAPE << 3 | 2]) + _varint(len(shape)) + shape)
            f.write(bytes([_BLOB_DATA << 3 | 2]) + _varint(data_len))
            f.write(memoryview(arr).cast("B"))


def read(path):
    """Read a .solverstate (binary or .h5): (SolverState without history, [np.ndarray ...])."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CaffeError(f"{path}: no such solverstate file")
    if is_hdf5(path):
        return _read_hdf5(path)
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise CaffeError(f"{path}: the file is empty (expected a binary SolverState)")
    view = memoryview(data)
    rest = bytearray()
    history = []
    pos = 0
    try:
        while pos < len(data):
            start = pos
            key, pos = _read_varint(view, pos)
            field, wire = key >> 3, key & 7
            if field == _HISTORY and wire == 2:
                n, pos = _read_varint(view, pos)
                _check_end(pos + n, len(data))
                history.append(_read_blob(view[pos:pos + n], path, len(history)))
                pos += n
            else:
                pos = _skip(view, pos, wire)
                rest += view[start:pos]
    except _Truncated:
        raise CaffeError(f"{path}: truncated or corrupt SolverState (stopped at byte {pos} of {len(data)})") from None
    state = pb.SolverState()
    try:
        state.ParseFromString(bytes(rest))
    except Exception as e:  # protobuf's DecodeError
        raise CaffeError(f"{path}: corrupt SolverState ({e})") from None
    return state, history


def _read_blob(view, path, index):
    shape, legacy, chunks, pos = None, [0, 0, 0, 0], [], 0
    while pos < len(view):
        key, pos = _read_varint(view, pos)
        field, wire = key >> 3, key & 7
        if field == _BLOB_DATA and wire == 2:
            n, pos = _read_varint(view, pos)
            _check_end(pos + n, len(view))
            chunks.append(np.frombuffer(view[pos:pos + n], dtype="<f4"))
            pos += n
        elif field == _BLOB_DATA and wire == 5:
            _check_end(pos + 4, len(view))
            chunks.append(np.frombuffer(view[pos:pos + 4], dtype="<f4"))
            pos += 4
        elif field == _BLOB_DOUBLE and wire == 2:
            n, pos = _read_varint(view, pos)
            _check_end(pos + n, len(view))
            chunks.append(np.frombuffer(view[pos:pos + n], dtype="<f8").astype(np.float32))
            pos += n
        elif field == _BLOB_SHAPE and wire == 2:
            n, pos = _read_varint(view, pos)
            _check_end(pos + n, len(view))
            shape = tuple(pb.BlobShape.FromString(bytes(view[pos:pos + n])).dim)
            pos += n
        elif field in _LEGACY_DIMS and wire == 0:
            legacy[_LEGACY_DIMS[field]], pos = _read_varint(view, pos)
        else:
            pos = _skip(view, pos, wire)
    arr = chunks[0] if len(chunks) == 1 else (np.concatenate(chunks) if chunks else np.zeros(0, np.float32))
    if shape is None:
        shape = tuple(legacy)
    if int(np.prod(shape)) != arr.size:
        raise CaffeError(f"{path}: history blob {index} has shape {shape} but {arr.size} values")
    return arr.reshape(shape)


def _write_hdf5(path, state, history):
    import h5py

    with atomic_open(path, "w+b") as f:
        with h5py.File(f, "w") as h:
            h.create_dataset("iter", data=np.array([state.iter], dtype=np.int32))
            h.create_dataset("learned_net", data=np.bytes_(state.learned_net.encode()))
            h.create_dataset("current_step", data=np.array([state.current_step], dtype=np.int32))
            if state.HasField("plateau_best"):
                h.create_dataset("plateau_best", data=np.array([state.plateau_best], dtype=np.float32))
            h.create_dataset("plateau_bad_tests", data=np.array([state.plateau_bad_tests], dtype=np.int32))
            group = h.create_group("history")
            for i, arr in enumerate(history):
                group.create_dataset(str(i), data=np.asarray(arr, dtype=np.float32))


def _read_hdf5(path):
    import h5py

    try:
        h = h5py.File(path, "r")
    except OSError as e:
        raise CaffeError(f"{path}: not a readable HDF5 solverstate ({e})") from None
    with h:
        for name in ("iter", "current_step", "history"):
            if name not in h:
                raise CaffeError(f"{path}: HDF5 solverstate has no '{name}' (Caffe's layout: iter, "
                                 "learned_net, current_step, history/0..n-1)")
        state = pb.SolverState(iter=int(np.asarray(h["iter"]).reshape(-1)[0]),
                               current_step=int(np.asarray(h["current_step"]).reshape(-1)[0]))
        if "learned_net" in h:
            value = h["learned_net"][()]
            state.learned_net = value.decode() if isinstance(value, bytes) else str(value)
            state.learned_net = state.learned_net.rstrip("\x00")
        if "plateau_best" in h:
            state.plateau_best = float(np.asarray(h["plateau_best"]).reshape(-1)[0])
        if "plateau_bad_tests" in h:
            state.plateau_bad_tests = int(np.asarray(h["plateau_bad_tests"]).reshape(-1)[0])
        group = h["history"]
        history = []
        for i in range(len(group)):
            if str(i) not in group:
                raise CaffeError(f"{path}: history/{i} is missing ({len(group)} entries)")
            history.append(np.asarray(group[str(i)], dtype=np.float32))
    return state, history


# -- the wire format -------------------------------------------------------------------------------

class _Truncated(Exception):
    pass


def _check_end(end, size):
    if end > size:
        raise _Truncated


def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varint_len(n):
    return len(_varint(n))


def _read_varint(view, pos):
    result, shift = 0, 0
    while True:
        if pos >= len(view) or shift > 63:
            raise _Truncated
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _skip(view, pos, wire):
    if wire == 0:
        return _read_varint(view, pos)[1]
    if wire == 1:
        end = pos + 8
    elif wire == 2:
        n, pos = _read_varint(view, pos)
        end = pos + n
    elif wire == 5:
        end = pos + 4
    else:
        raise _Truncated
    _check_end(end, len(view))
    return end
