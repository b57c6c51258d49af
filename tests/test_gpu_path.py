"""The GPU path, checked on a CPU where it can be and on a GPU where one is present.

- Device handling: torchrun's LOCAL_RANK beyond the visible GPUs (torch.cuda patched), --gpus
  with --device warns, Net.fill draws on the host and copies, a net without learnable blobs runs
  where it was moved, train and test nets stay weight-shared after .to().
- cuDNN: autotuning for training, --deterministic turns it off and cuDNN deterministic on.
- Preemption: SIGTERM under torchrun snapshots and stops; --log-file passes torchrun's parser
  where --log does not.
- Feeding: the loaders' worker/pinning/cycle settings for a GPU, labels checked on the host
  before the copy, one host synchronisation per Solver.step iteration (counted by patching the
  Tensor methods that synchronise), the evaluate() pipeline preparing the next chunk meanwhile.
- Dropout draws on the input's device.
Tests marked `cuda` run only where torch sees a GPU (bench/gpu_check.sh runs them there).
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback

import numpy as np
import pytest
import torch

from interrupt import signal_after
from vgg_caffe import rng
from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net
from vgg_caffe.proto import format_text, parse_text, pb
from vgg_caffe.train import devices, parallel
from vgg_caffe.train.log import TrainingLog
from vgg_caffe.train.solver import Solver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
B, K, C = 8, 6, 3
NET = f"""
layer {{ name: "data" type: "Input" top: "data" top: "label"
        input_param {{ shape {{ dim: {B} dim: {K} }} shape {{ dim: {B} }} }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        inner_product_param {{ num_output: 12 weight_filler {{ type: "gaussian" std: 0.5 }}
                               bias_filler {{ type: "uniform" min: -1 max: 1 }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "drop1" type: "Dropout" bottom: "ip1" top: "ip1" dropout_param {{ dropout_ratio: 0.3 }} }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        inner_product_param {{ num_output: {C} weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
layer {{ name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
        include {{ phase: TEST }} }}
"""


def solver_param(**over):
    p = parse_text(f"""net_param {{ {NET} }} base_lr: 0.1 lr_policy: "fixed" momentum: 0.9
        max_iter: 100 display: 0 snapshot_after_train: false random_seed: 5 solver_mode: CPU""",
                   pb.SolverParameter())
    for k, v in over.items():
        if isinstance(v, list):
            getattr(p, k).extend(v)
        else:
            setattr(p, k, v)
    return p


def feed(index, start, stop):
    r = np.random.RandomState(1000 + index)
    x = r.randn(B, K).astype(np.float32)
    y = np.argmax(x[:, :C], 1).astype(np.float32)
    return {"data": torch.from_numpy(x[start:stop]), "label": torch.from_numpy(y[start:stop])}


# -- device handling ----------------------------------------------------------------------------

def _fake_gpus(monkeypatch, count):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_local_rank_beyond_the_visible_gpus(monkeypatch):
    _fake_gpus(monkeypatch, 4)
    assert parallel.local_cuda_device(2) == "cuda:2"
    _fake_gpus(monkeypatch, 1)              # a launcher that shows each task its own GPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert parallel.local_cuda_device(3) == "cuda:0"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")   # one GPU that every local worker sees
    with pytest.raises(CaffeError, match=r"LOCAL_RANK=1 but this process sees 1 GPU\(s\) \(CUDA_VISIBLE_DEVICES unset\)"):
        parallel.local_cuda_device(1)
    _fake_gpus(monkeypatch, 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    with pytest.raises(CaffeError, match=r"rank 7: LOCAL_RANK=3 but this process sees 2 GPU\(s\) "
                                         r"\(CUDA_VISIBLE_DEVICES=4,5\): start at most 2 worker"):
        parallel.local_cuda_device(3, rank=7)
    # The torchrun path picks that device for its worker.
    seen = []
    monkeypatch.setattr(parallel, "_work", lambda worker, *a: seen.append(worker))
    _fake_gpus(monkeypatch, 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    env = {"RANK": 3, "WORLD_SIZE": 4, "LOCAL_RANK": 3, "MASTER_ADDR": "x", "MASTER_PORT": "1"}
    parallel._run_torchrun(argparse.Namespace(device=None), None, env, 60, False)
    assert (seen[0].device, seen[0].backend) == ("cuda:0", "nccl")


def test_gpus_together_with_device_warns(monkeypatch):
    _fake_gpus(monkeypatch, 2)
    launched = []
    monkeypatch.setattr(parallel, "launch", lambda fn, args, workers: launched.append(workers) or 0)
    for v in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(v, raising=False)
    args = argparse.Namespace(gpus="0,1", cpu_workers=None, device="cuda:1", worker_timeout=60, caffe_multi_gpu=False)
    with pytest.warns(UserWarning, match=r"--device cuda:1 is ignored with --gpus 0,1"):
        assert parallel.run(args, None) == 0
    assert [w.device for w in launched[0]] == ["cuda:0", "cuda:1"]


def test_fill_draws_on_the_host_and_copies(monkeypatch):
    """Blobs on a device fill from host copies drawn with the seeded CPU generator: the values
    are the CPU fill's, written into the blobs' own storage. (No GPU here: the device test is
    forced by patching the predicate; bench/gpu_check.sh runs the real one.)"""
    import vgg_caffe.net as net_module

    reference = Net(NET, phase="TRAIN", seed=3)
    net = Net(NET, phase="TRAIN", fill=False)
    storage = {id(p): p.data_ptr() for p in net.parameters()}
    written = []
    real_normal, real_uniform = torch.Tensor.normal_, torch.Tensor.uniform_
    monkeypatch.setattr(torch.Tensor, "normal_", lambda t, *a, **k: written.append(t.data_ptr()) or real_normal(t, *a, **k))
    monkeypatch.setattr(torch.Tensor, "uniform_", lambda t, *a, **k: written.append(t.data_ptr()) or real_uniform(t, *a, **k))
    monkeypatch.setattr(net_module, "_fills_on_host", lambda blob: True)
    net.fill(3)
    assert written and not set(written) & set(storage.values())      # drawn into host copies
    assert {id(p): p.data_ptr() for p in net.parameters()} == storage  # copied into the blobs
    for a, b in zip(reference.parameters(), net.parameters()):
        assert torch.equal(a, b)


def test_a_net_without_learnable_blobs_runs_where_it_was_moved():
    net = Net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }'
              'layer { name: "relu" type: "ReLU" bottom: "x" top: "y" }')
    assert not list(net.parameters())
    net.to("meta")                   # any device but the CPU: recorded by Net._apply
    assert net._device() == torch.device("meta")
    assert net(x=torch.ones(2, 3))["y"].device.type == "meta"
    net.double()                     # a dtype change keeps the device
    assert net._device().type == "meta"
    assert net.cpu()(x=-torch.ones(2, 3))["y"].device.type == "cpu"


def test_train_and_test_nets_stay_shared_after_moving():
    solver = Solver(solver_param(test_iter=[1], test_interval=10), log=TrainingLog(enabled=False),
                    train_feed=feed, test_feeds=[feed])
    train, test = solver.net.layer("ip1"), solver.test_nets[0].layer("ip1")
    assert all(a is b for a, b in zip(train.blobs, test.blobs))
    devices.assert_shared(solver.net, solver.test_nets)
    test.blobs[0] = torch.nn.Parameter(test.blobs[0].detach().clone())   # a copy, as a broken move leaves
    with pytest.raises(CaffeError, match=r"test net #0: layer 'ip1' blob 0 no longer shares"):
        devices.assert_shared(solver.net, solver.test_nets)


@cuda
def test_cuda_nets_start_from_the_cpu_weights_and_train_on_the_gpu():
    cpu = Net(NET, phase="TRAIN", seed=3)
    gpu = Net(NET, phase="TRAIN", fill=False).to("cuda").fill(3)
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        assert b.device.type == "cuda" and torch.equal(a, b.cpu())
    bare = Net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }'
               'layer { name: "relu" type: "ReLU" bottom: "x" top: "y" }').to("cuda")
    assert bare(x=torch.ones(2, 3))["y"].device.type == "cuda"
    solver = Solver(solver_param(test_iter=[1], test_interval=10), device="cuda", log=TrainingLog(enabled=False),
                    train_feed=feed, test_feeds=[feed])
    devices.assert_shared(solver.net, solver.test_nets)
    solver.step(3)
    assert solver.net.layer("ip1").blobs[0].device.type == "cuda"


# -- cuDNN --------------------------------------------------------------------------------------

def test_cudnn_autotunes_unless_deterministic(monkeypatch):
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled())
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        assert devices.configure_cudnn(torch.device("cpu"), False) is None
        line = devices.configure_cudnn(torch.device("cuda", 0), False)
        assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
        assert "autotuning on" in line
        line = devices.configure_cudnn(torch.device("cuda", 0), True)
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled() and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert "bit-repeatable" in line
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
        torch.use_deterministic_algorithms(saved[2])


@cuda
def test_deterministic_gpu_runs_repeat_bit_for_bit():
    runs = []
    for _ in range(2):
        solver = Solver(solver_param(), device="cuda", log=TrainingLog(enabled=False), train_feed=feed,
                        deterministic=True)
        solver.step(5)
        runs.append([p.detach().cpu() for p in solver.params])
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    torch.use_deterministic_algorithms(False)


@cuda
def test_fp32_mode_turns_tf32_off_on_the_gpu():
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    net = Net(NET, phase="TRAIN", seed=1, precision="fp32").to("cuda")
    net(**feed(0, 0, B))
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32


# -- preemption and the log flag ----------------------------------------------------------------

def test_sigterm_acts_as_sigint_alone_and_under_torchrun(monkeypatch):
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(v, raising=False)
    assert parallel.sigterm_snapshots(1) and not parallel.sigterm_snapshots(2)   # spawned workers
    for v, x in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(v, x)
    assert parallel.sigterm_snapshots(2)


def test_log_file_passes_torchrun_where_log_does_not(tmp_path):
    from torch.distributed.run import get_args_parser

    from vgg_caffe import solve

    torchrun = get_args_parser()
    args = torchrun.parse_args(["--standalone", "-m", "vgg_caffe.solve", "s.prototxt", "--log-file", "x.log"])
    assert args.training_script_args == ["s.prototxt", "--log-file", "x.log"]
    with pytest.raises(SystemExit):   # "ambiguous option: --log could match --log-dir, ..."
        torchrun.parse_args(["--standalone", "-m", "vgg_caffe.solve", "s.prototxt", "--log", "x.log"])
    solver = tmp_path / "s.prototxt"
    solver.write_text("base_lr: 1")
    assert solve.parse_args([str(solver), "--log-file", "a.log"]).log == "a.log"
    assert solve.parse_args([str(solver), "--log", "b.log"]).log == "b.log"   # the alias stays


def _lmdb(path, n=16, side=8):
    from vgg_caffe.data import datum as datum_io
    from vgg_caffe.data.db import Writer

    r = np.random.RandomState(0)
    writer = Writer(str(path), commit_every=100)
    for i in range(n):
        img = r.randint(0, 256, (side, side, 3)).astype(np.uint8)
        writer.put(f"{i:08d}", datum_io.from_image(img, i % C).SerializeToString())
    writer.close()
    return str(path)


def _data_net(db, batch=4, test_batch=4):
    return f"""
      layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
              data_param {{ source: "{db}" batch_size: {batch} backend: LMDB }} transform_param {{ scale: 0.01 }} }}
      layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
              data_param {{ source: "{db}" batch_size: {test_batch} backend: LMDB }} transform_param {{ scale: 0.01 }} }}
      layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
              inner_product_param {{ num_output: 16 weight_filler {{ type: "xavier" }} }} }}
      layer {{ name: "drop1" type: "Dropout" bottom: "ip1" top: "ip1" }}
      layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
              inner_product_param {{ num_output: {C} weight_filler {{ type: "xavier" }} }} }}
      layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
    """


def test_sigterm_to_torchrun_snapshots_and_stops_every_worker(tmp_path):
    db = _lmdb(tmp_path / "db")
    (tmp_path / "net.prototxt").write_text(_data_net(db))
    s = pb.SolverParameter(net=str(tmp_path / "net.prototxt"), base_lr=0.01, lr_policy="fixed", max_iter=10 ** 6,
                           display=1, snapshot_prefix=str(tmp_path / "snap"), random_seed=3,
                           solver_mode=pb.SolverParameter.CPU)
    solver = tmp_path / "solver.prototxt"
    solver.write_text(format_text(s))
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(v, None)
    # A cluster's preemption: torchrun passes SIGTERM on to the workers.
    _, lines = signal_after([torchrun, "--standalone", "--nnodes", "1", "--nproc-per-node", "2", "-m",
                             "vgg_caffe.solve", str(solver), "--no-progress", "--device", "cpu",
                             "--log-file", str(tmp_path / "log.txt")], env, ROOT, signal.SIGTERM)
    log = (tmp_path / "log.txt").read_text()
    assert log.count("Optimization stopped early.") == 1, "".join(lines[-30:])
    snaps = [f for f in os.listdir(tmp_path) if f.endswith(".solverstate")]
    assert len(snaps) == 1 and int(snaps[0].split("_iter_")[1].split(".")[0]) >= 5, snaps


# -- feeding ------------------------------------------------------------------------------------

def test_gpu_settings_of_the_data_layers(tmp_path, monkeypatch):
    db = _lmdb(tmp_path / "db")
    train = Net(_data_net(db), phase="TRAIN").layer("data")
    test = Net(_data_net(db), phase="TEST").layer("data")
    assert train.loader.auto and train.loader.workers == 0 and train.loader.prefetch == 4   # Caffe's prefetch
    devices.feed_data_layers([train, test], torch.device("cpu"), 1, {test: 3})
    assert train.loader.workers == 0 and not train.loader.pin_memory     # the CPU: decode in-process
    _fake_gpus(monkeypatch, 1)
    devices.feed_data_layers([train, test], torch.device("cuda", 0), 2, {test: 3})
    expect = max(1, len(os.sched_getaffinity(0)) // 2 - 1)
    assert (train.loader.workers, test.loader.workers) == (expect, expect)
    assert train.loader.pin_memory and test.loader.pin_memory
    assert test.loader.cycle == 3 and train.loader.cycle is None
    assert devices.default_workers(4, cores=16) == 3 and devices.default_workers(8, cores=4) == 1


@cuda
def test_vgg_batches_finished_on_the_gpu_are_the_host_batches(tmp_path):
    """VGGData.finish_on(cuda): uint8 batches in pinned memory, the float batch made on the GPU
    (pixel + (shift - mean) in one op), bitwise the host collate's, channels-last kept."""
    import json

    import cv2

    from vgg_caffe.data.convert import Options, convert_imageset
    from vgg_caffe.demo import photo

    names = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    os.makedirs(tmp_path / "imgs")
    for n in names:   # real photos, JPEG-encoded
        cv2.imwrite(str(tmp_path / "imgs" / n), cv2.resize(photo(n[:-4]), (160, 120)))
    (tmp_path / "list.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    convert_imageset(str(tmp_path / "imgs"), str(tmp_path / "list.txt"), str(tmp_path / "db"),
                     Options(encoded=True), progress=False, log=lambda *a: None)
    cfg = {"source": str(tmp_path / "db"), "batch_size": 8, "scale": [40, 56], "crop_size": 32,
           "workers": 2}
    text = ('layer { name: "data" type: "Python" top: "data" top: "label" python_param { '
            f'module: "vgg_caffe.data.vgg_layer" layer: "VGGData" param_str: \'{json.dumps(cfg)}\' }} }}')
    host, dev = Net(text, "TRAIN").layer("data"), Net(text, "TRAIN").layer("data")
    devices.feed_data_layers([dev], torch.device("cuda", 0), 1)
    for it in range(3):
        a, _ = host.batch(it)
        b, labels = dev.batch(it)
        assert b.is_cuda and not labels.is_cuda and b.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(a, b.cpu())
    host.close(), dev.close()


