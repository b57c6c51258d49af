"""Caffe's six solver types against their update formulas, written out here in numpy.

The net is Input -> InnerProduct ip1 -> InnerProduct ip2 -> EuclideanLoss, with lr_mult 2 /
decay_mult 0 on ip1's bias, ip2's weight frozen (lr_mult 0, decay_mult 1) and decay_mult 2 on its
bias; the solver has weight_decay, iter_size 2, clip_gradients (active on the first iteration),
lr_policy step (the rate halves at iteration 2) and non-default delta / rms_decay / momentum2.
The numpy twin (float64) does the forward, the backward and each type's update from the formulas
of Caffe's sgd/nesterov/adagrad/rmsprop/adadelta/adam_solver.cpp: it shares no code with
vgg_caffe.train.updates.

Also: the .solverstate holds Caffe's history layout (N blobs, or 2N for AdaDelta and Adam: the
first N then N more), read back with protobuf and h5py; states written the way Caffe writes them
resume here; resuming is bitwise identical to an uninterrupted run for every type and format;
`python -m vgg_caffe.solve` runs each type (half of them through the legacy solver_type enum);
Caffe's CHECKs (momentum with AdaGrad/RMSProp, rms_decay range) are CaffeErrors.
"""
import os
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.proto import parse_text, pb, read_message
from vgg_caffe.train.log import TrainingLog
from vgg_caffe.train.solver import Solver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, K, H, C = 4, 3, 5, 2        # batch, inputs, ip1 outputs, ip2 outputs
ROWS = 24                       # the data set: forward pass j reads rows j*N .. j*N+N-1 (mod ROWS)
LR_MULT = [1, 2, 0, 1]          # ip1 weight, ip1 bias, ip2 weight (frozen), ip2 bias
DECAY_MULT = [1, 0, 1, 2]
TYPES = ["SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"]
SLOTS = {"SGD": 1, "Nesterov": 1, "AdaGrad": 1, "RMSProp": 1, "AdaDelta": 2, "Adam": 2}
# Per type: its own settings (non-default where the type reads them, so a field that is not
# read shows), with a base_lr of the size that type is used with.
SETTINGS = {
    "SGD": "base_lr: 0.2 momentum: 0.9",
    "Nesterov": "base_lr: 0.2 momentum: 0.8",
    "AdaGrad": "base_lr: 0.1 delta: 0.05",
    "RMSProp": "base_lr: 0.05 rms_decay: 0.9 delta: 0.02",
    "AdaDelta": "base_lr: 1.0 momentum: 0.9 delta: 0.0001",
    "Adam": "base_lr: 0.05 momentum: 0.8 momentum2: 0.95 delta: 0.001",
}
LAYERS = f"""
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}
        inner_product_param {{ num_output: {H}
          weight_filler {{ type: "gaussian" std: 0.5 }} bias_filler {{ type: "uniform" min: -0.3 max: 0.3 }} }} }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        param {{ lr_mult: 0 decay_mult: 1 }} param {{ lr_mult: 1 decay_mult: 2 }}
        inner_product_param {{ num_output: {C}
          weight_filler {{ type: "gaussian" std: 0.5 }} bias_filler {{ type: "uniform" min: -0.3 max: 0.3 }} }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "ip2" bottom: "target" top: "loss" }}
"""
INPUT = f"""layer {{ name: "data" type: "Input" top: "data" top: "target"
        input_param {{ shape {{ dim: {N} dim: {K} }} shape {{ dim: {N} dim: {C} }} }} }}"""
COMMON = """lr_policy: "step" gamma: 0.5 stepsize: 2 weight_decay: 0.04 iter_size: 2
clip_gradients: 1.5 display: 0 random_seed: 3 solver_mode: CPU"""

_r = np.random.RandomState(5)
X = _r.randn(ROWS, K).astype(np.float32)
T = (_r.randn(ROWS, C) * 2).astype(np.float32)


def rows(index):
    picked = [(index * N + j) % ROWS for j in range(N)]
    return X[picked], T[picked]


