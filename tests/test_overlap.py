"""The gradient all-reduce overlapped with backward (vgg_caffe.train.overlap), the diagnosis of a
lost peer (vgg_caffe.train.collective.CollectiveCounts, the launcher's report) and the scaling model.

The reference for the reducer is the plain average written out here: grads summed over the
sub-batches of an iteration, summed over ranks, divided by the world size; and the one-shot
make_allreduce average of the same gradients over a real gloo group.
"""
import argparse
import os
import signal
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist

from bench import scaling_model
from vgg_caffe.train import overlap, parallel
from vgg_caffe.train.workers import _failure_report


def _model(seed=0):
    g = torch.Generator().manual_seed(seed)
    layers = [torch.nn.Linear(6, 32), torch.nn.Linear(32, 32), torch.nn.Linear(32, 4), torch.nn.Linear(4, 4)]
    with torch.no_grad():
        for l in layers:
            l.weight.copy_(torch.randn(l.weight.shape, generator=g))
            l.bias.copy_(torch.randn(l.bias.shape, generator=g))
    return layers


def _loss(layers, x, use_last=True):
    h = x
    for l in layers[:3]:
        h = torch.tanh(l(h))
    return h.sum() if not use_last else layers[3](h).pow(2).sum()


class FakeWork:
    """An all-reduce of two identical ranks: the sum is twice the buffer, done on wait()."""

    def __init__(self, flat, log):
        self.flat, self.log = flat, log

    def wait(self):
        self.flat.mul_(2)
        self.log.append("wait")


def test_buckets_launch_during_backward_in_order_on_the_last_sub_batch_only():
    layers = _model()
    params = [p for l in layers for p in l.parameters()]
    events, state = [], {"backward": False}

    def launch(flat):
        events.append(("launch", flat.numel(), state["backward"]))
        return FakeWork(flat, events)

    red = overlap.GradientReducer(params, 2, launch, bucket_bytes=4 * 1100, first_bucket_bytes=4 * 20)
    # Reverse net order: the last layer's bias first; the first bucket small, the rest ~1100 floats.
    assert red.bucket_sizes[0] <= 4 * 20 + 4 * 16 and len(red.bucket_sizes) >= 3
    assert sum(red.bucket_sizes) == 4 * sum(p.numel() for p in params)
    xs = [torch.randn(5, 6, generator=torch.Generator().manual_seed(k)) for k in range(2)]
    red.prepare()
    for k, x in enumerate(xs):           # iter_size 2
        red.arm(k == 1)
        state["backward"] = True
        _loss(layers, x).backward()
        state["backward"] = False
        if k == 0:
            assert events == []            # nothing is reduced before the last sub-batch
    launched = [e for e in events if e[0] == "launch"]
    assert len(launched) == len(red.buckets)
    assert [e[1] * 4 for e in launched] == red.bucket_sizes         # in bucket order
    assert all(e[2] for e in launched)                               # every one from inside backward
    grads = red.finish()
    # The reference: the two sub-batches' gradients summed, x2 (two identical ranks), /2.
    ref_layers = _model()
    for x in xs:
        _loss(ref_layers, x).backward()
    ref = [p.grad for l in ref_layers for p in l.parameters()]
    for g, r, p in zip(grads, ref, params):
        assert torch.equal(g, r) and g is p.grad
        flat = red.flats[red.slot[p][0]]
        assert flat.data_ptr() <= g.data_ptr() < flat.data_ptr() + flat.numel() * 4   # a view of the bucket
    red.close()


def test_blobs_the_loss_does_not_reach_are_reduced_as_zeros_after_backward():
    layers = _model()
    params = [p for l in layers for p in l.parameters()]
    launched = []
    red = overlap.GradientReducer(params, 2, lambda flat: launched.append(flat) or FakeWork(flat, []),
                                  bucket_bytes=4 * 1100, first_bucket_bytes=4 * 20)
    red.prepare()
    red.arm(True)
    _loss(layers, torch.randn(5, 6), use_last=False).backward()     # layers[3] unused
    before = len(launched)
    grads = red.finish()
    assert before < len(red.buckets) == len(launched)   # the buckets holding layers[3] waited for finish()
    assert torch.equal(grads[-1], torch.zeros(4)) and torch.equal(grads[-2], torch.zeros(4, 4))
    # A caller that cleared .grad between iterations: prepare() points them at the buckets again.
    for p in params:
        p.grad = None
    red.prepare()
    assert all(p.grad is not None and not p.grad.any() for p in params)
    red.close()


