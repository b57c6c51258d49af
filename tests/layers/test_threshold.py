"""Threshold against (x > t) in numpy, the boundary (x == t gives 0), and the missing backward
(Caffe's is NOT_IMPLEMENTED): the top carries no gradient."""
import numpy as np
import pytest
import torch

from in_place import in_place_forward


@pytest.mark.parametrize("t", [0.0, 0.5, -1.25])
def test_forward(tmp_path, make_layer, t):
    x = np.concatenate([np.random.default_rng(0).standard_normal(20), [t, np.nextafter(np.float32(t), np.float32(9))]]).astype(np.float32)
    text = f'type: "Threshold" threshold_param {{ threshold: {t} }}'
    got = make_layer(f'name: "t" {text}', [x.shape])(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, (x > np.float32(t)).astype(np.float32))
    assert got[-2] == 0 and got[-1] == 1
    np.testing.assert_array_equal(in_place_forward(tmp_path, text, torch.from_numpy(x)).numpy(), got)


def test_no_gradient_flows_back(make_layer):
    x = torch.randn(5, requires_grad=True)
    y = make_layer('name: "t" type: "Threshold"', [x.shape])(x)
    assert not y.requires_grad and y.grad_fn is None
    (y.sum() + x.sum()).backward()  # only the other path reaches x
    assert torch.equal(x.grad, torch.ones(5))
