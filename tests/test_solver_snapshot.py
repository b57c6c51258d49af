"""Snapshots, resume, divergence and signals.

- 2N iterations in one go equal N, snapshot, resume, N more (CPU, bitwise), with dropout, momentum
  and a step lr change inside the window; in both snapshot formats (binary and HDF5).
- A NaN loss stops with a CaffeError naming the iteration, after a snapshot of the weights before
  the bad update.
- SIGHUP to a running `python -m vgg_caffe.solve` writes a snapshot and training goes on; SIGINT
  writes one and stops.
"""
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch

from vgg_caffe.io import solverstate
from vgg_caffe.errors import CaffeError
from vgg_caffe.proto import parse_text, pb, read_message
from vgg_caffe.train.solver import Solver, TrainingDiverged
from vgg_caffe.train.log import TrainingLog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, K, C = 8, 6, 3

LAYERS = f"""
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}
        inner_product_param {{ num_output: 16 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "drop1" type: "Dropout" bottom: "ip1" top: "ip1" dropout_param {{ dropout_ratio: 0.5 }} }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        inner_product_param {{ num_output: {C} weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""
INPUT = f"""layer {{ name: "data" type: "Input" top: "data" top: "label"
        input_param {{ shape {{ dim: {N} dim: {K} }} shape {{ dim: {N} }} }} }}"""


def param(tmp_path, max_iter, **over):
    p = parse_text(f"""
        net_param {{ name: "resume" {INPUT} {LAYERS} }}
        base_lr: 0.05 lr_policy: "step" gamma: 0.5 stepsize: 5 momentum: 0.9 weight_decay: 0.001
        max_iter: {max_iter} display: 0 random_seed: 7 solver_mode: CPU
        snapshot_prefix: "{tmp_path}/snap"
    """, pb.SolverParameter())
    for k, v in over.items():
        setattr(p, k, v)
    return p


def feed(index, start, stop, poison_at=None):
    r = np.random.RandomState(index)
    x = r.randn(N, K).astype(np.float32)
    y = (np.abs(x[:, 0] * 3).astype(int) % C).astype(np.float32)
    if index == poison_at:
        x[2, 1] = np.nan
    return {"data": torch.from_numpy(x[start:stop]), "label": torch.from_numpy(y[start:stop])}


def make(p, **kw):
    return Solver(p, log=TrainingLog(enabled=False), train_feed=kw.pop("feed", feed), **kw)


def weights(solver):
    return [b.detach().clone() for b in solver.params]


@pytest.mark.parametrize("fmt", ["BINARYPROTO", "HDF5"])
def test_resume_continues_the_same_trajectory(tmp_path, fmt):
    snap_format = pb.SolverParameter.SnapshotFormat.Value(fmt)
    whole = make(param(tmp_path / "whole", 12, snapshot_format=snap_format))
    whole.solve()

    first = make(param(tmp_path, 6, snapshot_format=snap_format))
    first.solve()                        # snapshot_after_train writes iteration 6
    ext = ".h5" if fmt == "HDF5" else ""
    state = tmp_path / f"snap_iter_6.solverstate{ext}"
    model = tmp_path / f"snap_iter_6.caffemodel{ext}"
    assert state.exists() and model.exists()
    if fmt == "HDF5":                    # Caffe's layout
        with h5py.File(state, "r") as h:
            assert int(h["iter"][0]) == 6 and len(h["history"]) == 4
            assert h["learned_net"][()].decode() == str(model)

    second = make(param(tmp_path, 12, snapshot_format=snap_format))
    second.solve(resume_file=str(state))
    assert second.iter == 12
    for a, b in zip(weights(whole), weights(second)):
        assert torch.equal(a, b)
    for a, b in zip(whole.history, second.history):
        assert torch.equal(a, b)


def test_solverstate_is_caffes_message(tmp_path):
    """The fast writer's bytes parse with protobuf's own SolverState and hold the history."""
    s = make(param(tmp_path, 3))
    s.solve()
    msg = read_message(str(tmp_path / "snap_iter_3.solverstate"), pb.SolverState)
    assert msg.iter == 3 and msg.learned_net.endswith("snap_iter_3.caffemodel")
    assert len(msg.history) == len(s.history)
    for blob, h in zip(msg.history, s.history):
        assert tuple(blob.shape.dim) == tuple(h.shape)
        np.testing.assert_array_equal(np.array(blob.data, np.float32).reshape(h.shape), h.numpy())
    # and a state written by protobuf reads back through the fast reader
    path = tmp_path / "pb.solverstate"
    path.write_bytes(msg.SerializeToString())
    state, history = solverstate.read(str(path))
    assert state.iter == 3 and all(np.array_equal(a, b.numpy()) for a, b in zip(history, s.history))



def test_written_solverstate_parses_with_protobuf(tmp_path):
    """solverstate.write's bytes, parsed by protobuf's own SolverState (the independent
    reference), hold the header fields and every history array; a cut file names the blob."""
    r = np.random.RandomState(3)
    history = [r.randn(4, 3, 3, 3).astype(np.float32), r.randn(4).astype(np.float32),
               r.randn(5, 7).astype(np.float64), np.asfortranarray(r.randn(6, 2).astype(np.float32))]
    state = pb.SolverState(iter=1234, learned_net="x_iter_1234.caffemodel", current_step=2,
                           plateau_best=0.25, plateau_bad_tests=3)
    path = tmp_path / "s.solverstate"
    solverstate.write(str(path), state, history)
    msg = pb.SolverState()
    msg.ParseFromString(path.read_bytes())
    assert (msg.iter, msg.learned_net, msg.current_step) == (1234, "x_iter_1234.caffemodel", 2)
    assert (msg.plateau_best, msg.plateau_bad_tests) == (0.25, 3)
    assert len(msg.history) == len(history)
    for blob, h in zip(msg.history, history):
        assert tuple(blob.shape.dim) == h.shape and not blob.double_data
        np.testing.assert_array_equal(np.array(blob.data, np.float32).reshape(h.shape), h.astype(np.float32))
    got_state, got = solverstate.read(str(path))
    del msg.history[:]
    assert got_state == msg
    for a, h in zip(got, history):
        assert a.dtype == np.float32 and a.shape == h.shape
        np.testing.assert_array_equal(a, h.astype(np.float32))
    cut = tmp_path / "cut.solverstate"
    cut.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(CaffeError, match=r"cut.solverstate: truncated or corrupt SolverState .*history blob 3"):
        solverstate.read(str(cut))

def test_restore_rejects_another_net(tmp_path):
    make(param(tmp_path, 2)).solve()
    other = param(tmp_path / "other", 2)
    other.net_param.layer[1].inner_product_param.num_output = 9
    with pytest.raises(CaffeError, match="history blob 0 .*ip1"):
        make(other).restore(str(tmp_path / "snap_iter_2.solverstate"))
    bad = tmp_path / "bad.solverstate"
    bad.write_bytes((tmp_path / "snap_iter_2.solverstate").read_bytes()[:-7])
    with pytest.raises(CaffeError, match="truncated or corrupt"):
        make(param(tmp_path, 2)).restore(str(bad))


def test_nan_loss_stops_after_snapshot_of_last_good_state(tmp_path):
    good = make(param(tmp_path / "good", 3))
    good.solve()                         # reference: the weights after 3 good updates

    poisoned = make(param(tmp_path, 10), feed=lambda i, a, b: feed(i, a, b, poison_at=3))
    with pytest.raises(TrainingDiverged, match="iteration 3: the loss is nan") as err:
        poisoned.solve()
    assert "snap_iter_3.caffemodel" in str(err.value)
    assert poisoned.iter == 3
    for a, b in zip(weights(good), weights(poisoned)):
        assert torch.equal(a, b)         # the bad gradient was never applied
    check = make(param(tmp_path / "check", 10))
    check.net.copy_from(str(tmp_path / "snap_iter_3.caffemodel"))
    for a, b in zip(weights(good), weights(check)):
        assert torch.equal(a, b)


def test_unknown_solver_type_and_missing_net(tmp_path):
    with pytest.raises(CaffeError, match="unknown solver type 'Adamax'.*AdaDelta, AdaGrad, Adam, Nesterov, RMSProp, SGD"):
        make(param(tmp_path, 2, type="Adamax"))
    p = pb.SolverParameter(base_lr=0.1, lr_policy="fixed", max_iter=1)
    with pytest.raises(CaffeError, match="one of net, net_param, train_net or train_net_param"):
        make(p)
    p.net = str(tmp_path / "nope.prototxt")
    with pytest.raises(CaffeError, match="does not exist"):
        make(p)


# -- the command line and signals ------------------------------------------------------------------

def write_hdf5_run(tmp_path, max_iter, snapshot=0, display=1):
    """A solver prototxt whose net reads an HDF5 file, runnable by `python -m vgg_caffe.solve`."""
    r = np.random.RandomState(0)
    x = r.randn(64, K).astype(np.float32)
    with h5py.File(tmp_path / "train.h5", "w") as h:
        h["data"] = x
        h["label"] = (np.abs(x[:, 0] * 3).astype(int) % C).astype(np.float32)
    (tmp_path / "train.txt").write_text(str(tmp_path / "train.h5") + "\n")
    (tmp_path / "net.prototxt").write_text(f"""name: "sig"
