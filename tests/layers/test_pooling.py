"""Pooling against Caffe's algorithm written out as loops (pooling_layer.cpp semantics; for
STOCHASTIC, the StoPoolForwardTrain/Test and StoPoolBackward kernels of pooling_layer.cu)."""
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


def test_bad_params_are_clear_errors(make_layer):
    with pytest.raises(CaffeError, match="layer 's'.*padding is only implemented for MAX and AVE"):
        make_layer('name: "s" type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 2 pad: 1 }',
                   [(1, 1, 4, 4)])
    with pytest.raises(CaffeError, match="layer 'q'.*kernel_size or kernel_h and kernel_w, not both"):
        make_layer('name: "q" type: "Pooling" pooling_param { kernel_size: 2 kernel_h: 2 kernel_w: 2 }',
                   [(1, 1, 4, 4)])
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


# -- STOCHASTIC ------------------------------------------------------------------------------

def caffe_stochastic(x, k, s, u=None):
    """Caffe's stochastic pooling, loop by loop. u (per output) given: training, returning the top
    and the bottom gradient for a top gradient of ones; None: test, sum(x^2) / (FLT_MIN + sum(x))."""
    n, c, h, w = x.shape
    oh, ow = math.ceil((h - k[0]) / s[0]) + 1, math.ceil((w - k[1]) / s[1]) + 1
    y, grad = np.zeros((n, c, oh, ow)), np.zeros_like(x)
    for b, ch, i, j in np.ndindex(n, c, oh, ow):
        hs, ws = i * s[0], j * s[1]
        win = [(r, q) for r in range(hs, min(hs + k[0], h)) for q in range(ws, min(ws + k[1], w))]
        if u is None:
            total, squares = 1.1754943508222875e-38, 0.0
            for r, q in win:
                total += x[b, ch, r, q]
                squares += x[b, ch, r, q] ** 2
            y[b, ch, i, j] = squares / total
            continue
        threshold = u[b, ch, i, j] * sum(x[b, ch, r, q] for r, q in win)
        running = 0.0
        for r, q in win:
            running += x[b, ch, r, q]
            if running >= threshold:
                y[b, ch, i, j] = x[b, ch, r, q]
                grad[b, ch, r, q] += 1.0
                break
    return y, grad


STOCHASTIC_CASES = [(6, 6, 2, 2), (7, 9, 3, 2), (5, 8, 2, 3), (4, 4, 4, 1)]  # ceil windows run past the edge


@pytest.mark.parametrize("h,w,k,s", STOCHASTIC_CASES)
def test_stochastic_test_phase_is_the_weighted_average(make_layer, h, w, k, s):
    x = np.random.default_rng(h + w).uniform(0, 2, (2, 3, h, w))
    x[0, 0, :2, :2] = 0.0  # an all-zero window: 0 / FLT_MIN = 0
    layer = make_layer(f'name: "sp" type: "Pooling" pooling_param {{ pool: STOCHASTIC kernel_size: {k} '
                       f'stride: {s} }}', [x.shape]).eval()
    want, _ = caffe_stochastic(x, (k, k), (s, s))
    assert layer.top_shapes[0] == want.shape
    np.testing.assert_allclose(layer(torch.from_numpy(x)).numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("h,w,k,s", STOCHASTIC_CASES)
def test_stochastic_train_phase_picks_as_caffe(make_layer, h, w, k, s):
    x = np.random.default_rng(h * w).uniform(0, 2, (2, 3, h, w))
    x[x < 0.5] = 0.0  # zeros are never picked (except in an all-zero window)
    layer = make_layer(f'name: "sp" type: "Pooling" pooling_param {{ pool: STOCHASTIC kernel_size: {k} '
                       f'stride: {s} }}', [x.shape], phase="TRAIN").train()
    out = layer.top_shapes[0]
    torch.manual_seed(7)
    u = torch.rand(out, dtype=torch.float64).numpy()  # the draw the layer makes after the same seed
    want, want_grad = caffe_stochastic(x, (k, k), (s, s), u)
    torch.manual_seed(7)
    xt = torch.from_numpy(x).requires_grad_()
    y = layer(xt)
    np.testing.assert_array_equal(y.detach().numpy(), want)
    y.sum().backward()  # StoPoolBackward: each top's diff to its picked bottom, summed
    np.testing.assert_array_equal(xt.grad.numpy(), want_grad)


def test_stochastic_picks_in_proportion_to_the_activation(make_layer):
    window = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    layer = make_layer('name: "sp" type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 }',
                       [(20000, 1, 2, 2)]).train()
    torch.manual_seed(0)
    picks = layer(window.expand(20000, 1, 2, 2)).reshape(-1)
    freq = np.array([(picks == v).double().mean().item() for v in (1.0, 2.0, 3.0, 4.0)])
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.015)


def test_stochastic_sample_window_splits_like_one_batch(make_layer):
    from vgg_caffe.rng import SampleWindow
    x = torch.rand(4, 2, 6, 6)
    layer = make_layer('name: "sp" type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 2 }',
                       [(4, 2, 6, 6)]).train()
    layer.set_sample_window(SampleWindow(seed=3, iteration=5, start=0, stop=4, total=4))
    whole = layer(x)
    parts = []
    for start, stop in ((0, 1), (1, 4)):
        layer.set_sample_window(SampleWindow(seed=3, iteration=5, start=start, stop=stop, total=4))
        parts.append(layer(x[start:stop]))
    torch.testing.assert_close(torch.cat(parts), whole)
    layer.set_sample_window(SampleWindow(seed=3, iteration=6, start=0, stop=4, total=4))
    assert not torch.equal(layer(x), whole)  # a new iteration draws anew


@pytest.mark.parametrize("training", [True, False])
def test_stochastic_gradcheck(make_layer, training):
    layer = make_layer('name: "sp" type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 2 }',
                       [(1, 2, 5, 6)]).train(training)
    x = (torch.rand(1, 2, 5, 6, dtype=torch.float64) + 0.1).requires_grad_()

    def run(x):
        torch.manual_seed(1)  # the same picks on every evaluation
        return layer(x)
    assert torch.autograd.gradcheck(run, (x,))
