"""The solver's update against Caffe's formula written out here in numpy (CAFFE.md section 2).

A tiny net (Input -> InnerProduct -> ReLU -> InnerProduct -> SoftmaxWithLoss) with fixed inputs is
trained for a few iterations with a step lr change, momentum, weight decay, lr_mult 2 / decay_mult 0
on the biases, iter_size 2 and gradient clipping; the numpy twin does the forward, the backward
and Caffe's update by hand. torch.optim.SGD keeps the rate outside the momentum buffer and must
differ once the rate changes.
"""
import numpy as np
import pytest
import torch

from vgg_caffe.proto import parse_text, pb
from vgg_caffe.train.solver import Solver
from vgg_caffe.train.log import TrainingLog

N, K, H, C = 4, 3, 5, 3

NET = f"""
name: "tiny"
layer {{ name: "data" type: "Input" top: "data" top: "label"
        input_param {{ shape {{ dim: {N} dim: {K} }} shape {{ dim: {N} }} }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}
        inner_product_param {{ num_output: {H}
          weight_filler {{ type: "gaussian" std: 0.5 }} bias_filler {{ type: "uniform" min: -0.2 max: 0.2 }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}
        inner_product_param {{ num_output: {C}
          weight_filler {{ type: "gaussian" std: 0.5 }} bias_filler {{ type: "uniform" min: -0.2 max: 0.2 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""


def solver_param(**over):
    p = parse_text(f"""
        net_param {{ {NET} }}
        base_lr: 0.5 lr_policy: "step" gamma: 0.3 stepsize: 2
        momentum: 0.9 weight_decay: 0.05 iter_size: 2 clip_gradients: 1.0
        max_iter: 5 display: 0 snapshot_after_train: false random_seed: 3 solver_mode: CPU
    """, pb.SolverParameter())
    for k, v in over.items():
        setattr(p, k, v)
    return p


def batch(index):
    """Fixed inputs for forward pass `index` (different every sub-batch)."""
    r = np.random.RandomState(100 + index)
    return r.randn(N, K).astype(np.float32), r.randint(0, C, N).astype(np.float32)


def feed(index, start, stop):
    x, y = batch(index)
    return {"data": torch.from_numpy(x[start:stop]), "label": torch.from_numpy(y[start:stop])}


def quiet_solver(param):
    return Solver(param, log=TrainingLog(enabled=False), train_feed=feed)


def numpy_grads(w, x, y):
    """Forward and backward of the tiny net by hand: (loss, grads of W1, b1, W2, b2)."""
    W1, b1, W2, b2 = w
    a = x @ W1.T + b1
    r = np.maximum(a, 0)
    z = r @ W2.T + b2
    z = z - z.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    labels = y.astype(int)
    loss = -np.log(np.maximum(p[np.arange(N), labels], np.finfo(np.float32).tiny)).sum() / N
    dz = p.copy()
    dz[np.arange(N), labels] -= 1
    dz /= N                                  # VALID normalisation: N labelled samples
    dW2, db2 = dz.T @ r, dz.sum(0)
    dr = dz @ W2
    da = dr * (a > 0)
    dW1, db1 = da.T @ x, da.sum(0)
    return loss, [dW1, db1, dW2, db2]


def caffe_reference(w, param, iters, nesterov=False):
    """Caffe's SGD written out (CAFFE.md section 2), float64."""
    w = [a.astype(np.float64) for a in w]
    hist = [np.zeros_like(a) for a in w]
    clipped = 0
    lr_mult, decay_mult = [1, 2, 1, 2], [1, 0, 1, 0]
    for it in range(iters):
        diffs = [np.zeros_like(a) for a in w]
        for k in range(param.iter_size):           # diffs summed over iter_size passes
            x, y = batch(it * param.iter_size + k)
            _, g = numpy_grads(w, x.astype(np.float64), y)
            diffs = [d + gi for d, gi in zip(diffs, g)]
        rate = param.base_lr * param.gamma ** (it // param.stepsize)
        norm = np.sqrt(sum((d ** 2).sum() for d in diffs))
        if param.clip_gradients >= 0 and norm > param.clip_gradients:
            diffs = [d * (param.clip_gradients / norm) for d in diffs]
            clipped += 1
        for i in range(4):
            d = diffs[i] / param.iter_size
            d = d + param.weight_decay * decay_mult[i] * w[i]
            old = hist[i].copy()
            hist[i] = param.momentum * hist[i] + rate * lr_mult[i] * d
            if nesterov:
                w[i] = w[i] - ((1 + param.momentum) * hist[i] - param.momentum * old)
            else:
                w[i] = w[i] - hist[i]
    return w, clipped


def weights(solver):
    return [p.detach().numpy().copy() for p in solver.params]


@pytest.mark.parametrize("kind", ["SGD", "Nesterov"])
def test_update_matches_caffe_formula(kind):
    param = solver_param(type=kind)
    solver = quiet_solver(param)
    start = weights(solver)
    solver.solve()
    assert solver.iter == 5
    want, clipped = caffe_reference(start, param, 5, nesterov=kind == "Nesterov")
    for got, ref in zip(weights(solver), want):
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-6)
    # Clipping acted on some iterations and not on others (so both paths are covered).
    assert 0 < clipped < 5


