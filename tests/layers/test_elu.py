"""ELU against max(x, 0) + alpha * (exp(min(x, 0)) - 1) in numpy, OpenCV's importer, float64
finite differences and Caffe's gradient at 0 (alpha)."""
import numpy as np
import pytest
import torch

from in_place import in_place_forward
from opencv_ref import opencv_forward


def elu_ref(x, alpha):
    return np.maximum(x, 0) + alpha * (np.exp(np.minimum(x, 0)) - 1)


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.5])
def test_forward_and_opencv(tmp_path, make_layer, alpha):
    x = (np.random.default_rng(0).standard_normal((2, 3, 4, 5)) * 3).astype(np.float32)
    text = f'type: "ELU" elu_param {{ alpha: {alpha} }}'
    got = make_layer(f'name: "e" {text}', [x.shape])(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, elu_ref(x.astype(np.float64), alpha), rtol=1e-6, atol=1e-7)
    ref = opencv_forward(tmp_path, text, {"x": x})
    np.testing.assert_allclose(got, ref.reshape(x.shape), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(in_place_forward(tmp_path, text, torch.from_numpy(x)).numpy(), got)


def test_gradients(make_layer):
    layer = make_layer('name: "e" type: "ELU" elu_param { alpha: 0.7 }', [(3, 4)])
    x = torch.randn(3, 4, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(layer, (x,))
    z = torch.tensor([0.0, -100.0, 100.0], dtype=torch.float64, requires_grad=True)
    layer(z).sum().backward()
    # Caffe: (x > 0) + (alpha + y) * (x <= 0): alpha at 0, finite far out on both sides
    np.testing.assert_allclose(z.grad.numpy(), [0.7, 0.7 * np.exp(-100.0), 1.0], rtol=1e-7)
