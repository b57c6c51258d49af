"""Swish against x / (1 + exp(-beta * x)) in numpy, Caffe's gradient formula, and float64 finite
differences."""
import numpy as np
import pytest
import torch

from in_place import in_place_forward


@pytest.mark.parametrize("beta", [1.0, 0.5, 3.0])
def test_forward_and_gradient(tmp_path, make_layer, beta):
    x = np.random.default_rng(0).standard_normal((2, 3, 4)) * 4
    text = f'type: "Swish" swish_param {{ beta: {beta} }}'
    layer = make_layer(f'name: "s" {text}', [x.shape])
    xt = torch.from_numpy(x).requires_grad_()
    y = layer(xt)
    np.testing.assert_allclose(y.detach().numpy(), x / (1 + np.exp(-beta * x)), rtol=1e-12)
    y.sum().backward()
    sig, yn = 1 / (1 + np.exp(-beta * x)), y.detach().numpy()
    np.testing.assert_allclose(xt.grad.numpy(), beta * yn + sig * (1 - beta * yn), rtol=1e-10, atol=1e-12)  # Caffe's
    assert torch.autograd.gradcheck(layer, (torch.from_numpy(x[0, :2]).requires_grad_(),))
    x32 = torch.from_numpy(x.astype(np.float32))
    torch.testing.assert_close(in_place_forward(tmp_path, text, x32), layer(x32))
