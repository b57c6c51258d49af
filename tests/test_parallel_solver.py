"""Data-parallel training through `python -m vgg_caffe.solve`: 1 process and 2 gloo workers
train a small VGG (netgen's configuration A, widths/16, crop 32, dropout on, scale jitter, random
crop, mirror and colour shift from the VGG data layer over an LMDB of real photos) to the same
weights; Caffe's --caffe-multi-gpu semantics equal one process on the W-times-larger batch;
snapshots of a 2-worker run resume with 1 worker and vice versa; torchrun works; only rank 0
logs and snapshots.

The reference is the single-process run of the same solver, which tests/test_solver_update.py
checks against Caffe's update formula written out by hand.
"""
import os
import re
import shutil
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data

from interrupt import signal_after
from vgg_caffe.vgg import netgen
from vgg_caffe import solve
from vgg_caffe.data import datum as datum_io
from vgg_caffe.data.db import Writer
from vgg_caffe.errors import CaffeError
from vgg_caffe.proto import format_text, pb, read_message
from vgg_caffe.train.solver import Solver
from vgg_caffe.train.log import TrainingLog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
MAX_ITER, STEPSIZE, SNAP = 20, 10, 10
TEST_BATCH = 5   # odd: two workers test on 2 and 3 images and weigh their outputs


def _photo_lmdb(path):
    """16 raw Datums: the four photos (BGR, smallest side 48) four times each, labels 0..3."""
    photos = []
    for name in PHOTOS:
        rgb = getattr(skimage.data, name)()[..., :3]
        h, w = rgb.shape[:2]
        s = 48 / min(h, w)
        photos.append(cv2.resize(np.ascontiguousarray(rgb[..., ::-1]), (round(w * s), round(h * s)),
                                 interpolation=cv2.INTER_AREA))
    writer = Writer(path, commit_every=100)
    for i in range(16):
        writer.put(f"{i:08d}_{PHOTOS[i % 4]}.png", datum_io.from_image(photos[i % 4], i % 4).SerializeToString())
    writer.close()


def _solver_file(directory, net_path, prefix, max_iter=MAX_ITER, snapshot=SNAP):
    s = pb.SolverParameter(net=net_path, base_lr=0.02, lr_policy="step", gamma=0.1, stepsize=STEPSIZE,
                           momentum=0.9, weight_decay=5e-4, max_iter=max_iter, display=5, snapshot=snapshot,
                           snapshot_prefix=prefix, random_seed=7, solver_mode=pb.SolverParameter.CPU,
                           test_iter=[2], test_interval=SNAP)
    path = os.path.join(directory, "solver.prototxt")
    with open(path, "w") as f:
        f.write(format_text(s))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("parallel_solver")
    lmdb = str(d / "photos_lmdb")
    _photo_lmdb(lmdb)
    nets = {}
    for batch in (8, 4):
        out = d / f"b{batch}"
        paths = netgen.write_all(out, "A", width_div=16, crop=32, num_classes=5, train_source=lmdb,
                                 test_source=lmdb, batch_size=batch, test_batch_size=TEST_BATCH, scale=(32, 48), filler="xavier")
        nets[batch] = paths["train_val_S256"]
    return d, nets


