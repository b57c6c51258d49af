"""ReLU against max(x, 0) + negative_slope * min(x, 0)."""
import numpy as np
import pytest
import torch


@pytest.mark.parametrize("slope", [0.0, 0.1])
def test_relu(make_layer, slope):
    x = np.random.default_rng(0).standard_normal((3, 4))
    layer = make_layer(f'name: "r" type: "ReLU" relu_param {{ negative_slope: {slope} }}', [x.shape])
    want = np.maximum(x, 0) + np.float32(slope) * np.minimum(x, 0)
    np.testing.assert_allclose(layer(torch.from_numpy(x)).numpy(), want, rtol=1e-7)
