"""Reduction: SUM, ASUM, SUMSQ and MEAN over every axis from `axis` on, times coeff, against numpy
formulas; Caffe's gradients (coeff, coeff*sign(x), 2*coeff*x) and errors."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net

FORMULAS = {
    "SUM": lambda r: r.sum(-1),
    "ASUM": lambda r: np.abs(r).sum(-1),
    "SUMSQ": lambda r: (r * r).sum(-1),
    "MEAN": lambda r: r.sum(-1) / r.shape[-1],
}


@pytest.mark.parametrize("op", list(FORMULAS))
@pytest.mark.parametrize("axis,coeff", [(0, 1.0), (1, -0.5), (2, 2.0), (-1, 3.0)])
def test_reduction_matches_numpy(make_layer, op, axis, coeff):
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    layer = make_layer(f'name: "r" type: "Reduction" reduction_param {{ operation: {op} axis: {axis} '
                       f'coeff: {coeff} }}', [x.shape])
    lead = x.shape[:axis % 3]
    want = coeff * FORMULAS[op](x.reshape(lead + (-1,)))
    assert layer.top_shapes[0] == lead
    got = layer(torch.from_numpy(x))
    assert tuple(got.shape) == lead
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


def test_reduction_default_is_sum_of_everything(make_layer):
    x = np.random.default_rng(1).standard_normal((3, 2, 2))
    layer = make_layer('name: "r" type: "Reduction"', [x.shape])
    assert layer.top_shapes[0] == ()
    np.testing.assert_allclose(layer(torch.from_numpy(x)).numpy(), x.sum(), rtol=1e-12)


@pytest.mark.parametrize("op", list(FORMULAS))
def test_reduction_gradients(make_layer, op):
    layer = make_layer(f'name: "r" type: "Reduction" reduction_param {{ operation: {op} axis: 1 coeff: 0.75 }}',
                       [(3, 2, 2)])
    x = torch.randn(3, 2, 2, dtype=torch.float64)
    x = (x + 0.1 * torch.sign(x)).requires_grad_()  # away from 0, where |x| has no derivative
    assert torch.autograd.gradcheck(layer, (x,))
    g = torch.randn(3, dtype=torch.float64)
    (gx,) = torch.autograd.grad(layer(x), (x,), g)
    top = 0.75 * g.numpy()[:, None, None]
    xv = x.detach().numpy()
    want = {"SUM": top * np.ones_like(xv), "MEAN": top / 4 * np.ones_like(xv), "ASUM": top * np.sign(xv),
            "SUMSQ": 2 * top * xv}[op]
    np.testing.assert_allclose(gx.numpy(), want, rtol=1e-12)


def test_reduction_asum_gradient_is_zero_at_zero(make_layer):
    layer = make_layer('name: "r" type: "Reduction" reduction_param { operation: ASUM }', [(3,)])
    x = torch.tensor([0.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
    layer(x).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, -1.0, 1.0])  # caffe_cpu_sign(0) = 0


def test_reduction_errors(make_layer):
    with pytest.raises(CaffeError, match=r"layer 'r' \(Reduction\).*axis 3 is out of range"):
        make_layer('name: "r" type: "Reduction" reduction_param { axis: 3 }', [(2, 3, 4)])


def test_reduction_takes_one_bottom():
    with pytest.raises(CaffeError, match=r"layer 'l2' \(Reduction\) takes exactly 1 bottom\(s\), has 2"):
        Net('layer { name: "in" type: "Input" top: "a" top: "b" input_param { shape { dim: 2 dim: 1 dim: 2 dim: 2 } } }\n'
            'layer { name: "l2" type: "Reduction" bottom: "a" bottom: "b" top: "y"  }')