def feed(index, start, stop):
    x, t = rows(index)
    return {"data": torch.from_numpy(x[start:stop]), "target": torch.from_numpy(t[start:stop])}


def solver_param(kind, max_iter=3, **over):
    p = parse_text(f"""net_param {{ name: "types" {INPUT} {LAYERS} }}
        type: "{kind}" {SETTINGS[kind]} {COMMON} max_iter: {max_iter}""", pb.SolverParameter())
    for k, v in over.items():
        setattr(p, k, v)
    return p


def make(param):
    return Solver(param, log=TrainingLog(enabled=False), train_feed=feed)


def weights(solver):
    return [b.detach().numpy().copy() for b in solver.params]


# -- the numpy twin -------------------------------------------------------------------------------

def net_grads(w, x, t):
    """Forward and backward of ip1 -> ip2 -> EuclideanLoss by hand: d loss / d (W1, b1, W2, b2)."""
    W1, b1, W2, b2 = w
    a = x @ W1.T + b1
    z = a @ W2.T + b2
    dz = (z - t) / N                     # loss = sum((z - t)^2) / (2 N)
    da = dz @ W2
    return [da.T @ x, da.sum(0), dz.T @ a, dz.sum(0)]


def reference(kind, p, start, iters):
    """Caffe's Solver::Step + ApplyUpdate for `iters` iterations from weights `start`, in float64.
    Returns (weights, history [slot][blob], iterations where clipping acted)."""
    w = [a.astype(np.float64) for a in start]
    hist = [[np.zeros_like(a) for a in w] for _ in range(SLOTS[kind])]
    clipped = []
    for it in range(iters):
        diff = [np.zeros_like(a) for a in w]
        for k in range(p.iter_size):                         # diffs summed over iter_size passes
            x, t = rows(it * p.iter_size + k)
            diff = [d + g for d, g in zip(diff, net_grads(w, x.astype(np.float64), t.astype(np.float64)))]
        diff[2][...] = 0                                     # lr_mult 0: Caffe computes no diff
        rate = p.base_lr * p.gamma ** (it // p.stepsize)
        norm = np.sqrt(sum((d ** 2).sum() for d in diff))
        if p.clip_gradients >= 0 and norm > p.clip_gradients:
            diff = [d * (p.clip_gradients / norm) for d in diff]
            clipped.append(it)
        for i in range(len(w)):
            d = diff[i] / p.iter_size + p.weight_decay * DECAY_MULT[i] * w[i]
            lr = rate * LR_MULT[i]
            h = [s[i] for s in hist]
            if kind == "SGD":
                h[0] = p.momentum * h[0] + lr * d
                step = h[0]
            elif kind == "Nesterov":
                old = h[0]
                h[0] = p.momentum * h[0] + lr * d
                step = (1 + p.momentum) * h[0] - p.momentum * old
            elif kind == "AdaGrad":
                h[0] = h[0] + d * d
                step = lr * d / (np.sqrt(h[0]) + p.delta)
            elif kind == "RMSProp":
                h[0] = p.rms_decay * h[0] + (1 - p.rms_decay) * d * d
                step = lr * d / (np.sqrt(h[0]) + p.delta)
            elif kind == "AdaDelta":
                h[0] = p.momentum * h[0] + (1 - p.momentum) * d * d
                u = d * np.sqrt((h[1] + p.delta) / (h[0] + p.delta))
                h[1] = p.momentum * h[1] + (1 - p.momentum) * u * u
                step = lr * u
            elif kind == "Adam":
                b1, b2, t = p.momentum, p.momentum2, it + 1
                h[0] = b1 * h[0] + (1 - b1) * d
                h[1] = b2 * h[1] + (1 - b2) * d * d
                step = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * h[0] / (np.sqrt(h[1]) + p.delta)
            for s in range(SLOTS[kind]):
                hist[s][i] = h[s]
            w[i] = w[i] - step
    return w, hist, clipped


def close(got, want):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("kind", TYPES)
def test_first_steps_match_the_formulas(kind):
    p = solver_param(kind, snapshot_after_train=False)
    solver = make(p)
    start = weights(solver)
    solver.solve()
    want_w, want_h, clipped = reference(kind, p, start, 3)
    assert clipped and clipped[0] == 0, "clip_gradients should act on the first iteration"
    for got, want in zip(weights(solver), want_w):
        close(got, want)
    assert len(solver.history) == SLOTS[kind] * 4
    for s in range(SLOTS[kind]):
        for i in range(4):
            close(solver.history[s * 4 + i].numpy(), want_h[s][i])
    np.testing.assert_array_equal(weights(solver)[2], start[2])     # lr_mult 0: never moves
    if kind in ("AdaGrad", "RMSProp", "AdaDelta", "Adam"):          # ... but its decay enters the history
        assert np.abs(solver.history[2].numpy()).max() > 0


@pytest.mark.parametrize("kind", ["RMSProp", "Adam"])
def test_caffe_defaults(kind):
    """rms_decay 0.99, momentum2 0.999, delta 1e-8 when the prototxt leaves them out."""
    p = solver_param(kind, snapshot_after_train=False)
    for field in ("rms_decay", "momentum2", "delta"):
        p.ClearField(field)
    assert (p.rms_decay, p.momentum2, p.delta) == (np.float32(0.99), np.float32(0.999), np.float32(1e-8))
    solver = make(p)
    start = weights(solver)
    solver.solve()
    for got, want in zip(weights(solver), reference(kind, p, start, 3)[0]):
        close(got, want)


def test_legacy_enum_upgraded():
    p = solver_param("Adam", snapshot_after_train=False)
    p.ClearField("type")
    p.solver_type = pb.SolverParameter.ADAM
    solver = make(p)
    assert solver.type == "Adam" and len(solver.history) == 8
    start = weights(solver)
    solver.solve()
    for got, want in zip(weights(solver), reference("Adam", p, start, 3)[0]):
        close(got, want)


# -- the .solverstate ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", TYPES)
def test_solverstate_layout(tmp_path, kind):
    """Binary: protobuf's own SolverState parses the file; HDF5: h5py reads Caffe's datasets. Both
    hold slots * N history blobs, slot 0 of every blob first, each equal to the formula's."""
    n = 4 * SLOTS[kind]
    for fmt, ext in (("BINARYPROTO", ""), ("HDF5", ".h5")):
        p = solver_param(kind, snapshot_prefix=str(tmp_path / fmt / "s"),
                         snapshot_format=pb.SolverParameter.SnapshotFormat.Value(fmt))
        solver = make(p)
        start = weights(solver)
        solver.solve()                                       # snapshot_after_train: iteration 3
        _, want_h, _ = reference(kind, p, start, 3)
        want = [want_h[s][i] for s in range(SLOTS[kind]) for i in range(4)]
        path = tmp_path / fmt / f"s_iter_3.solverstate{ext}"
        if fmt == "BINARYPROTO":
            msg = pb.SolverState()
            msg.ParseFromString(path.read_bytes())
            assert msg.iter == 3 and msg.learned_net == str(tmp_path / fmt / "s_iter_3.caffemodel")
            assert len(msg.history) == n
            saved = [np.array(b.data, np.float32).reshape(tuple(b.shape.dim)) for b in msg.history]
        else:
            with h5py.File(path, "r") as h:
                assert h["iter"].shape == (1,) and int(h["iter"][0]) == 3
                assert h["current_step"].shape == (1,)
                name = str(tmp_path / fmt / "s_iter_3.caffemodel.h5")
                # H5LTmake_dataset_string's layout: scalar, NUL-terminated, len + 1 bytes
                string_type = h["learned_net"].id.get_type()
                assert h["learned_net"].shape == ()
                assert string_type.get_size() == len(name) + 1
                assert string_type.get_strpad() == h5py.h5t.STR_NULLTERM
                assert h["learned_net"][()].decode() == name
                assert sorted(h["history"], key=int) == [str(k) for k in range(n)]
                saved = [np.asarray(h["history"][str(k)]) for k in range(n)]
        for k, (arr, ref) in enumerate(zip(saved, want)):
            assert arr.shape == start[k % 4].shape           # block s, blob k % N
            np.testing.assert_array_equal(arr, solver.history[k].numpy())
            close(arr, ref)


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("fmt", ["BINARYPROTO", "HDF5"])
def test_resume_is_bitwise(tmp_path, kind, fmt):
    snap = pb.SolverParameter.SnapshotFormat.Value(fmt)
    whole = make(solver_param(kind, 6, snapshot_format=snap, snapshot_prefix=str(tmp_path / "whole")))
    whole.solve()
    make(solver_param(kind, 3, snapshot_format=snap, snapshot_prefix=str(tmp_path / "part"))).solve()
    ext = ".h5" if fmt == "HDF5" else ""
    second = make(solver_param(kind, 6, snapshot_format=snap, snapshot_prefix=str(tmp_path / "resumed")))
    second.solve(resume_file=str(tmp_path / f"part_iter_3.solverstate{ext}"))
    assert second.iter == 6
    for a, b in zip(whole.params + whole.history, second.params + second.history):
        assert torch.equal(a, b)


def caffe_style_state(tmp_path, solver, fmt):
    """The state of `solver` written the way Caffe writes it, independently of solverstate.py:
    protobuf's serializer (BlobProto data before shape) or h5py's own datasets."""
    model = tmp_path / ("caffe_iter_3.caffemodel" + (".h5" if fmt == "HDF5" else ""))
    solver.net.save(str(model))
    history = [h.numpy() for h in solver.history]
    if fmt == "HDF5":
        path = tmp_path / "caffe_iter_3.solverstate.h5"
        with h5py.File(path, "w") as h:
            h["iter"] = np.array([solver.iter], np.int32)
            h["learned_net"] = np.array(str(model).encode() + b"\0")
            h["current_step"] = np.array([0], np.int32)
            for k, a in enumerate(history):
                h[f"history/{k}"] = a
        return path
    state = pb.SolverState(iter=solver.iter, learned_net=str(model), current_step=0)
    for a in history:
        blob = state.history.add()
        blob.shape.dim.extend(a.shape)
        blob.data.extend(a.ravel().tolist())
    path = tmp_path / "caffe_iter_3.solverstate"
    path.write_bytes(state.SerializeToString())
    return path


@pytest.mark.parametrize("kind", ["AdaDelta", "Adam", "RMSProp"])
@pytest.mark.parametrize("fmt", ["BINARYPROTO", "HDF5"])
def test_resume_from_a_caffe_written_state(tmp_path, kind, fmt):
    whole = make(solver_param(kind, 6, snapshot_after_train=False))
    whole.solve()
    part = make(solver_param(kind, 3, snapshot_after_train=False))
    part.solve()
    path = caffe_style_state(tmp_path, part, fmt)
    second = make(solver_param(kind, 6, snapshot_after_train=False))
    second.solve(resume_file=str(path))
    for a, b in zip(whole.params + whole.history, second.params + second.history):
        assert torch.equal(a, b)


def test_resume_with_another_type_is_refused(tmp_path):
    make(solver_param("SGD", 2, snapshot_prefix=str(tmp_path / "sgd"))).solve()
    adam = make(solver_param("Adam", 4))
    with pytest.raises(CaffeError, match=r"sgd_iter_2.solverstate: incorrect length of history blobs: "
                                         r"the file has 4, the solver keeps 8 .*another solver type"):
        adam.restore(str(tmp_path / "sgd_iter_2.solverstate"))


# -- Caffe's CHECKs --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, over, message", [
    ("AdaGrad", {"momentum": 0.9}, r"momentum cannot be used with AdaGrad \(momentum: 0.9"),
    ("RMSProp", {"momentum": 0.5}, r"momentum cannot be used with RMSProp \(momentum: 0.5"),
    ("RMSProp", {"rms_decay": 1.0}, r"rms_decay should lie between 0 and 1 \(got 1\); allowed: 0 <= rms_decay < 1"),
    ("RMSProp", {"rms_decay": -0.1}, r"rms_decay should lie between 0 and 1"),
    ("Adam", {"momentum": 1.0}, r"Adam's beta1 \(momentum\) is 1"),
])
def test_checks(kind, over, message):
    with pytest.raises(CaffeError, match=r"<solver>: " + message):
        make(solver_param(kind, **over))