def test_the_test_loader_prefetches_around_its_cycle_and_pins(tmp_path, monkeypatch):
    db = _lmdb(tmp_path / "db")
    inline = Net(_data_net(db), phase="TEST").layer("data")
    layer = Net(_data_net(db), phase="TEST").layer("data")
    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t: pinned.append(t.shape) or t.clone())
    layer.loader.configure(workers=2, pin_memory=True, cycle=3)
    try:
        for k in (0, 1, 2):
            got, want = layer.batch(k), inline.batch(k)
            assert all(torch.equal(a, b) for a, b in zip(got, want))
        # After the last batch of a pass, the work ahead is the next pass's batches 0 and 1.
        assert sorted(key[0] for key in layer.loader.pending) == [0, 1]
        assert layer.batch(0)[0].shape == (4, 3, 8, 8)
        assert len(pinned) >= 2 * 4       # data and label of every batch, pinned by the collating thread
    finally:
        layer.close()


def test_solver_hands_its_test_nets_their_test_iter(monkeypatch):
    seen = {}
    monkeypatch.setattr(devices, "feed_data_layers",
                        lambda layers, device, world, test_iters: seen.update(layers=list(layers), iters=test_iters))
    solver = Solver(solver_param(test_iter=[7], test_interval=10), log=TrainingLog(enabled=False),
                    train_feed=feed, test_feeds=[feed])
    assert seen["iters"] == {solver.test_nets[0].data_layers[0]: 7}


