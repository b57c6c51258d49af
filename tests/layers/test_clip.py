"""Clip against max(min, min(x, max)) in numpy, Caffe's inclusive gradient rule
(min <= x <= max), min > max, the required fields, and float64 finite differences."""
import numpy as np
import pytest
import torch

from in_place import in_place_forward
from vgg_caffe.errors import CaffeError


def test_forward(tmp_path, make_layer):
    x = (np.random.default_rng(0).standard_normal((2, 3, 4)) * 2).astype(np.float32)
    text = 'type: "Clip" clip_param { min: -1 max: 0.5 }'
    got = make_layer(f'name: "c" {text}', [x.shape])(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, np.maximum(np.float32(-1), np.minimum(x, np.float32(0.5))))
    np.testing.assert_array_equal(in_place_forward(tmp_path, text, torch.from_numpy(x)).numpy(), got)


def test_gradient_passes_on_the_boundaries(make_layer):
    layer = make_layer('name: "c" type: "Clip" clip_param { min: -1 max: 2 }', [(6,)])
    x = torch.tensor([-3.0, -1.0, 0.0, 1.5, 2.0, 5.0], dtype=torch.float64, requires_grad=True)
    layer(x).backward(torch.full((6,), 7.0, dtype=torch.float64))
    np.testing.assert_array_equal(x.grad.numpy(), [0, 7, 7, 7, 7, 0])  # Caffe: x >= min && x <= max
    inside = torch.tensor([-2.5, -0.5, 0.3, 1.1, 3.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (inside,))


def test_min_above_max_gives_min(make_layer):
    layer = make_layer('name: "c" type: "Clip" clip_param { min: 3 max: 1 }', [(4,)])
    x = torch.tensor([-5.0, 2.0, 3.0, 9.0], requires_grad=True)
    y = layer(x)
    assert y.tolist() == [3.0, 3.0, 3.0, 3.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0, 0.0]


def test_required_fields(make_layer):
    with pytest.raises(CaffeError, match=r"layer 'c' \(Clip\): clip_param.min and clip_param.max are required"):
        make_layer('name: "c" type: "Clip"', [(2,)])
    # a half-written clip_param is already refused by the schema (both fields are `required`)
    for params, missing in (("clip_param { min: 0 }", "max"), ("clip_param { max: 0 }", "min")):
        with pytest.raises(CaffeError, match=rf"required field.*clip_param\.{missing}"):
            make_layer(f'name: "c" type: "Clip" {params}', [(2,)])