def test_unknown_type_lists_the_known_ones():
    with pytest.raises(CaffeError, match="unknown solver type 'Adamax'; expected one of "
                                         "AdaDelta, AdaGrad, Adam, Nesterov, RMSProp, SGD"):
        make(solver_param("SGD", type="Adamax"))


# -- python -m vgg_caffe.solve ---------------------------------------------------------------------

def write_run(tmp_path, kind, spelling):
    """A solver prototxt (type string or the legacy enum) over a net reading X, T from HDF5."""
    with h5py.File(tmp_path / "train.h5", "w") as h:
        h["data"], h["target"] = X, T
    (tmp_path / "train.txt").write_text("train.h5\n")
    (tmp_path / "net.prototxt").write_text(f"""name: "types"
layer {{ name: "data" type: "HDF5Data" top: "data" top: "target"
        hdf5_data_param {{ source: "{tmp_path / 'train.txt'}" batch_size: {N} }} }}
{LAYERS}""")
    type_line = f'type: "{kind}"' if spelling == "type" else f"solver_type: {kind.upper()}"
    text = f"""net: "net.prototxt"
{type_line} {SETTINGS[kind]} {COMMON.replace("display: 0", "display: 1")} max_iter: 3
snapshot_prefix: "{tmp_path}/run"
"""
    (tmp_path / "solver.prototxt").write_text(text)
    return tmp_path / "solver.prototxt"