def test_labels_are_checked_on_the_host_before_the_copy():
    solver = Solver(solver_param(), log=TrainingLog(enabled=False), train_feed=feed)
    solver.device = torch.device("meta")      # a device the host cannot read: only the check sees values
    window = solver._window(0, B)
    moved = solver._inputs(solver.net, feed, 0, window)
    assert all(v.device.type == "meta" for v in moved.values())
    bad = lambda i, a, b: {**feed(i, a, b), "label": torch.full((b - a,), 5.0)}
    with pytest.raises(CaffeError, match=r"layer 'loss' \(SoftmaxWithLoss\): label 5 is outside \[0, 3\)"):
        solver._inputs(solver.net, bad, 0, window)


SYNCING = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


def test_one_host_synchronisation_per_iteration(tmp_path, monkeypatch):
    """Calls that make the host wait for the device, counted per Solver.step iteration. Label
    checks are left out: on a GPU run they read the host tensor before the copy."""
    db = _lmdb(tmp_path / "db")
    (tmp_path / "net.prototxt").write_text(_data_net(db))
    for display in (0, 1):
        solver = _with_net(str(tmp_path / "net.prototxt"), display)
        solver.step(1)    # warm up
        calls = []

        def counting(name, real):
            def method(t, *a, **k):
                stack = "".join(traceback.format_stack(limit=12))
                if "check_label_range" not in stack:
                    calls.append(name)
                return real(t, *a, **k)
            return method

        with monkeypatch.context() as m:
            for name in SYNCING:
                m.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
            solver.step(4)
        solver.close()
        assert calls == ["tolist"] * 4, (display, calls)