def _reduce_worker(args, rank, world_size, allreduce, device, seed, batch_scale):
    """Each rank: iter_size 2 sub-batches of its own data; grads averaged by the overlapped reducer
    and, for the same gradients, by the one-shot all-reduce."""
    layers = _model()
    params = [p for l in layers for p in l.parameters()]
    red = allreduce.overlapped(params, bucket_bytes=4 * 1100, first_bucket_bytes=4 * 20)
    xs = [torch.randn(5, 6, generator=torch.Generator().manual_seed(10 * rank + k)) for k in range(2)]
    red.prepare()
    for k, x in enumerate(xs):
        red.arm(k == 1)
        _loss(layers, x).backward()
    hooked = [g.clone() for g in red.finish()]
    red.close()
    plain_layers = _model()
    for x in xs:
        _loss(plain_layers, x).backward()
    plain = [p.grad for l in plain_layers for p in l.parameters()]
    local = [g.clone() for g in plain]
    allreduce(plain)
    np.savez(os.path.join(args.out, f"rank{rank}.npz"), **{f"h{i}": g.numpy() for i, g in enumerate(hooked)},
             **{f"p{i}": g.numpy() for i, g in enumerate(plain)}, **{f"l{i}": g.numpy() for i, g in enumerate(local)})


def test_two_gloo_workers_overlapped_average_equals_the_one_shot_average(tmp_path):
    workers = [parallel.Worker(r, 2, r, "cpu", "gloo", timeout=60, threads=1) for r in range(2)]
    assert parallel.launch(_reduce_worker, argparse.Namespace(out=str(tmp_path)), workers) == 0
    got = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    n = len([k for k in got[0].files if k.startswith("h")])
    for i in range(n):
        expect = (got[0][f"l{i}"] + got[1][f"l{i}"]) / 2     # the formula: sum over ranks / W
        for r in range(2):
            assert np.array_equal(got[r][f"h{i}"], got[r][f"p{i}"])    # bit for bit the one-shot average
            np.testing.assert_allclose(got[r][f"h{i}"], expect, rtol=1e-6, atol=1e-7)


# -- a lost peer --------------------------------------------------------------------------------

class _Proc:
    def __init__(self, exitcode):
        self.exitcode = exitcode


def test_report_names_the_rank_that_never_arrived_not_the_one_nccl_aborted(tmp_path):
    workers = [parallel.Worker(r, 3, r, f"cuda:{r}", "nccl", timeout=30) for r in range(3)]
    procs = [_Proc(-signal.SIGABRT), _Proc(-signal.SIGABRT), _Proc(-signal.SIGTERM)]
    message = _failure_report(workers, procs, stopped={2}, rundir=str(tmp_path), counts={0: 9, 1: 9, 2: 8})
    first = message.splitlines()[0]
    assert "rank(s) 2 stopped responding (did not reach collective #9" in first
    assert "rank 0" not in first and "rank 1" not in first
    assert "rank 0 lost its peers: aborted (signal 6, NCCL's watchdog) waiting in collective #9" in message
    # Without the counts the aborted ranks would look like the culprits.
    blind = _failure_report(workers, procs, stopped={2}, rundir=str(tmp_path))
    assert "rank 0 died (killed by signal 6)" in blind


def _looping_worker(args, rank, world_size, allreduce, device, seed, batch_scale):
    for _ in range(50):
        allreduce([torch.ones(4)])
        time.sleep(0.01)