@pytest.mark.parametrize("kind, spelling", [("SGD", "type"), ("Nesterov", "enum"), ("AdaGrad", "type"),
                                            ("RMSProp", "enum"), ("AdaDelta", "enum"), ("Adam", "type")])
def test_solve_cli_runs_each_type(tmp_path, kind, spelling):
    solver_file = write_run(tmp_path, kind, spelling)
    p = parse_text(solver_file.read_text(), pb.SolverParameter())
    p.type = kind
    p.ClearField("solver_type")
    here = Solver(str(solver_file), log=TrainingLog(enabled=False))     # the same fillers (seed 3)
    start = weights(here)
    here.close()
    proc = subprocess.run([sys.executable, "-m", "vgg_caffe.solve", str(solver_file), "--no-progress"],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    rates = dict(re.findall(r"Iteration (\d+), lr = (\S+)", proc.stderr))
    assert {int(k): float(v) for k, v in rates.items()} == pytest.approx({0: p.base_lr, 1: p.base_lr, 2: p.base_lr / 2})
    msg = read_message(str(tmp_path / "run_iter_3.caffemodel"), pb.NetParameter)
    layers = {layer.name: layer for layer in msg.layer}
    got = [np.array(b.data, np.float32) for name in ("ip1", "ip2") for b in layers[name].blobs]
    for a, want in zip(got, reference(kind, p, start, 3)[0]):
        close(a.reshape(want.shape), want)
    state = pb.SolverState()
    state.ParseFromString((tmp_path / "run_iter_3.solverstate").read_bytes())
    assert len(state.history) == 4 * SLOTS[kind]


def test_solve_cli_check_is_one_line(tmp_path):
    solver_file = write_run(tmp_path, "AdaGrad", "type")
    solver_file.write_text(solver_file.read_text() + "momentum: 0.9\n")
    proc = subprocess.run([sys.executable, "-m", "vgg_caffe.solve", str(solver_file)], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"error: {solver_file}: momentum cannot be used with AdaGrad" in proc.stderr