def _with_net(path, display):
    p = solver_param(display=display)
    p.ClearField("net_param")
    p.net = path
    return Solver(p, log=TrainingLog(enabled=False))


def test_evaluate_prepares_the_next_chunk_while_the_nets_run():
    from vgg_caffe.eval import protocols

    events, lock = [], threading.Lock()

    class Slow:
        name, mean = "slow", (0.0, 0.0, 0.0)

        def inputs(self, images, q):
            with lock:
                events.append(("prepare", images[0][0, 0, 0], threading.current_thread().name, time.perf_counter()))
            return [img.astype(np.float32) for img in images]

        def posteriors(self, images, protocols_, scales, grid, flip, prepared):
            assert prepared and all(k == (q, self.mean) for k, q in zip(prepared, scales))
            with lock:
                events.append(("run", images[0][0, 0, 0], threading.current_thread().name, time.perf_counter()))
            time.sleep(0.2)
            p = np.full((len(images), 4), 0.1)
            p[:, 0] = 0.7
            return {"single": p}

    images = ((str(i), np.full((4, 4, 3), i, np.uint8), 0) for i in range(6))
    rows, labels, _ = protocols.evaluate([(Slow(), None)], images, 6, ["single"], [[4]], chunk=2, progress=False)
    assert rows[0]["top1_error"] == 0 and len(labels) == 6
    prepares = [e for e in events if e[0] == "prepare"]
    runs = [e for e in events if e[0] == "run"]
    assert all(e[2] != threading.main_thread().name for e in prepares)   # prepared on the thread
    assert [e[1] for e in runs] == [0, 2, 4]
    # Chunk 2 (images 2, 3) was prepared while chunk 1 ran: before that run had ended.
    assert prepares[1][3] < runs[0][3] + 0.2


