"""Solver snapshots: Caffe's Solver::Snapshot / Solver::Restore (solver.cpp, sgd_solver.cpp).

A snapshot is two files named PREFIX_iter_N: the weights, PREFIX_iter_N.caffemodel, and the solver
state, PREFIX_iter_N.solverstate (a SolverState: iter, learned_net = the weights' path, the lr
policy's position and the solver's history: one blob per learnable blob for SGD, Nesterov, AdaGrad
and RMSProp, 2N for AdaDelta and Adam, the first N then the second N, as Caffe stores them);
snapshot_format: HDF5 appends ".h5" to both and writes Caffe's HDF5 layouts. Net.save and solverstate.write go through
vgg_caffe.fileio, so a kill during a write leaves the previous snapshot intact.

The prefix follows Caffe's UpgradeSnapshotPrefixProperty; restoring reads the weights from
learned_net (or, when the pair was moved, from beside the solverstate) and checks the history
against the net's learnable blobs before anything is copied.
"""
import os

import numpy as np
import torch

from ..io import solverstate
from ..errors import CaffeError
from ..fileio import check_writable
from ..proto import pb


def snapshot_prefix(param, source):
    """Caffe's UpgradeSnapshotPrefixProperty: unset -> the solver file's path without its
    extension; a directory -> that directory / the solver file's stem.

    Beyond Caffe, the prefix is checked here, at start-up, when the run will snapshot: a prefix
    under a regular file or in a folder that takes no new files is an error now, not after the
    training that the first snapshot would have saved."""
    stem = os.path.splitext(source)[0] if source != "<solver>" else "snapshot"
    if not param.snapshot_prefix:
        prefix = stem
    else:
        prefix = param.snapshot_prefix
        if os.path.isdir(prefix) or prefix.endswith(os.sep):
            prefix = os.path.join(prefix, os.path.basename(stem))
    if param.snapshot > 0 or param.snapshot_after_train:
        try:
            check_writable(snapshot_filename(prefix, 0, ".caffemodel"), "snapshots")
        except CaffeError as e:
            raise CaffeError(f"{source}: snapshot_prefix '{param.snapshot_prefix or prefix}': {e}") from None
    return prefix


def snapshot_filename(prefix, iteration, extension):
    return f"{prefix}_iter_{iteration}{extension}"


def write(param, prefix, iteration, net, schedule, history, log):
    """Weights, then the solver state, at `iteration`. Returns (weights path, solverstate path)."""
    hdf5 = param.snapshot_format == pb.SolverParameter.HDF5
    model = snapshot_filename(prefix, iteration, ".caffemodel.h5" if hdf5 else ".caffemodel")
    kind = "HDF5 file" if hdf5 else "binary proto file"
    log.info(f"Snapshotting to {kind} {model}")
    net.save(model)
    state_path = snapshot_filename(prefix, iteration, ".solverstate.h5" if hdf5 else ".solverstate")
    log.info(f"Snapshotting solver state to {kind} {state_path}")
    state = pb.SolverState(iter=iteration, learned_net=model)
    schedule.save(state)
    solverstate.write(state_path, state, [h.detach().cpu().numpy() for h in history])
    return model, state_path


def restore(path, net, schedule, history, learnable):
    """Weights (learned_net), lr policy position and history (in place) from the solverstate at
    `path`; `learnable` (net.learnable()) names a blob whose history does not fit. Returns the
    iteration to continue from."""
    state, saved_history = solverstate.read(path)
    if len(saved_history) != len(history):
        raise CaffeError(f"{path}: incorrect length of history blobs: the file has {len(saved_history)}, "
                         f"the solver keeps {len(history)} ({len(learnable)} learnable blobs; SGD, "
                         "Nesterov, AdaGrad and RMSProp keep one history blob per learnable blob, AdaDelta "
                         "and Adam two: was the state written by another solver type?)")
    for k, (have, saved) in enumerate(zip(history, saved_history)):
        if tuple(have.shape) != tuple(saved.shape):
            layer, i, _, _ = learnable[k % len(learnable)]  # AdaDelta, Adam: a second block of N
            raise CaffeError(f"{path}: history blob {k} (layer '{layer.name}' blob {i}) has shape "
                             f"{tuple(saved.shape)}, the net's is {tuple(have.shape)}")
    if state.learned_net:
        model = state.learned_net
        if not os.path.exists(model):  # moved together with its solverstate
            beside = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.basename(model))
            if os.path.exists(beside):
                model = beside
        if not os.path.exists(model):
            raise CaffeError(f"{path}: its weights file '{state.learned_net}' does not exist")
        net.copy_from(model, strict=True)
    with torch.no_grad():
        for have, saved in zip(history, saved_history):
            have.copy_(torch.from_numpy(np.array(saved, dtype=np.float32, copy=True)))
    schedule.restore(state)
    return state.iter


class SolverSnapshots:
    """Mixin of Solver: Caffe's Solver::Snapshot and Solver::Restore over the functions above."""

    def snapshot_filename(self, extension):
        return snapshot_filename(self.snapshot_prefix, self.iter, extension)

    def snapshot(self):
        """Caffe's Solver::Snapshot (rank 0 only): weights, then the solver state. Returns the paths."""
        if self.rank != 0:
            return None
        return write(self.param, self.snapshot_prefix, self.iter, self.net, self.schedule,
                               self.history, self.log)

    def restore(self, path):
        """Caffe's Solver::Restore: iteration, weights (learned_net), lr policy position, history."""
        self.iter = restore(path, self.net, self.schedule, self.history, self.learnable)
        self.log.info(f"{self.type}Solver: restoring history")
