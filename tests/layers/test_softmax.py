"""Softmax along an axis against exp(x) / sum(exp(x)) in numpy."""
import numpy as np
import pytest
import torch


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_softmax_axis(make_layer, axis):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    layer = make_layer(f'name: "prob" type: "Softmax" softmax_param {{ axis: {axis} }}', [x.shape])
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    np.testing.assert_allclose(layer(torch.from_numpy(x)).numpy(), e / e.sum(axis=axis, keepdims=True), rtol=1e-12)


def test_softmax_gradcheck(make_layer):
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(make_layer('name: "p" type: "Softmax"', [x.shape]), (x,))
