"""The solver's parallel hooks, weight initialisation and the plateau policy in a real run.

- Two Solvers (rank 0 and 1 of 2) in threads, joined by an all-reduce that averages through a
  barrier, train the same weights as one Solver on the whole batch (dropout on, lr step inside
  the window): the batch split, the sample window and the gradient averaging are right.
- --weights with --init-layers copies only the named layers; the rest keep their fillers.
- lr_policy "plateau" lowers the rate after the test output stops improving.
"""
import threading

import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.proto import parse_text, pb
from vgg_caffe.train.solver import Solver
from vgg_caffe.train.log import TrainingLog

B, K, C = 8, 6, 3
NET = f"""
name: "hooks"
layer {{ name: "data" type: "Input" top: "data" top: "label"
        input_param {{ shape {{ dim: {B} dim: {K} }} shape {{ dim: {B} }} }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        inner_product_param {{ num_output: 12 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "drop1" type: "Dropout" bottom: "ip1" top: "ip1" dropout_param {{ dropout_ratio: 0.3 }} }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        inner_product_param {{ num_output: {C} weight_filler {{ type: "gaussian" std: 0.3 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
layer {{ name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
        include {{ phase: TEST }} }}
"""


def param(**over):
    p = parse_text(f"""net_param {{ {NET} }} base_lr: 0.1 lr_policy: "step" gamma: 0.5 stepsize: 4
        momentum: 0.9 weight_decay: 0.01 max_iter: 8 display: 2 snapshot_after_train: false
        random_seed: 5 solver_mode: CPU""", pb.SolverParameter())
    for k, v in over.items():
        setattr(p, k, v)
    return p


def feed(index, start, stop):
    r = np.random.RandomState(1000 + index)
    x = r.randn(B, K).astype(np.float32)
    y = (np.argmax(x[:, :C], 1)).astype(np.float32)
    return {"data": torch.from_numpy(x[start:stop]), "label": torch.from_numpy(y[start:stop])}


class ThreadAllreduce:
    """Averages lists of tensors across `n` threads (a stand-in for torch.distributed)."""

    def __init__(self, n):
        self.n, self.slots = n, [None] * n
        self.barrier = threading.Barrier(n, timeout=60)

    def for_rank(self, rank):
        def allreduce(tensors):
            self.slots[rank] = [t.detach().clone() for t in tensors]
            self.barrier.wait()
            means = [sum(ts) / self.n for ts in zip(*self.slots)]
            self.barrier.wait()
            for t, m in zip(tensors, means):
                t.copy_(m)
        return allreduce


def test_two_ranks_equal_one_process():
    single = Solver(param(), log=TrainingLog(enabled=False), train_feed=feed)
    single.solve()

    hub = ThreadAllreduce(2)
    solvers = [Solver(param(), rank=r, world_size=2, allreduce=hub.for_rank(r),
                      log=TrainingLog(enabled=False), train_feed=feed) for r in range(2)]
    errors = []

    def run(r):
        try:
            solvers[r].solve()
        except Exception as e:  # surfaced below
            errors.append(e)
            hub.barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for s in solvers:
        assert s.iter == 8
        for a, b in zip(single.params, s.params):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)
    # each rank really computed half the batch
    assert solvers[1]._window(3, B).start == 4 and solvers[1]._window(3, B).stop == 8


def test_batch_must_divide_over_workers():
    # Found when the solver is made, before any test pass or iteration.
    with pytest.raises(CaffeError, match="^<solver>: train net: batch_size 8 does not divide over 3 workers"):
        Solver(param(), rank=0, world_size=3, allreduce=lambda t: None,
               log=TrainingLog(enabled=False), train_feed=feed)


def test_init_layers_copies_only_named_layers(tmp_path):
    trained = Solver(param(), log=TrainingLog(enabled=False), train_feed=feed)
    trained.solve()
    path = tmp_path / "trained.caffemodel"
    trained.net.save(str(path))

    fresh = Solver(param(random_seed=9), log=TrainingLog(enabled=False), train_feed=feed)
    p = param(random_seed=9)
    p.weights.append(str(path))
    partial = Solver(p, log=TrainingLog(enabled=False), train_feed=feed, init_layers=["ip2"])
    ip1, ip2 = partial.net.params["ip1"], partial.net.params["ip2"]
    assert all(torch.equal(a, b) for a, b in zip(ip2, trained.net.params["ip2"]))
    assert all(torch.equal(a, b) for a, b in zip(ip1, fresh.net.params["ip1"]))   # fillers
    assert not torch.equal(ip1[0], trained.net.params["ip1"][0])

    full = Solver(p, log=TrainingLog(enabled=False), train_feed=feed)
    assert all(torch.equal(a, b) for a, b in zip(full.params, trained.params))
    with pytest.raises(CaffeError, match="'conv9'"):
        Solver(p, log=TrainingLog(enabled=False), train_feed=feed, init_layers=["conv9"])


def test_plateau_policy_lowers_the_rate_in_training():
    # base_lr so small that nothing learns: the test accuracy stays put and the rate must drop
    # once per plateau_patience tests, at most plateau_max_drops times.
    p = param(base_lr=1e-12, lr_policy="plateau", gamma=0.1, test_interval=2, max_iter=12,
              plateau_patience=2, plateau_max_drops=2)
    p.test_iter.append(1)
    lines = []

    class Capture:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    s = Solver(p, log=TrainingLog(stream=Capture(), progress=False), train_feed=feed, test_feeds=[feed])
    s.solve()
    # tests at 0, 2, ..., 12: the first sets the best, then drops after tests 2 and 4 without
    # improvement (iterations 4 and 8), none after the second drop.
    assert s.schedule.current_step == 2
    assert s.schedule.rate(s.iter) == pytest.approx(1e-14)
    drops = [l for l in lines if "Plateau:" in l]
    assert len(drops) == 2 and "Iteration" not in drops[0]
    lr_lines = [l.split("lr = ")[1].strip() for l in lines if "lr = " in l]
    assert lr_lines[0] == "1e-12" and lr_lines[-1] == "1e-14"