# -- dropout ------------------------------------------------------------------------------------

def test_dropout_masks_are_drawn_on_the_input_device(monkeypatch):
    from vgg_caffe.layers import dropout

    asked = []
    real = rng.torch_generator
    monkeypatch.setattr(dropout.rng, "torch_generator", lambda *parts, device="cpu": asked.append(device) or real(*parts, device=device))
    net = Net(NET, phase="TRAIN", seed=1)
    net.set_sample_window(rng.SampleWindow(5, 0, 2, 6, B))
    net(**feed(0, 2, 6))
    assert asked == [torch.device("cpu")]


@cuda
def test_cuda_dropout_windows_agree_with_the_whole_batch():
    from vgg_caffe.layers import layer_class

    lp = parse_text('name: "drop6" type: "Dropout" dropout_param { dropout_ratio: 0.5 }', pb.LayerParameter())
    layer = layer_class(lp.type, lp.name)(lp, [(8, 50)], "TRAIN")
    layer.train()
    x = torch.rand(8, 50, device="cuda") + 1
    layer.set_sample_window(rng.SampleWindow(seed=7, iteration=3, start=0, stop=8, total=8))
    whole = layer(x)
    parts = []
    for start, stop in ((0, 3), (3, 8)):
        layer.set_sample_window(rng.SampleWindow(seed=7, iteration=3, start=start, stop=stop, total=8))
        parts.append(layer(x[start:stop]))
    assert torch.equal(torch.cat(parts), whole) and whole.device.type == "cuda"
    kept = (whole != 0).float().mean().item()
    assert 0.35 < kept < 0.65


