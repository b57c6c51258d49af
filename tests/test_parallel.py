"""Data parallelism (vgg_caffe.train.parallel): batch slices, gradient averaging over real gloo
process groups, the launcher's failure handling, and torchrun-style environment detection.

Training equivalence (1 process vs 2 workers) lives in tests/test_parallel_solver.py.
"""
import argparse
import os
import re
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist

from vgg_caffe.train import parallel
from vgg_caffe.errors import CaffeError
from vgg_caffe.proto import parse_text, pb


# -- slices --------------------------------------------------------------------------------------

def test_slices_tile_the_global_batch():
    for total, world in ((256, 1), (256, 4), (24, 3), (8, 8)):
        slices = [parallel.sample_slice(total, r, world) for r in range(world)]
        covered = [i for a, b in slices for i in range(a, b)]
        assert covered == list(range(total))
        assert {b - a for a, b in slices} == {total // world}


def test_uneven_batch_is_a_clear_error():
    with pytest.raises(CaffeError, match=r"batch_size 10 does not divide over 4 workers"):
        parallel.sample_slice(10, 0, 4)
    with pytest.raises(CaffeError, match="rank 2 is outside"):
        parallel.sample_slice(8, 2, 2)


SPLIT_NET = """
  layer { name: "data" type: "Input" top: "data" top: "label" include { phase: TRAIN }
          input_param { shape { dim: %d dim: 4 } shape { dim: %d } } }
  layer { name: "data" type: "Input" top: "data" top: "label" include { phase: TEST }
          input_param { shape { dim: %d dim: 4 } shape { dim: %d } } }
  layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 } }
  layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def test_the_solver_checks_the_batch_split_before_any_work(tmp_path, monkeypatch):
    from vgg_caffe.train.solver import Solver
    from vgg_caffe.train.log import TrainingLog

    class Working(Exception):
        """Raised by the stubs below: the solver went on to read weights, test or train."""

    def work(*args, **kwargs):
        raise Working

    for name in ("test_all", "test", "step", "load_weights"):
        monkeypatch.setattr(Solver, name, work)

    def solver(train, test, world_size=2, rank=0):
        path = tmp_path / "solver.prototxt"
        path.write_text(f"net: 'net.prototxt' test_iter: 1 test_interval: 1 test_initialization: true "
                        f"weights: 'w.caffemodel' base_lr: 0.1 lr_policy: 'fixed' max_iter: 1 solver_mode: CPU")
        (tmp_path / "net.prototxt").write_text(SPLIT_NET % (train, train, test, test))
        return Solver(str(path), rank=rank, world_size=world_size, log=TrainingLog(enabled=False))

    net = re.escape(str(tmp_path / "net.prototxt"))
    for rank in (0, 1):
        with pytest.raises(CaffeError, match=rf"^{net}: train net: batch_size 3 does not divide over 2 workers"):
            solver(3, 4, rank=rank)
    with pytest.raises(CaffeError, match=rf"^{net}: test net #0: batch_size 1 is smaller than the 2 workers"):
        solver(4, 1)
    # Even train batches split; an odd test batch splits unevenly (the outputs are weighed by share),
    # and one process takes any batch: the solver goes on to read its weights.
    with pytest.raises(Working):
        solver(4, 3)
    with pytest.raises(Working):
        solver(3, 1, world_size=1)


def test_scale_batch_size_multiplies_every_data_layer_of_the_phase():
    net = parse_text("""
      layer { name: "d" type: "Data" top: "data" top: "label" include { phase: TRAIN }
              data_param { source: "x" batch_size: 16 } }
      layer { name: "dt" type: "Data" top: "data" top: "label" include { phase: TEST }
              data_param { source: "y" batch_size: 10 } }
      layer { name: "h" type: "HDF5Data" top: "a" hdf5_data_param { source: "l" batch_size: 4 } }
      layer { name: "in" type: "Input" top: "b" input_param { shape { dim: 2 dim: 3 } } }
      layer { name: "py" type: "Python" top: "c" python_param { module: "m" layer: "L"
              param_str: '{"batch_size": 32, "crop_size": 224}' } }
      layer { name: "py2" type: "Python" top: "e" python_param { module: "m" layer: "L"
              param_str: "batch_size: 8\\nscale: 256" } }
    """, pb.NetParameter())
    out = parallel.scale_batch_size(net, 4, phase=pb.TRAIN)
    layers = {l.name: l for l in out.layer}
    assert layers["d"].data_param.batch_size == 64
    assert layers["dt"].data_param.batch_size == 10          # TEST-only layer untouched
    assert layers["h"].hdf5_data_param.batch_size == 16
    assert list(layers["in"].input_param.shape[0].dim) == [8, 3]
    assert '"batch_size": 128' in layers["py"].python_param.param_str
    assert '"crop_size": 224' in layers["py"].python_param.param_str
    assert layers["py2"].python_param.param_str == "batch_size: 32\nscale: 256"
    assert net.layer[0].data_param.batch_size == 16           # the argument is not modified


def test_flags_and_environment(monkeypatch):
    parser = parallel.add_arguments(argparse.ArgumentParser())
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(v, raising=False)
    assert not parallel.requested(parser.parse_args([]))
    assert parallel.requested(parser.parse_args(["--cpu-workers", "2"]))
    with pytest.raises(CaffeError, match="exclude each other"):
        parallel.requested(parser.parse_args(["--cpu-workers", "2", "--gpus", "0"]))
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    with pytest.raises(CaffeError, match="LOCAL_RANK"):
        parallel.torchrun_environment()
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "node0")
    monkeypatch.setenv("MASTER_PORT", "29500")
    env = parallel.torchrun_environment()
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["MASTER_ADDR"]) == (3, 8, 1, "node0")
    assert parallel.requested(parser.parse_args([]))
    monkeypatch.setenv("RANK", "8")
    with pytest.raises(CaffeError, match="outside"):
        parallel.torchrun_environment()
    if not torch.cuda.is_available():
        with pytest.raises(CaffeError, match="no CUDA GPU"):
            parallel.parse_gpus("all")
        with pytest.raises(CaffeError, match="no GPU 0"):
            parallel.parse_gpus("0")


# -- averaging over a real gloo group ------------------------------------------------------------

def _grads_for(rank):
    """Deterministic per-rank 'gradients' of mixed shapes and dtypes."""
    g = torch.Generator().manual_seed(100 + rank)
    return [torch.randn(3, 2, 5, 5, generator=g), torch.randn(7, generator=g),
            torch.randn(40, 9, generator=g), torch.randn(6, generator=g).double(), torch.randn(2, generator=g)]


def _allreduce_worker(args, rank, world_size, allreduce, device, seed, batch_scale):
    out = {}
    grads = _grads_for(rank)
    allreduce(grads)                                   # default buckets (everything in one)
    out["default"] = [t.numpy() for t in grads]
    small = parallel.make_allreduce(bucket_bytes=100)  # forces many buckets
    grads = _grads_for(rank)
    small(grads)
    out["small"] = [t.numpy() for t in grads]
    if rank == 0:
        np.savez(os.path.join(args.out, "reduced.npz"),
                 **{f"{k}{i}": a for k, v in out.items() for i, a in enumerate(v)},
                 world=np.array([world_size, allreduce.world_size, batch_scale]))


def test_allreduce_averages_in_place_across_two_gloo_workers(tmp_path):
    args = argparse.Namespace(out=str(tmp_path))
    workers = [parallel.Worker(r, 2, r, "cpu", "gloo", timeout=60, threads=1) for r in range(2)]
    assert parallel.launch(_allreduce_worker, args, workers) == 0
    got = np.load(tmp_path / "reduced.npz")
    assert list(got["world"]) == [2, 2, 1]
    expect = [(a.numpy() + b.numpy()) / 2 for a, b in zip(_grads_for(0), _grads_for(1))]
    for kind in ("default", "small"):
        for i, e in enumerate(expect):
            assert got[f"{kind}{i}"].dtype == e.dtype
            np.testing.assert_allclose(got[f"{kind}{i}"], e, rtol=1e-6, atol=1e-7)


def test_allreduce_single_process_is_identity():
    grads = _grads_for(0)
    before = [t.clone() for t in grads]
    reduce = parallel.make_allreduce()
    assert reduce.world_size == 1
    reduce(grads + [None])
    for a, b in zip(grads, before):
        assert torch.equal(a, b)


def test_buckets_keep_order_and_respect_the_size():
    ts = [torch.zeros(10), torch.zeros(10), torch.zeros(30), torch.zeros(5, dtype=torch.float64), torch.zeros(1)]
    buckets = parallel._buckets(ts, bucket_bytes=100)
    assert [[id(t) for t in b] for b in buckets] == [[id(ts[0]), id(ts[1])], [id(ts[2])], [id(ts[4])], [id(ts[3])]]


# -- failures ------------------------------------------------------------------------------------

def _looping_worker(args, rank, world_size, allreduce, device, seed, batch_scale):
    grad = [torch.ones(4)]
    for _ in range(args.iterations):
        if rank == 0:   # when the last all-reduce began, to time the failure from there
            with open(args.progress, "w") as f:
                f.write(repr(time.time()))
        allreduce(grad)
        time.sleep(0.01)


def _launch_looping(monkeypatch, tmp_path, env, timeout, iterations=50, grace=1.0):
    """Run the loop with a failure injected; returns (error message, seconds from rank 0's last
    all-reduce to the launcher's return)."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    args = argparse.Namespace(iterations=iterations, progress=str(tmp_path / "progress"))
    workers = [parallel.Worker(r, 2, r, "cpu", "gloo", timeout=timeout, threads=1) for r in range(2)]
    with pytest.raises(CaffeError) as err:
        parallel.launch(_looping_worker, args, workers, grace=grace)
    end = time.time()
    with open(args.progress) as f:
        return str(err.value), end - float(f.read())


def test_a_dead_worker_fails_the_job_naming_it(monkeypatch, tmp_path):
    message, elapsed = _launch_looping(monkeypatch, tmp_path, {parallel.DIE_ENV: "3", parallel.RANK_ENV: "1"},
                                       timeout=30)
    assert "rank 1 died (exit status 3)" in message
    # The survivor is accounted for too: it lost its peer, or was stopped after the failure.
    assert re.search(r"rank 0 lost its peers|stopped after the failure: rank\(s\) 0", message), message
    assert elapsed < 15                        # well inside the process-group timeout (30 s)


def test_a_hung_worker_fails_the_job_within_the_timeout(monkeypatch, tmp_path):
    message, elapsed = _launch_looping(monkeypatch, tmp_path, {parallel.HANG_ENV: "2", parallel.RANK_ENV: "1"},
                                       timeout=3)
    assert "rank(s) 1 stopped responding" in message
    assert "rank 0 lost its peers" in message
    assert 3 <= elapsed < 3 + 1 + 8            # the timeout, the launcher's grace, slack for a busy machine


def test_a_worker_error_is_reported_with_its_message(tmp_path):
    args = argparse.Namespace(out=str(tmp_path))
    workers = [parallel.Worker(r, 2, r, "cpu", "gloo", timeout=30, threads=1) for r in range(2)]
    with pytest.raises(CaffeError, match=r"rank 1 failed \(exit status 1\): bad input on rank 1"):
        parallel.launch(_failing_worker, args, workers)


def _failing_worker(args, rank, world_size, allreduce, device, seed, batch_scale):
    if rank == 1:
        raise CaffeError("bad input on rank 1")
    allreduce([torch.ones(3)])


# -- the GPU scaling benchmark runs end to end on CPU ------------------------------------------

def test_gpu_scaling_benchmark_dry_run(tmp_path, monkeypatch):
    import json

    monkeypatch.syspath_prepend(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench import gpu_scaling

    out = tmp_path / "gpu_scaling.json"
    assert gpu_scaling.main(["--dry-run", "--iters", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["dry_run"] and result["precision"] == "fp32" and result["compile"] == "eager"
    for kind in ("real data layer", "synthetic (upper bound)"):   # Solver.step on both inputs
        rows = {r["workers"]: r for r in result["rows"] if r["input"] == kind}
        assert sorted(rows) == [1, 2]
        assert rows[2]["per_worker_batch"] * 2 == rows[2]["global_batch"] == rows[1]["global_batch"]
        for r in rows.values():
            assert r["images_per_s"] > 0
            assert abs(r["scaling_efficiency"] - r["images_per_s"] / (r["workers"] * rows[1]["images_per_s"])) < 1e-9
            flops = r["images_per_s"] * result["model_flops_per_image"] / r["workers"]
            assert abs(r["model_tflops_per_s"] - flops / 1e12) < 1e-12
    # 6 x the forward multiply-adds of one 32x32 image of VGG-A at widths/16 (conv and fc layers).
    assert result["model_flops_per_image"] == 6 * _vgg_macs("A", 32, 16, 10)


def _vgg_macs(config, crop, div, classes):
    """Forward multiply-adds of one image of configuration A, written out from Table 1: 3x3
    convolutions (pad 1) at the stage's resolution, halved by each max-pool, then fc6/fc7/fc8
    on the (crop/32)^2 map."""
    assert config == "A"
    stages = [[64], [128], [256, 256], [512, 512], [512, 512]]
    macs, c, side = 0, 3, crop
    for widths in stages:
        for w in widths:
            macs += side * side * (w // div) * c * 9
            c = w // div
        side //= 2
    k = c * side * side
    for n in (4096 // div, 4096 // div, classes):
        macs += k * n
        k = n
    return macs