def _launch_failing(monkeypatch, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    workers = [parallel.Worker(r, 2, r, "cpu", "gloo", timeout=3, threads=1) for r in range(2)]
    with pytest.raises(Exception) as err:
        parallel.launch(_looping_worker, argparse.Namespace(), workers, grace=1.0)
    return str(err.value)


def test_a_hung_peer_is_named_by_the_rank_that_waited(monkeypatch):
    message = _launch_failing(monkeypatch, {parallel.HANG_ENV: "2", parallel.RANK_ENV: "1"})
    # Both ranks entered all-reduces 0 and 1; rank 0 entered number 2 (collective #3), rank 1 hung.
    assert "rank(s) 1 stopped responding (did not reach collective #3" in message
    assert "rank 0 lost its peers: rank 0: all-reduce number 2 failed; rank(s) 1 did not reach collective #3" in message


def test_a_healthy_rank_aborted_as_by_nccl_is_not_blamed(monkeypatch):
    message = _launch_failing(monkeypatch, {parallel.HANG_ENV: "2", parallel.RANK_ENV: "1", parallel.ABORT_ENV: "1"})
    assert "rank(s) 1 stopped responding (did not reach collective #3" in message.splitlines()[0]
    assert "rank 0 lost its peers: aborted (signal 6" in message


def test_progress_counts_and_laggards():
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    ranks = [parallel.CollectiveCounts(store, r, 3) for r in range(3)]
    for p in ranks:
        p.enter()
    ranks[0].enter()
    ranks[2].enter()
    assert ranks[0].behind() == ([1], 2)
    assert "rank(s) 1 did not reach collective #2" in ranks[0].behind_text()
    ranks[1].enter()
    assert ranks[1].behind() == ([], None) and ranks[1].behind_text() == ""


# -- the scaling model --------------------------------------------------------------------------

def test_ring_allreduce_and_exposed_time_follow_the_formula():
    link = {"bandwidth": 100e9, "latency": 1e-5}
    t = scaling_model.ring_allreduce_s(1e9, 4, 100e9, 1e-5, 0.5)
    assert t == pytest.approx(2 * 3 / 4 * 1e9 / 50e9 + 6e-5)
    # Everything ready only at the end of backward: all of it is exposed.
    late = scaling_model.simulate(1.0, 0.3, 1.0, [(1e9, 1.0)], 4, link, 0.5, 0.0)
    assert late["exposed_comm_s"] == pytest.approx(t) and late["step_s"] == pytest.approx(1.0 + t)
    # Ready at the start of backward and shorter than it: hidden, only the contention remains.
    early = scaling_model.simulate(1.0, 0.3, 1.0, [(1e9, 0.3)], 4, link, 0.5, 0.1)
    assert early["exposed_comm_s"] == 0 and early["step_s"] == pytest.approx(1.0 + 0.1 * t)
    # Two buckets share the wire: the second waits for the first.
    two = scaling_model.simulate(1.0, 0.3, 1.0, [(1e9, 0.95), (1e9, 0.96)], 4, link, 0.5, 0.0)
    assert two["exposed_comm_s"] == pytest.approx(0.95 + 2 * t - 1.0)


def test_predictions_from_a_step_time_alone_and_from_a_profile():
    layers = [("conv", 4 * 1000, 9e6), ("fc6", 4 * 10 ** 8, 1e8), ("fc8", 4 * 10 ** 6, 1e6)]
    buckets = scaling_model.buckets_from_layers(layers, bucket_bytes=25 << 20, first_bytes=1 << 20)
    assert [b for b, _ in buckets] == [4 * 10 ** 6, 4 * 10 ** 8, 4000]       # reverse order
    assert buckets[-1][1] == pytest.approx(1.0)
    out = scaling_model.predict(0.4, layers=layers, efficiency=0.8, contention=0.0)
    nv = out["links"]["nvlink4"]["predicted"]
    for w in (4, 8):
        r = nv[w]
        assert r["scaling_efficiency"] == pytest.approx(0.4 / (w * r["step_s"]))
        assert r["compute_s"] == pytest.approx(0.4 / w) and "assumed" in r["inputs"]
    pcie = out["links"]["pcie5"]["predicted"]
    assert pcie[8]["scaling_efficiency"] < nv[8]["scaling_efficiency"] <= 1.0
    prof = {"per_gpu": {"64": {"step_s": 0.11, "backward_start_s": 0.04, "backward_end_s": 0.1,
                               "buckets": [[4 * 10 ** 6, 0.045], [4 * 10 ** 8, 0.05]]}}}
    measured = scaling_model.predict(0.4, worlds=(4,), profile=prof, layers=layers, contention=0.0)
    r = measured["links"]["nvlink4"]["predicted"][4]
    assert r["inputs"] == "measured" and r["compute_s"] == 0.11
    assert r["gradient_bytes"] == 4 * 10 ** 6 + 4 * 10 ** 8


def test_gpu_profile_dry_run_measures_bucket_readiness(tmp_path):
    from bench import gpu_scaling

    assert gpu_scaling.main(["--dry-run", "--profile", "--iters", "2", "--out", str(tmp_path)]) == 0
    import json

    prof = json.loads((tmp_path / "gpu_profile_dryrun.json").read_text())
    assert sorted(prof["per_gpu"], key=int) == ["1", "2", "4", "8"]
    for m in prof["per_gpu"].values():
        ready = [t for _, t in m["buckets"]]
        assert ready == sorted(ready) and m["backward_start_s"] <= ready[0] and ready[-1] <= m["backward_end_s"]
    model = json.loads((tmp_path / "gpu_scaling_model_dryrun.json").read_text())
    assert model["kind"].startswith("PREDICTED")
    assert model["links"]["nvlink4"]["predicted"]["4"]["inputs"] == "measured"


@pytest.mark.filterwarnings("ignore:grad and param do not obey the gradient layout contract")
def test_gradients_follow_a_channels_last_weight_even_when_it_changes_layout():
    conv = torch.nn.Conv2d(3, 4, 3)
    params = list(conv.parameters())
    red = overlap.GradientReducer(params, 2, lambda flat: FakeWork(flat, []))
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    ref = torch.nn.Conv2d(3, 4, 3)
    ref.load_state_dict(conv.state_dict())
    ref(x).square().sum().backward()
    for step in range(2):
        red.prepare()
        red.arm(True)
        if step == 0:   # the layout changes after prepare(), as Net's first channels-last pass does
            conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
        conv(x.contiguous(memory_format=torch.channels_last)).square().sum().backward()
        grads = red.finish()
        assert grads[0].stride() == conv.weight.stride()
        torch.testing.assert_close(grads[0], ref.weight.grad, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(grads[1], ref.bias.grad, rtol=1e-6, atol=1e-6)
        f, offset, _ = red.slot[conv.weight]
        assert grads[0].data_ptr() == red.flats[f][offset:].data_ptr()
    red.close()