@cuda
def test_one_synchronising_call_per_iteration_on_the_gpu(tmp_path):
    """torch's CUDA sync debug mode counts the synchronising calls of Solver.step on a GPU."""
    import warnings

    solver = Solver(solver_param(), device="cuda", log=TrainingLog(enabled=False), train_feed=feed)
    solver.step(1)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            solver.step(4)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
    report = os.environ.get("VGG_CAFFE_GPU_REPORT")
    if report:   # bench/gpu_check.py puts the exact figure in its report
        import json
        with open(report, "w") as f:
            json.dump({"synchronising_calls_in_4_iterations": len(syncs), "messages": syncs[:20]}, f)
    # The summary's .tolist() per iteration, and SoftmaxWithLoss's label check on the GPU tensor
    # until that layer leaves GPU labels to the solver's host check.
    assert len(syncs) <= 2 * 4, syncs


def test_a_hung_worker_under_torchrun_is_named_by_the_one_that_waited(tmp_path):
    """Under torchrun there is no launcher of ours: the rank whose collective times out names the
    rank that never reached it, read from the group's own store."""
    db = _lmdb(tmp_path / "db")
    (tmp_path / "net.prototxt").write_text(_data_net(db))
    s = pb.SolverParameter(net=str(tmp_path / "net.prototxt"), base_lr=0.01, lr_policy="fixed", max_iter=50,
                           display=0, snapshot_prefix=str(tmp_path / "snap"), random_seed=3,
                           solver_mode=pb.SolverParameter.CPU, snapshot_after_train=False)
    solver = tmp_path / "solver.prototxt"
    solver.write_text(format_text(s))
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    env.update({parallel.HANG_ENV: "3", parallel.RANK_ENV: "1"})
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(v, None)
    proc = subprocess.run([torchrun, "--standalone", "--nnodes", "1", "--nproc-per-node", "2", "--shutdown-timeout", "2",
                           "-m", "vgg_caffe.solve",
                           str(solver), "--no-progress", "--device", "cpu", "--worker-timeout", "4"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode != 0
    # Iterations 0..2 each enter two collectives (the reducer's finish, then the statistics); rank 1
    # hangs before its fourth all-reduce, having entered 7; rank 0 waits in collective #8.
    assert re.search(r"rank 0: .*failed; rank\(s\) 1 did not reach collective #8", proc.stderr), proc.stderr[-3000:]


def test_host_label_check_names_the_layer_and_marks_it(tmp_path):
    """The solver checks labels on the host before a device copy: a label outside [0, classes)
    is refused naming the loss layer; good labels mark the layer so it skips its device check."""
    from vgg_caffe.errors import CaffeError
    from vgg_caffe.net import Net
    from vgg_caffe.train import devices
    net = Net('layer { name: "in" type: "Input" top: "x" top: "y" input_param { shape { dim: 4 dim: 3 } '
              'shape { dim: 4 } } }\n'
              'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss" '
              'loss_param { ignore_label: -1 } }', "TRAIN")
    layer = net.layer("loss")
    with pytest.raises(CaffeError, match="layer 'loss'.*label 3 is outside \\[0, 3\\)"):
        devices.check_labels(net, {"x": torch.zeros(4, 3), "y": torch.tensor([0.0, 1, 3, 2])})
    assert not getattr(layer, "labels_checked_on_host", False)
    devices.check_labels(net, {"x": torch.zeros(4, 3), "y": torch.tensor([0.0, -1, 2, 2])})  # -1 ignored
    assert layer.labels_checked_on_host
