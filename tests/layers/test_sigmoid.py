"""Sigmoid against 1 / (1 + exp(-x))."""
import numpy as np
import torch


def test_sigmoid(make_layer):
    x = np.linspace(-6, 6, 25).reshape(5, 5)
    layer = make_layer('name: "s" type: "Sigmoid"', [x.shape])
    np.testing.assert_allclose(layer(torch.from_numpy(x)).numpy(), 1 / (1 + np.exp(-x)), rtol=1e-12)
    xt = torch.from_numpy(x).requires_grad_()
    assert torch.autograd.gradcheck(layer, (xt,))
