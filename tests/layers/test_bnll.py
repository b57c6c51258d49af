"""BNLL against Caffe's log(1. + exp(x)) written out in numpy (the exp in float32, the rest in double,
as Caffe's C++), OpenCV's importer, float64 finite differences, and values and gradients far from 0."""
import numpy as np
import pytest
import torch

from in_place import in_place_forward
from opencv_ref import opencv_forward


def bnll_ref(x):
    """Caffe's two branches; exp(-|x|) in x's own precision (float32), the sum and log in double."""
    soft = np.log(1.0 + np.exp(-np.abs(x)).astype(np.float64))
    return np.where(x > 0, x.astype(np.float64) + soft, soft)


def test_forward_and_opencv(tmp_path, make_layer):
    x = (np.random.default_rng(0).standard_normal((2, 3, 4, 5)) * 4).astype(np.float32)
    got = make_layer('name: "b" type: "BNLL"', [x.shape])(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, bnll_ref(x), rtol=1e-6)
    ref = opencv_forward(tmp_path, 'type: "BNLL"', {"x": x})  # OpenCV stays in float: atol
    np.testing.assert_allclose(got, ref.reshape(x.shape), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(in_place_forward(tmp_path, 'type: "BNLL"', torch.from_numpy(x)).numpy(), got)


def test_far_from_zero_in_float32(make_layer):
    x = np.array([-100.0, -20.0, -1e-4, 0.0, 1e-4, 20.0, 100.0], np.float32)
    layer = make_layer('name: "b" type: "BNLL"', [x.shape])
    got = layer(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, bnll_ref(x).astype(np.float32), rtol=1e-6)
    # log(1. + exp(x)) in double: exp(-20) ~ 2.06e-9 survives (in float 1 + 2e-9 == 1), exp(-100) not
    assert got[1] == pytest.approx(np.exp(-20.0), rel=1e-6) and got[0] == 0
    xt = torch.from_numpy(x).requires_grad_()
    layer(xt).sum().backward()
    sig = 1 / (1 + np.exp(-x.astype(np.float64)))  # Caffe: exp(min(x, 50)) / (exp(..) + 1)
    np.testing.assert_allclose(xt.grad.numpy(), sig, rtol=1e-6, atol=1e-40)  # exp(-100) is subnormal
    assert xt.grad[3] == 0.5


def test_gradcheck(make_layer):
    x = (torch.randn(3, 4, dtype=torch.float64) * 3)
    x = torch.where(x.abs() < 0.05, torch.full_like(x, 0.5), x).requires_grad_()
    assert torch.autograd.gradcheck(make_layer('name: "b" type: "BNLL"', [x.shape]), (x,))
