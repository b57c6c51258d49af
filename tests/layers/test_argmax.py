"""ArgMax against Caffe's algorithm written out in numpy: (value, index) pairs sorted under
std::greater (ties to the larger index), the (N, 1|2, top_k) layout without axis, the per-axis
layout with it, and the top_k errors."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net


def caffe_top_k(row, k):
    """The first k (value, index) pairs of `row` in descending order of the pair."""
    pairs = sorted(((v, j) for j, v in enumerate(row)), reverse=True)
    return [p[0] for p in pairs[:k]], [p[1] for p in pairs[:k]]


def caffe_argmax(x, top_k, out_max_val, axis=None):
    if axis is None:
        rows = x.reshape(x.shape[0], -1)
        top = np.zeros((x.shape[0], 2 if out_max_val else 1, top_k) + (1,) * max(0, x.ndim - 3))
        for i, row in enumerate(rows):
            values, index = caffe_top_k(list(row), top_k)
            top[i, 0, :, ...] = np.reshape(index, (top_k,) + (1,) * max(0, x.ndim - 3))
            if out_max_val:
                top[i, 1, :, ...] = np.reshape(values, (top_k,) + (1,) * max(0, x.ndim - 3))
        return top
    moved = np.moveaxis(x, axis, -1)
    out = np.zeros(moved.shape[:-1] + (top_k,))
    for idx in np.ndindex(moved.shape[:-1]):
        values, index = caffe_top_k(list(moved[idx]), top_k)
        out[idx] = values if out_max_val else index
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("shape", [(3, 10), (2, 3, 4), (2, 3, 2, 2)])
@pytest.mark.parametrize("top_k,out_max_val", [(1, False), (3, False), (2, True)])
def test_argmax_without_axis(make_layer, shape, top_k, out_max_val):
    # Few distinct values, so ties are everywhere and the tie rule matters.
    x = np.random.default_rng(0).integers(0, 4, shape).astype(np.float64)
    layer = make_layer(f'name: "am" type: "ArgMax" argmax_param {{ top_k: {top_k} '
                       f'out_max_val: {str(out_max_val).lower()} }}', [shape])
    want = caffe_argmax(x, top_k, out_max_val)
    assert layer.top_shapes[0] == want.shape
    np.testing.assert_array_equal(layer(torch.from_numpy(x)).numpy(), want)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("top_k,out_max_val", [(1, False), (2, False), (2, True)])
def test_argmax_with_axis(make_layer, axis, top_k, out_max_val):
    x = np.random.default_rng(1).integers(0, 3, (3, 4, 5)).astype(np.float64)
    layer = make_layer(f'name: "am" type: "ArgMax" argmax_param {{ top_k: {top_k} axis: {axis} '
                       f'out_max_val: {str(out_max_val).lower()} }}', [x.shape])
    want = caffe_argmax(x, top_k, out_max_val, axis % 3)
    assert layer.top_shapes[0] == want.shape
    np.testing.assert_array_equal(layer(torch.from_numpy(x)).numpy(), want)


def test_argmax_ties_go_to_the_larger_index(make_layer):
    layer = make_layer('name: "am" type: "ArgMax" argmax_param { top_k: 3 }', [(1, 5)])
    got = layer(torch.tensor([[1.0, 7.0, 3.0, 7.0, 3.0]]))
    np.testing.assert_array_equal(got.numpy().ravel(), [3, 1, 4])


def test_argmax_has_no_gradient(make_layer):
    layer = make_layer('name: "am" type: "ArgMax" argmax_param { out_max_val: true axis: 1 }', [(2, 3)])
    assert not layer(torch.randn(2, 3, requires_grad=True)).requires_grad  # Caffe: no Backward


@pytest.mark.parametrize("params,shape,match", [
    ("top_k: 0", (2, 3), "top_k must be at least 1"),
    ("top_k: 7", (2, 2, 3), r"top_k 7 exceeds the 6 entries per sample"),
    ("top_k: 4 axis: 1", (2, 3, 5), r"top_k 4 exceeds axis 1 of bottom \(2, 3, 5\)"),
    ("axis: 3", (2, 3, 5), "axis 3 is out of range"),
])
def test_argmax_errors(make_layer, params, shape, match):
    with pytest.raises(CaffeError, match=r"layer 'am' \(ArgMax\).*" + match):
        make_layer(f'name: "am" type: "ArgMax" argmax_param {{ {params} }}', [shape])


def test_argmax_takes_one_bottom():
    with pytest.raises(CaffeError, match=r"layer 'l2' \(ArgMax\) takes exactly 1 bottom\(s\), has 2"):
        Net('layer { name: "in" type: "Input" top: "a" top: "b" input_param { shape { dim: 2 dim: 1 dim: 2 dim: 2 } } }\n'
            'layer { name: "l2" type: "ArgMax" bottom: "a" bottom: "b" top: "y"  }')
