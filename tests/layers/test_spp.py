"""SPP against Caffe's pyramid written out: per level kernel ceil(H / 2^l), stride = kernel, pad
(kernel * 2^l - H + 1) / 2, Caffe's pooling loops (ceil size, clip rule, clipped MAX windows, AVE
divided by the window clipped to H + pad), flattened and concatenated; pyramid_height 1 keeps the
4-d top; the gradient; and the errors."""
import math

import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net


def pool_loops(x, k, s, p, method):
    n, c, h, w = x.shape
    out = []
    for size, kk, ss, pp in zip((h, w), k, s, p):
        o = math.ceil((size + 2 * pp - kk) / ss) + 1
        if pp and (o - 1) * ss >= size + pp:
            o -= 1
        out.append(o)
    y = np.zeros((n, c) + tuple(out))
    for i in range(out[0]):
        for j in range(out[1]):
            hs, ws = i * s[0] - p[0], j * s[1] - p[1]
            he, we = min(hs + k[0], h + p[0]), min(ws + k[1], w + p[1])
            area = (he - hs) * (we - ws)
            win = x[:, :, max(hs, 0):min(he, h), max(ws, 0):min(we, w)]
            y[:, :, i, j] = win.max(axis=(2, 3)) if method == "MAX" else win.sum(axis=(2, 3)) / area
    return y


def spp_reference(x, height, method):
    levels = []
    for level in range(height):
        bins = 2 ** level
        k = [math.ceil(size / bins) for size in x.shape[2:]]
        p = [(kk * bins - size + 1) // 2 for kk, size in zip(k, x.shape[2:])]
        levels.append(pool_loops(x, k, k, p, method))
    if height == 1:
        return levels[0]
    return np.concatenate([lv.reshape(x.shape[0], -1) for lv in levels], 1)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("h,w,height", [(7, 9, 3), (8, 8, 3), (13, 6, 2), (5, 5, 1), (15, 22, 4)])
def test_spp_matches_caffe_pyramid(make_layer, method, h, w, height):
    x = np.random.default_rng(h * w).standard_normal((2, 3, h, w))
    layer = make_layer(f'name: "spp" type: "SPP" spp_param {{ pyramid_height: {height} pool: {method} }}',
                       [x.shape])
    want = spp_reference(x, height, method)
    assert layer.top_shapes[0] == want.shape
    if height > 1:
        assert want.shape[1] == 3 * sum(4 ** lv for lv in range(height))
    np.testing.assert_allclose(layer(torch.from_numpy(x)).numpy(), want, rtol=1e-12)


def test_spp_follows_a_new_input_size(make_layer):
    layer = make_layer('name: "spp" type: "SPP" spp_param { pyramid_height: 3 pool: AVE }', [(1, 2, 8, 8)])
    x = np.random.default_rng(5).standard_normal((1, 2, 11, 7))
    assert layer.reshape([x.shape]) == [(1, 2 * 21)]
    np.testing.assert_allclose(layer(torch.from_numpy(x)).numpy(), spp_reference(x, 3, "AVE"), rtol=1e-12)


def test_spp_stochastic_without_padding(make_layer):
    layer = make_layer('name: "spp" type: "SPP" spp_param { pyramid_height: 2 pool: STOCHASTIC }', [(1, 2, 4, 4)])
    x = torch.rand(1, 2, 4, 4, dtype=torch.float64)
    layer.eval()  # test-time stochastic pooling: sum(x^2) / sum(x) over each bin
    want = [(x * x).sum((2, 3)) / x.sum((2, 3))]
    bins = x.reshape(1, 2, 2, 2, 2, 2)
    want.append(((bins * bins).sum((3, 5)) / bins.sum((3, 5))).reshape(1, -1))
    torch.testing.assert_close(layer(x), torch.cat(want, 1))


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_spp_gradcheck(make_layer, method):
    layer = make_layer(f'name: "spp" type: "SPP" spp_param {{ pyramid_height: 3 pool: {method} }}', [(1, 2, 7, 6)])
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


@pytest.mark.parametrize("params,shape,match", [
    ("", (1, 2, 8, 8), "pyramid_height is required"),
    ("pyramid_height: 2", (2, 8, 8), "expects a 4-d bottom"),
    ("pyramid_height: 3", (1, 2, 2, 8), r"layer 'spp level 2' \(Pooling\): pad .* smaller than the kernel"),
    ("pyramid_height: 2 pool: STOCHASTIC", (1, 2, 7, 8), "padding is only implemented for MAX and AVE"),
])
def test_spp_errors(make_layer, params, shape, match):
    with pytest.raises(CaffeError, match=match):
        make_layer(f'name: "spp" type: "SPP" spp_param {{ {params} }}', [shape])


def test_spp_stochastic_levels_follow_the_sample_window(make_layer):
    from vgg_caffe.rng import SampleWindow
    layer = make_layer('name: "spp" type: "SPP" spp_param { pyramid_height: 2 pool: STOCHASTIC }',
                       [(2, 2, 4, 4)]).train()
    x = torch.rand(2, 2, 4, 4)
    layer.set_sample_window(SampleWindow(seed=1, iteration=3, start=0, stop=2, total=2))
    first = layer(x)
    torch.manual_seed(123)  # the global generator plays no part once a window is set
    torch.testing.assert_close(layer(x), first)
    layer.set_sample_window(SampleWindow(seed=1, iteration=3, start=1, stop=2, total=2))
    torch.testing.assert_close(layer(x[1:]), first[1:])


def test_spp_takes_one_bottom():
    with pytest.raises(CaffeError, match=r"layer 'l2' \(SPP\) takes exactly 1 bottom\(s\), has 2"):
        Net('layer { name: "in" type: "Input" top: "a" top: "b" input_param { shape { dim: 2 dim: 1 dim: 2 dim: 2 } } }\n'
            'layer { name: "l2" type: "SPP" bottom: "a" bottom: "b" top: "y" spp_param { pyramid_height: 1 } }')
