"""TanH against (e^x - e^-x) / (e^x + e^-x)."""
import numpy as np
import torch


def test_tanh(make_layer):
    x = np.linspace(-3, 3, 24).reshape(4, 6)
    layer = make_layer('name: "t" type: "TanH"', [x.shape])
    want = (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x))
    np.testing.assert_allclose(layer(torch.from_numpy(x)).numpy(), want, rtol=1e-12)
    assert torch.autograd.gradcheck(layer, (torch.from_numpy(x).requires_grad_(),))
