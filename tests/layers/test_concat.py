"""Concat against numpy.concatenate, including the legacy concat_dim and shape errors."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError


@pytest.mark.parametrize("params,axis", [("", 1), ("concat_param { axis: 2 }", 2),
                                         ("concat_param { concat_dim: 0 }", 0), ("concat_param { axis: -1 }", 3)])
def test_concat(make_layer, params, axis):
    rng = np.random.default_rng(0)
    shapes = [[2, 3, 4, 5], [2, 3, 4, 5], [2, 3, 4, 5]]
    for s, extra in zip(shapes, (1, 2, 3)):
        s[axis] = extra
    xs = [rng.standard_normal(s) for s in shapes]
    layer = make_layer(f'name: "cat" type: "Concat" bottom: "a" bottom: "b" bottom: "c" {params}',
                       [x.shape for x in xs])
    want = np.concatenate(xs, axis)
    assert layer.top_shapes[0] == want.shape
    np.testing.assert_array_equal(layer([torch.from_numpy(x) for x in xs]).numpy(), want)


def test_concat_mismatch(make_layer):
    with pytest.raises(CaffeError, match="layer 'cat'.*bottom 'b'.*except along axis 1"):
        make_layer('name: "cat" type: "Concat" bottom: "a" bottom: "b"', [(2, 3, 4, 4), (2, 3, 5, 4)])


def test_concat_gradcheck(make_layer):
    layer = make_layer('name: "cat" type: "Concat" bottom: "a" bottom: "b"', [(1, 2, 2), (1, 3, 2)])
    a = torch.randn(1, 2, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: layer([a, b]), (a, b))


def test_concat_axis_and_concat_dim_are_exclusive(make_layer):
    with pytest.raises(CaffeError, match="layer 'cat' \\(Concat\\): give concat_param.axis or the legacy concat_dim"):
        make_layer('name: "cat" type: "Concat" bottom: "a" bottom: "b" concat_param { axis: 1 concat_dim: 1 }',
                   [(2, 3), (2, 3)])
