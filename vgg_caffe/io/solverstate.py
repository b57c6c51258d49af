"""Reading and writing .solverstate files: Caffe's SolverState in binary protobuf or HDF5.

Binary (SGDSolver::SnapshotSolverStateToBinaryProto): a SolverState message with iter,
learned_net (the .caffemodel written beside it), current_step and the solver's history blobs
(`history`, shape + packed float data): one per learnable blob for SGD, Nesterov, AdaGrad and
RMSProp; 2N for AdaDelta and Adam (the N of the first slot, then the N of the second, as Caffe's
AdaDeltaPreSolve / AdamPreSolve append them). This module stores whatever list it is given in
order; the solver (vgg_caffe.train.updates) decides the layout. A VGG state holds ~133M floats, so the history blobs are
written and read straight on the wire format with wire.py's codec (the one .caffemodel files use:
data written from the array's buffer, read back as zero-copy views) rather than through protobuf's
repeated-float containers; everything else goes through our schema.

HDF5 (SnapshotSolverStateToHDF5, ".solverstate.h5"): int datasets "iter" and "current_step" of
shape (1,), a string dataset "learned_net" (scalar, NUL-terminated, as H5LTmake_dataset_string
writes it: Caffe's hdf5_load_string reads it into a C string, so the NUL must be stored), and a
group "history" with datasets "0", "1", ...
Our plateau fields are stored beside them ("plateau_best", "plateau_bad_tests"); Caffe ignores them.
"""
import os

import numpy as np

from . import wire
from ..errors import CaffeError
from ..fileio import atomic_open
from ..proto import pb

_HISTORY = 3                                  # SolverState.history
_HISTORY_TAG = (_HISTORY << 3) | wire.LENGTH  # one byte


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
            before, data, after = wire.blob_pieces(np.asarray(arr, dtype=np.float32), shape_first=True)
            f.write(wire.length_field(_HISTORY, len(before) + len(data) + len(after)) + before)
            f.write(data)
            f.write(after)


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
    if path.lower().endswith(".caffemodel") or _looks_like_net(data):
        raise CaffeError(f"{path} is not a .solverstate (it looks like a caffemodel: resume takes "
                         "PREFIX_iter_N.solverstate; weights go to --weights)")
    r = wire.Reader(memoryview(data), path, problem="truncated or corrupt SolverState")
    rest = bytearray()
    history = []
    pos, end = 0, len(data)
    while pos < end:
        r.context = f"history blob {len(history)}" if data[pos] == _HISTORY_TAG else "the SolverState"
        number, wire_type, start, stop, _ = r.field(pos, end)
        if number == _HISTORY and wire_type == wire.LENGTH:
            history.append(_history_blob(r, start, stop, len(history)))
        else:
            rest += data[pos:stop]
        pos = stop
    state = pb.SolverState()
    try:
        state.ParseFromString(bytes(rest))
    except Exception as e:  # protobuf's DecodeError
        raise CaffeError(f"{path}: corrupt SolverState ({e})") from None
    return state, history


def _looks_like_net(data):
    """True when the first field is a NetParameter's and cannot be a SolverState's: field 1 as a
    string (NetParameter.name; SolverState.iter is a varint), field 100 (a layer), or field 2
    holding a message rather than text (a V1 layer; SolverState.learned_net is a file name)."""
    r = wire.Reader(memoryview(data), "")
    try:
        number, wire_type, start, stop, _ = r.field(0, len(data))
    except CaffeError:
        return False
    if wire_type != wire.LENGTH:
        return False
    if number in (1, 100):
        return True
    if number == 2:
        try:
            return not bytes(data[start:stop]).decode("utf-8").isprintable()
        except UnicodeDecodeError:
            return True
    return False


def _history_blob(r, start, stop, index):
    """History blob `index` (the BlobProto at [start, stop) of r.buf) as a float32 array of its
    shape; a view of the file's bytes when its data is one packed float field."""
    record = wire.read_blob(r, start, stop)
    values = record.values(r.buf)
    if values.dtype != np.float32:  # double_data
        values = values.astype(np.float32)
    if int(np.prod(record.shape)) != values.size:
        raise CaffeError(f"{r.source}: history blob {index} has shape {record.shape} but {values.size} values")
    return values.reshape(record.shape)


def _write_hdf5(path, state, history):
    import h5py

    with atomic_open(path, "w+b") as f:
        with h5py.File(f, "w") as h:
            h.create_dataset("iter", data=np.array([state.iter], dtype=np.int32))
            _write_c_string(h, "learned_net", state.learned_net)
            h.create_dataset("current_step", data=np.array([state.current_step], dtype=np.int32))
            if state.HasField("plateau_best"):
                h.create_dataset("plateau_best", data=np.array([state.plateau_best], dtype=np.float32))
            h.create_dataset("plateau_bad_tests", data=np.array([state.plateau_bad_tests], dtype=np.int32))
            group = h.create_group("history")
            for i, arr in enumerate(history):
                group.create_dataset(str(i), data=np.asarray(arr, dtype=np.float32))


def _write_c_string(h, name, text):
    """A scalar fixed-length string dataset holding `text` and its terminating NUL (H5T_STR_NULLTERM,
    size len + 1), the dataset H5LTmake_dataset_string makes."""
    import h5py

    data = text.encode()
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(len(data) + 1)
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    dset = h5py.h5d.create(h.id, name.encode(), tid, h5py.h5s.create(h5py.h5s.SCALAR))
    dset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(data, dtype=f"S{len(data) + 1}"))


def _read_hdf5(path):
    import h5py

    try:
        h = h5py.File(path, "r")
    except OSError as e:
        raise CaffeError(f"{path}: not a readable HDF5 solverstate ({e})") from None
    with h:
        if "data" in h and "iter" not in h:
            raise CaffeError(f"{path} is not a .solverstate (it looks like Caffe HDF5 weights: resume takes "
                             "PREFIX_iter_N.solverstate.h5; weights go to --weights)")
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