def _run(d, nets, name, batch=8, extra=(), cli=False):
    """Train into d/name/; returns (final weights, stderr text when run as a subprocess)."""
    out = d / name
    out.mkdir()
    solver = _solver_file(out, nets[batch], str(out / "snap"))
    argv = [solver, "--no-progress", "--log", str(out / "log.txt"), *extra]
    stderr = None
    if cli:
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run([sys.executable, "-m", "vgg_caffe.solve", *argv], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        stderr = proc.stderr
    else:
        assert solve.main(argv) == 0
    return out, stderr


def _test_outputs(log_path):
    """[(iteration, output name, value)] of the 'Test net output' lines of a log."""
    found, iteration = [], None
    with open(log_path) as f:
        for line in f:
            m = re.search(r"Iteration (\d+), Testing net", line)
            if m:
                iteration = int(m.group(1))
            m = re.search(r"Test net output #\d+: (\S+) = ([-+.\deE]+|nan|inf)", line)
            if m:
                found.append((iteration, m.group(1), float(m.group(2))))
    return found


def _weights(path):
    net = read_message(str(path), pb.NetParameter)
    return {(l.name, i): np.asarray(b.data, np.float32) for l in net.layer for i, b in enumerate(l.blobs)}


def _initial_weights(solver_path):
    """The weights the solver starts from (its fillers, seeded by random_seed)."""
    solver = Solver(solver_path, log=TrainingLog(enabled=False))
    try:
        return {(name, i): b.detach().numpy().reshape(-1).copy()
                for name, blobs in solver.net.params.items() for i, b in enumerate(blobs)}
    finally:
        solver.close()


def _assert_same_training(init, a_path, b_path, rel=1e-5):
    """Both runs moved every blob from `init` by the same amount, within `rel` of the move."""
    a, b = _weights(a_path), _weights(b_path)
    assert a.keys() == b.keys() == init.keys() and len(a) == 22   # 11 weight layers, weight + bias
    for k in a:
        moved = np.linalg.norm(a[k] - init[k])
        assert moved > 1e-3 * np.linalg.norm(a[k]), (k, "did not train")
        assert np.linalg.norm(a[k] - b[k]) <= rel * moved, (k, np.linalg.norm(a[k] - b[k]) / moved)


@pytest.fixture(scope="module")
def single(setup):
    d, nets = setup
    out, _ = _run(d, nets, "single")
    return out, _initial_weights(str(out / "solver.prototxt"))


@pytest.fixture(scope="module")
def two_workers(setup):
    d, nets = setup
    return _run(d, nets, "two", extra=["--cpu-workers", "2"], cli=True)


def test_two_gloo_workers_train_like_one_process(single, two_workers):
    out, log = two_workers
    ref, init = single
    _assert_same_training(init, ref / f"snap_iter_{MAX_ITER}.caffemodel", out / f"snap_iter_{MAX_ITER}.caffemodel")
    # Only rank 0 logs and snapshots: one line per event, not one per worker.
    assert log.count(f"Iteration {MAX_ITER}, loss = ") == 1
    assert log.count("Snapshotting to binary proto file") == MAX_ITER // SNAP
    assert log.count("Optimization Done.") == 1
    assert sorted(os.listdir(out)) == sorted(["solver.prototxt", "log.txt"] + [
        f"snap_iter_{i}.{ext}" for i in (SNAP, MAX_ITER) for ext in ("caffemodel", "solverstate")])
    # Test passes split 5 images as 2 + 3 and weigh the outputs: the same numbers as one process.
    one, two = _test_outputs(ref / "log.txt"), _test_outputs(out / "log.txt")
    assert [t[:2] for t in one] == [t[:2] for t in two]
    assert {t[0] for t in one} == {0, SNAP, MAX_ITER} and {t[1] for t in one} >= {"accuracy", "loss"}
    np.testing.assert_allclose([t[2] for t in two], [t[2] for t in one], rtol=1e-4, atol=1e-5)


def test_caffe_multi_gpu_semantics_equal_one_process_on_the_larger_batch(setup, single):
    d, nets = setup
    out, _ = _run(d, nets, "caffe_multi", batch=4, extra=["--cpu-workers", "2", "--caffe-multi-gpu"])
    ref, init = single
    _assert_same_training(init, ref / f"snap_iter_{MAX_ITER}.caffemodel", out / f"snap_iter_{MAX_ITER}.caffemodel")


def test_resume_a_one_process_snapshot_with_two_workers_under_torchrun(setup, single):
    d, nets = setup
    out = d / "resume_2"
    out.mkdir()
    for ext in ("caffemodel", "solverstate"):
        shutil.copy(single[0] / f"snap_iter_{SNAP}.{ext}", out / f"snap_iter_{SNAP}.{ext}")
    solver = _solver_file(out, nets[8], str(out / "snap"))
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(v, None)
    proc = subprocess.run([torchrun, "--standalone", "--nnodes", "1", "--nproc-per-node", "2", "-m", "vgg_caffe.solve",
                           solver, "--no-progress", "--snapshot", str(out / f"snap_iter_{SNAP}.solverstate")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("Restoring previous solver status") == 1
    ref, init = single
    _assert_same_training(init, ref / f"snap_iter_{MAX_ITER}.caffemodel", out / f"snap_iter_{MAX_ITER}.caffemodel")


def test_resume_a_two_worker_snapshot_with_one_process(setup, single, two_workers):
    d, nets = setup
    two = two_workers[0]
    out = d / "resume_1"
    out.mkdir()
    for ext in ("caffemodel", "solverstate"):
        shutil.copy(two / f"snap_iter_{SNAP}.{ext}", out / f"snap_iter_{SNAP}.{ext}")
    solver = _solver_file(out, nets[8], str(out / "snap"))
    assert solve.main([solver, "--no-progress", "--snapshot", str(out / f"snap_iter_{SNAP}.solverstate")]) == 0
    ref, init = single
    _assert_same_training(init, ref / f"snap_iter_{MAX_ITER}.caffemodel", out / f"snap_iter_{MAX_ITER}.caffemodel")


def test_ctrl_c_on_the_launcher_snapshots_and_stops_every_worker(setup, tmp_path):
    """SIGINT to the launcher reaches each worker once (they run in their own process group);
    the job agrees on the request, rank 0 snapshots, and everything exits cleanly."""
    d, nets = setup
    solver = _solver_file(tmp_path, nets[8], str(tmp_path / "snap"), max_iter=100000, snapshot=0)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code, lines = signal_after([sys.executable, "-m", "vgg_caffe.solve", solver, "--no-progress", "--cpu-workers", "2"],
                               env, ROOT, signal.SIGINT)
    assert code == 0, "".join(lines[-20:])
    log = "".join(lines)
    assert log.count("Optimization stopped early.") == 1
    snaps = [f for f in os.listdir(tmp_path) if f.endswith(".solverstate")]
    assert len(snaps) == 1 and 5 <= int(snaps[0].split("_iter_")[1].split(".")[0]) < 100000, snaps


def test_a_batch_that_does_not_split_is_a_clear_error(setup, tmp_path, monkeypatch):
    d, nets = setup
    solver = _solver_file(tmp_path, nets[8], str(tmp_path / "snap"))
    args = solve.parse_args([solver, "--no-progress", "--log", str(tmp_path / "log.txt")])
    tested = []
    monkeypatch.setattr(Solver, "test_all", lambda self: tested.append(self.iter))
    with pytest.raises(CaffeError, match=rf"^{re.escape(nets[8])}: train net: batch_size 8 does not divide over 3 workers"):
        solve.train(args, rank=0, world_size=3, allreduce=None)
    assert tested == []   # found before the test at iteration 0
    assert "Test net output" not in (tmp_path / "log.txt").read_text()
