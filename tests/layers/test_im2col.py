"""Im2col against Caffe's im2col_cpu written out as loops (channel-major rows c*kh*kw + i*kw + j,
zero padding, dilation, stride), the same rule in 1-d and 3-d, a non-default channel axis, the
col2im gradient, and the parameter errors."""
import itertools

import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net


def caffe_im2col(x, kernel, stride, pad, dilation):
    """One sample (C, *spatial) -> (C * prod(kernel), *out), loop by loop as im2col_nd_cpu."""
    c, spatial = x.shape[0], x.shape[1:]
    out = [(s + 2 * p - (d * (k - 1) + 1)) // st + 1 for s, k, st, p, d in zip(spatial, kernel, stride, pad, dilation)]
    cols = np.zeros((c * int(np.prod(kernel)),) + tuple(out))
    for ch in range(c):
        for t, taps in enumerate(itertools.product(*[range(k) for k in kernel])):
            row = ch * int(np.prod(kernel)) + t  # channel-major, then the taps in row-major order
            for pos in itertools.product(*[range(o) for o in out]):
                src = [p_ * st - pd + tap * d for p_, st, pd, tap, d in zip(pos, stride, pad, taps, dilation)]
                inside = all(0 <= s_ < n for s_, n in zip(src, spatial))
                cols[(row,) + pos] = x[(ch,) + tuple(src)] if inside else 0.0
    return cols


@pytest.mark.parametrize("params,kernel,stride,pad,dilation", [
    ("kernel_size: 3", (3, 3), (1, 1), (0, 0), (1, 1)),
    ("kernel_size: 3 stride: 2 pad: 1", (3, 3), (2, 2), (1, 1), (1, 1)),
    ("kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 0 pad_w: 2", (2, 3), (1, 2), (0, 2), (1, 1)),
    ("kernel_size: 2 kernel_size: 3 dilation: 2 pad: 1", (2, 3), (1, 1), (1, 1), (2, 2)),
    ("kernel_size: 3 dilation: 1 dilation: 2 stride: 2 stride: 1", (3, 3), (2, 1), (0, 0), (1, 2)),
])
def test_im2col_matches_caffe_loops(make_layer, params, kernel, stride, pad, dilation):
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 8))
    layer = make_layer(f'name: "col" type: "Im2col" convolution_param {{ {params} }}', [x.shape])
    want = np.stack([caffe_im2col(s, kernel, stride, pad, dilation) for s in x])
    assert layer.top_shapes[0] == want.shape
    np.testing.assert_array_equal(layer(torch.from_numpy(x)).numpy(), want)


@pytest.mark.parametrize("shape,params,kernel,stride,pad,dilation", [
    ((2, 3, 9), "kernel_size: 3 stride: 2 pad: 1", (3,), (2,), (1,), (1,)),            # 1-d
    ((1, 2, 4, 5, 6), "kernel_size: 2 kernel_size: 3 kernel_size: 2 pad: 1 dilation: 2", (2, 3, 2), (1, 1, 1),
     (1, 1, 1), (2, 2, 2)),                                                            # 3-d
])
def test_im2col_nd(make_layer, shape, params, kernel, stride, pad, dilation):
    x = np.random.default_rng(1).standard_normal(shape)
    layer = make_layer(f'name: "col" type: "Im2col" convolution_param {{ {params} }}', [shape])
    want = np.stack([caffe_im2col(s, kernel, stride, pad, dilation) for s in x])
    assert layer.top_shapes[0] == want.shape
    np.testing.assert_array_equal(layer(torch.from_numpy(x)).numpy(), want)


def test_im2col_channel_axis_2(make_layer):
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 6, 5))  # (N, T, C, H, W): channel axis 2
    layer = make_layer('name: "col" type: "Im2col" convolution_param { kernel_size: 2 axis: 2 }', [x.shape])
    want = np.stack([np.stack([caffe_im2col(s, (2, 2), (1, 1), (0, 0), (1, 1)) for s in t]) for t in x])
    assert layer.top_shapes[0] == want.shape == (2, 3, 16, 5, 4)
    np.testing.assert_array_equal(layer(torch.from_numpy(x)).numpy(), want)


def test_im2col_equals_convolution_as_a_matrix_product(make_layer):
    """A convolution is its weight (O, C*kh*kw) times the columns: the layout is the one Caffe's
    BaseConvolutionLayer multiplies, so weights line up."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((1, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    layer = make_layer('name: "col" type: "Im2col" convolution_param { kernel_size: 3 pad: 1 stride: 2 }', [x.shape])
    cols = layer(torch.from_numpy(x))[0].reshape(27, -1).numpy()
    conv = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1, stride=2)
    np.testing.assert_allclose((w.reshape(4, 27) @ cols).reshape(conv.shape[1:]), conv[0].numpy(), rtol=1e-12)


def test_im2col_gradcheck(make_layer):
    layer = make_layer('name: "col" type: "Im2col" convolution_param { kernel_size: 3 stride: 1 pad: 1 '
                       'dilation: 2 }', [(1, 2, 5, 4)])
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


@pytest.mark.parametrize("params,shape,match", [
    ("", (1, 2, 5, 5), "kernel_size .*is required"),
    ("kernel_size: 3 kernel_h: 3 kernel_w: 3", (1, 2, 5, 5), "kernel_size or kernel_h and kernel_w, not both"),
    ("kernel_h: 3 kernel_w: 3", (1, 2, 5, 5, 5), "kernel_h and kernel_w are only for 2-d input"),
    ("kernel_size: 3 kernel_size: 3", (1, 2, 5, 5, 5), "kernel_size has 2 values; give one, or one per spatial"),
    ("kernel_size: 0", (1, 2, 5, 5), r"kernel \(0, 0\) must be >= 1"),
    ("kernel_size: 3 stride: 0", (1, 2, 5, 5), r"stride \(0, 0\) must be >= 1"),
    ("kernel_size: 6", (1, 2, 5, 5), "smaller than the kernel"),
    ("kernel_size: 2 axis: 3", (1, 2, 5, 5), "no spatial axis after channel axis 3"),
])
def test_im2col_errors(make_layer, params, shape, match):
    with pytest.raises(CaffeError, match=r"layer 'col' \(Im2col\).*" + match):
        make_layer(f'name: "col" type: "Im2col" convolution_param {{ {params} }}', [shape])


def test_im2col_takes_one_bottom():
    with pytest.raises(CaffeError, match=r"layer 'l2' \(Im2col\) takes exactly 1 bottom\(s\), has 2"):
        Net('layer { name: "in" type: "Input" top: "a" top: "b" input_param { shape { dim: 2 dim: 1 dim: 2 dim: 2 } } }\n'
            'layer { name: "l2" type: "Im2col" bottom: "a" bottom: "b" top: "y" convolution_param { kernel_size: 1 } }')