layer {{ name: "data" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param {{ source: "{tmp_path / 'train.txt'}" batch_size: {N} }} }}
{LAYERS}""")
    (tmp_path / "solver.prototxt").write_text(f"""net: "net.prototxt"
base_lr: 0.01 lr_policy: "fixed" momentum: 0.9 max_iter: {max_iter} display: {display}
snapshot: {snapshot} snapshot_prefix: "{tmp_path}/run" random_seed: 1 solver_mode: CPU
""")
    return tmp_path / "solver.prototxt"


def start_solve(tmp_path, solver, *flags):
    log = tmp_path / "train.log"
    proc = subprocess.Popen([sys.executable, "-m", "vgg_caffe.solve", str(solver), "--log", str(log), *flags],
                            cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    return proc, log


def wait_for(predicate, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def snapshots(tmp_path):
    return sorted(p.name for p in tmp_path.glob("run_iter_*.solverstate"))


def test_sighup_snapshots_and_sigint_stops(tmp_path):
    solver = write_hdf5_run(tmp_path, max_iter=10 ** 7)
    proc, log = start_solve(tmp_path, solver)
    try:
        assert wait_for(lambda: log.exists() and "Iteration 20," in log.read_text()), "training did not start"
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: len(snapshots(tmp_path)) == 1), "SIGHUP wrote no snapshot"
        assert proc.poll() is None, "SIGHUP must not stop training"
        first = snapshots(tmp_path)[0]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    text = log.read_text()
    assert "Optimization stopped early." in text
    final = [s for s in snapshots(tmp_path) if s != first]
    assert len(final) == 1
    it = int(final[0].split("_iter_")[1].split(".")[0])
    assert it > int(first.split("_iter_")[1].split(".")[0])
    assert (tmp_path / f"run_iter_{it}.caffemodel").exists()


def test_cli_resume_and_errors(tmp_path, monkeypatch, capsys):
    """solve.main in this process (the subprocess path is covered by the signal test)."""
    from vgg_caffe import solve
    from vgg_caffe.errors import run_cli

    solver = write_hdf5_run(tmp_path, max_iter=6, snapshot=3, display=3)
    monkeypatch.chdir(tmp_path)
    assert solve.main([str(solver), "--no-progress"]) == 0
    assert snapshots(tmp_path) == ["run_iter_3.solverstate", "run_iter_6.solverstate"]
    final = read_message(str(tmp_path / "run_iter_6.caffemodel"), pb.NetParameter)
    (tmp_path / "run_iter_6.caffemodel").rename(tmp_path / "first_run_6.caffemodel")
    capsys.readouterr()
    assert solve.main([str(solver), "--snapshot", str(tmp_path / "run_iter_3.solverstate"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "Restoring previous solver status from" in err and "Iteration 0 " not in err
    resumed = read_message(str(tmp_path / "run_iter_6.caffemodel"), pb.NetParameter)
    for a, b in zip(final.layer, resumed.layer):
        for x, y in zip(a.blobs, b.blobs):
            assert list(x.data) == list(y.data)     # 3 + resume 3 == 6 in one go, bitwise
    with pytest.raises(SystemExit) as code:
        run_cli(lambda: solve.main([str(solver), "--snapshot", "x.solverstate", "--weights", "y.caffemodel"]))
    assert code.value.code == 1
    err = capsys.readouterr().err
    assert "not both" in err and "Traceback" not in err


def test_caffemodel_given_as_solverstate(tmp_path):
    """A caffemodel where a .solverstate belongs is named as such (by suffix, or by content: a
    NetParameter's first field is its name string or a layer), not 'incorrect length of history
    blobs'; Caffe HDF5 weights likewise. A real solverstate under another name still reads."""
    make(param(tmp_path, 2)).solve()
    model = tmp_path / "snap_iter_2.caffemodel"
    msg = r"is not a \.solverstate \(it looks like a caffemodel: resume takes PREFIX_iter_N\.solverstate"
    with pytest.raises(CaffeError, match=rf"snap_iter_2\.caffemodel {msg}"):
        make(param(tmp_path, 4)).restore(str(model))
    renamed = tmp_path / "model.solverstate"
    renamed.write_bytes(model.read_bytes())              # current format: name, then layers
    with pytest.raises(CaffeError, match=rf"model\.solverstate {msg}"):
        solverstate.read(str(renamed))
    for net in (pb.NetParameter(layer=[pb.LayerParameter(name="ip1", type="InnerProduct")]),
                pb.NetParameter(layers=[pb.V1LayerParameter(name="ip1", type=pb.V1LayerParameter.INNER_PRODUCT)])):
        renamed.write_bytes(net.SerializeToString())     # no name: a layer (field 100 or V1's 2) first
        with pytest.raises(CaffeError, match=msg):
            solverstate.read(str(renamed))
    h5 = tmp_path / "w.caffemodel.h5"
    with h5py.File(h5, "w") as h:
        h.create_group("data").create_group("ip1").create_dataset("0", data=np.zeros((16, K), np.float32))
    with pytest.raises(CaffeError, match=r"w\.caffemodel\.h5 is not a \.solverstate \(it looks like Caffe HDF5 weights"):
        solverstate.read(str(h5))
    # a state with iter 0 starts with learned_net (field 2, like V1 layers): still a state
    state = tmp_path / "zero.bin"
    solverstate.write(str(state), pb.SolverState(iter=0, learned_net="x_iter_0.caffemodel"), [np.ones(3, np.float32)])
    got, history = solverstate.read(str(state))
    assert got.learned_net == "x_iter_0.caffemodel" and history[0].tolist() == [1, 1, 1]
