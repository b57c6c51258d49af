"""Pooling against Caffe's algorithm written out as loops (pooling_layer.cpp semantics)."""
import math

import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError


def caffe_pool(x, kernel, stride, pad, method, ceil=True):
    """Caffe's forward pass, loop by loop: output size with the clip rule, clipped windows."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    rnd = math.ceil if ceil else math.floor
    oh = rnd((h + 2 * ph - kh) / sh) + 1
    ow = rnd((w + 2 * pw - kw) / sw) + 1
    if ph or pw:
        if (oh - 1) * sh >= h + ph:
            oh -= 1
        if (ow - 1) * sw >= w + pw:
            ow -= 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
            size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            win = x[:, :, hs:he, ws:we]
            if method == "MAX":
                y[:, :, i, j] = win.max(axis=(2, 3))
            else:
                y[:, :, i, j] = win.sum(axis=(2, 3)) / size
    return y


CASES = [  # (H, W, kernel, stride, pad): odd sizes where ceil and floor differ, pads, rectangles
    (25, 33, 2, 2, 0), (8, 9, 3, 2, 2), (7, 7, 3, 2, 0), (7, 8, 3, 2, 1), (6, 6, 3, 3, 1), (5, 5, 2, 2, 1),
    (13, 13, 3, 2, 1), (9, 11, 4, 3, 2), (10, 7, 3, 1, 1),
]


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("h,w,k,s,p", CASES)
def test_pooling_matches_caffe_loops(make_layer, method, h, w, k, s, p):
    x = np.random.default_rng(h * w + k).standard_normal((2, 3, h, w))
    layer = make_layer(f'name: "pool" type: "Pooling" bottom: "x" top: "y" pooling_param '
                       f'{{ pool: {method} kernel_size: {k} stride: {s} pad: {p} }}', [x.shape])
    want = caffe_pool(x, (k, k), (s, s), (p, p), method)
    assert layer.top_shapes[0] == want.shape
    got = layer(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_ceil_differs_from_floor_and_round_mode_floor(make_layer):
    shape = (1, 1, 25, 33)
    ceil = make_layer('name: "p" type: "Pooling" pooling_param { kernel_size: 2 stride: 2 }', [shape])
    floor = make_layer('name: "p" type: "Pooling" pooling_param { kernel_size: 2 stride: 2 round_mode: FLOOR }',
                       [shape])
    assert ceil.top_shapes[0] == (1, 1, 13, 17)
    assert floor.top_shapes[0] == (1, 1, 12, 16)
    x = np.random.default_rng(0).standard_normal(shape)
    want = caffe_pool(x, (2, 2), (2, 2), (0, 0), "MAX", ceil=False)
    np.testing.assert_allclose(floor(torch.from_numpy(x)).numpy(), want)


def test_clip_rule_drops_window_starting_in_padding(make_layer):
    # H=5, k=2, s=2, p=1: ceil(5/2)+1 = 4, but window 3 would start at 6-1=5 >= H: Caffe gives 3.
    layer = make_layer('name: "p" type: "Pooling" pooling_param { kernel_size: 2 stride: 2 pad: 1 }',
                       [(1, 1, 5, 5)])
    assert layer.top_shapes[0] == (1, 1, 3, 3)


def test_rectangular_kernel_stride_pad(make_layer):
    shape = (1, 2, 9, 12)
    layer = make_layer('name: "p" type: "Pooling" pooling_param { pool: AVE kernel_h: 3 kernel_w: 2 '
                       'stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 0 }', [shape])
    x = np.random.default_rng(1).standard_normal(shape)
    want = caffe_pool(x, (3, 2), (2, 3), (1, 0), "AVE")
    np.testing.assert_allclose(layer(torch.from_numpy(x)).numpy(), want, rtol=1e-12)


def test_global_pooling(make_layer):
    shape = (2, 3, 5, 7)
    x = torch.randn(shape, dtype=torch.float64)
    ave = make_layer('name: "g" type: "Pooling" pooling_param { pool: AVE global_pooling: true }', [shape])
    mx = make_layer('name: "g" type: "Pooling" pooling_param { pool: MAX global_pooling: true }', [shape])
    assert ave.top_shapes[0] == (2, 3, 1, 1)
    np.testing.assert_allclose(ave(x).numpy()[..., 0, 0], x.numpy().mean(axis=(2, 3)))
    np.testing.assert_allclose(mx(x).numpy()[..., 0, 0], x.numpy().max(axis=(2, 3)))


def test_stochastic_and_bad_params_are_clear_errors(make_layer):
    with pytest.raises(CaffeError, match="STOCHASTIC.*not supported"):
        make_layer('name: "s" type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 2 }', [(1, 1, 4, 4)])
    with pytest.raises(CaffeError, match="layer 'q'.*kernel_size"):
        make_layer('name: "q" type: "Pooling" pooling_param { stride: 2 }', [(1, 1, 4, 4)])
    with pytest.raises(CaffeError, match="pad"):
        make_layer('name: "q" type: "Pooling" pooling_param { kernel_size: 2 pad: 2 }', [(1, 1, 4, 4)])
    with pytest.raises(CaffeError, match="smaller than the kernel"):
        make_layer('name: "q" type: "Pooling" pooling_param { kernel_size: 5 }', [(1, 1, 3, 3)])


@pytest.mark.parametrize("method,pad", [("MAX", 1), ("AVE", 1), ("AVE", 2)])
def test_pooling_gradcheck(make_layer, method, pad):
    shape = (1, 2, 7, 6)
    layer = make_layer(f'name: "p" type: "Pooling" pooling_param {{ pool: {method} kernel_size: 3 '
                       f'stride: 2 pad: {pad} }}', [shape])
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
