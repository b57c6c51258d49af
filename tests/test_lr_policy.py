"""Each lr policy against its formula (CAFFE.md section 2), and the plateau policy's semantics."""
import math

import pytest

from vgg_caffe.errors import CaffeError
from vgg_caffe.train.lr_policy import LrSchedule
from vgg_caffe.proto import pb


def schedule(**fields):
    p = pb.SolverParameter(base_lr=0.01, gamma=0.5, power=0.75, stepsize=7, max_iter=50)
    for k, v in fields.items():
        if k == "stepvalue":
            p.stepvalue.extend(v)
        else:
            setattr(p, k, v)
    return LrSchedule(p)


ITERS = [0, 1, 6, 7, 8, 13, 14, 20, 33, 49]


@pytest.mark.parametrize("policy,formula", [
    ("fixed", lambda it: 0.01),
    ("step", lambda it: 0.01 * 0.5 ** math.floor(it / 7)),
    ("exp", lambda it: 0.01 * 0.5 ** it),
    ("inv", lambda it: 0.01 * (1 + 0.5 * it) ** -0.75),
    ("poly", lambda it: 0.01 * (1 - it / 50) ** 0.75),
    ("sigmoid", lambda it: 0.01 / (1 + math.exp(-0.5 * (it - 7)))),
])
def test_policy_formula(policy, formula):
    s = schedule(lr_policy=policy)
    for it in ITERS:
        assert s.rate(it) == pytest.approx(formula(it), rel=1e-6), (policy, it)


def test_multistep():
    s = schedule(lr_policy="multistep", stepvalue=[5, 12, 30])
    expected = {0: 0, 4: 0, 5: 1, 11: 1, 12: 2, 29: 2, 30: 3, 49: 3}
    for it, steps in expected.items():
        assert s.rate(it) == pytest.approx(0.01 * 0.5 ** steps), it
        assert s.current_step == steps


def test_multistep_jumps_several_steps_after_resume():
    s = schedule(lr_policy="multistep", stepvalue=[5, 12, 30])
    assert s.rate(31) == pytest.approx(0.01 * 0.5 ** 3)


def test_unknown_and_missing_policy():
    with pytest.raises(CaffeError, match="unknown lr_policy 'cosine'"):
        schedule(lr_policy="cosine")
    with pytest.raises(CaffeError, match="stepsize"):
        schedule(lr_policy="step", stepsize=0)


def test_plateau_accuracy():
    s = schedule(lr_policy="plateau", gamma=0.1, plateau_patience=2, plateau_max_drops=2,
                 plateau_threshold=0.01)
    assert s.rate(0) == pytest.approx(0.01)
    # improving, then an improvement below the threshold counts as none
    assert not s.observe(0.30)
    assert not s.observe(0.40)
    assert not s.observe(0.405)          # +0.005 <= threshold: first test without improvement
    assert s.observe(0.39)               # second in a row: drop
    assert s.rate(100) == pytest.approx(0.001)
    assert not s.observe(0.38)           # the count starts again after a drop
    assert not s.observe(0.50)           # real improvement resets it
    assert not s.observe(0.49)
    assert s.observe(0.49)               # second drop
    assert s.rate(100) == pytest.approx(0.0001)
    for _ in range(6):                   # at most plateau_max_drops drops
        assert not s.observe(0.1)
    assert s.current_step == 2


def test_plateau_loss_goes_down():
    s = schedule(lr_policy="plateau", gamma=0.1, plateau_metric="loss", plateau_patience=1)
    assert not s.observe(2.0)
    assert not s.observe(1.5)            # lower loss is an improvement
    assert s.observe(1.6)
    assert s.rate(0) == pytest.approx(0.001)


def test_plateau_state_round_trip():
    s = schedule(lr_policy="plateau", gamma=0.1, plateau_patience=3)
    for v in (0.5, 0.6, 0.55, 0.58):
        s.observe(v)
    state = pb.SolverState()
    s.save(state)
    t = schedule(lr_policy="plateau", gamma=0.1, plateau_patience=3)
    t.restore(state)
    assert (t.current_step, t.plateau_best, t.plateau_bad_tests) == (0, pytest.approx(0.6), 2)
    assert t.observe(0.59) and s.observe(0.59)