def test_lr_mult_zero_is_not_updated():
    param = solver_param()
    param.net_param.layer[1].param[0].lr_mult = 0
    solver = quiet_solver(param)
    before = weights(solver)
    solver.solve()
    after = weights(solver)
    np.testing.assert_array_equal(after[0], before[0])    # ip1 weights frozen
    assert not np.allclose(after[1], before[1])            # ip1 bias still learns


def test_l1_regularization():
    param = solver_param(regularization_type="L1", clip_gradients=-1, iter_size=1, max_iter=1, momentum=0.0)
    solver = quiet_solver(param)
    start = weights(solver)
    solver.solve()
    x, y = batch(0)
    _, g = numpy_grads([a.astype(np.float64) for a in start], x.astype(np.float64), y)
    decay = [1, 0, 1, 0]
    lr_mult = [1, 2, 1, 2]
    for got, w0, gi, dm, lm in zip(weights(solver), start, g, decay, lr_mult):
        ref = w0 - param.base_lr * lm * (gi + param.weight_decay * dm * np.sign(w0))
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_torch_optim_sgd_differs():
    """torch.optim.SGD (v = m*v + g; w -= lr*v) as the usual translation of the same settings."""
    param = solver_param(clip_gradients=-1, iter_size=1)
    solver = quiet_solver(param)
    start = weights(solver)
    ref, _ = caffe_reference(start, param, 5)

    params = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in start]
    groups = [{"params": [params[0], params[2]], "lr_mult": 1, "weight_decay": param.weight_decay},
              {"params": [params[1], params[3]], "lr_mult": 2, "weight_decay": 0.0}]
    opt = torch.optim.SGD(groups, lr=param.base_lr, momentum=param.momentum)
    for it in range(5):
        rate = param.base_lr * param.gamma ** (it // param.stepsize)
        for gr in opt.param_groups:
            gr["lr"] = rate * gr["lr_mult"]
        x, y = batch(it)
        _, g = numpy_grads([p.detach().numpy().astype(np.float64) for p in params], x.astype(np.float64), y)
        for p, gi in zip(params, g):
            p.grad = torch.from_numpy(gi.astype(np.float32))
        opt.step()
    torch_w = [p.detach().numpy() for p in params]
    solver.solve()
    ours = weights(solver)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    worst = max(np.abs(a - b).max() for a, b in zip(torch_w, ref))
    assert worst > 1e-3, "torch.optim.SGD should not reproduce Caffe's update once the rate changes"
