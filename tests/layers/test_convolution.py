"""Convolution against a direct loop over output positions (cross-correlation, as Caffe)."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError


def conv_loops(x, w, b, stride, pad, group):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh, ow = (h + 2 * pad[0] - kh) // stride[0] + 1, (wd + 2 * pad[1] - kw) // stride[1] + 1
    y = np.zeros((n, o, oh, ow))
    per = o // group
    for f in range(o):
        g = f // per
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg:(g + 1) * cg, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
                y[:, f, i, j] = (patch * w[f]).sum(axis=(1, 2, 3)) + (b[f] if b is not None else 0)
    return y


@pytest.mark.parametrize("params,stride,pad,group", [
    ("kernel_size: 3 pad: 1", (1, 1), (1, 1), 1),
    ("kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0 group: 2", (2, 1), (1, 0), 2),
])
def test_convolution(make_layer, params, stride, pad, group):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 6))
    layer = make_layer(f'name: "conv" type: "Convolution" convolution_param {{ num_output: 6 {params} }}', [x.shape])
    with torch.no_grad():
        for blob in layer.blobs:
            blob.copy_(torch.from_numpy(rng.standard_normal(tuple(blob.shape))))
    layer.double()
    w, b = (blob.detach().numpy() for blob in layer.blobs)
    want = conv_loops(x, w, b, stride, pad, group)
    assert layer.top_shapes[0] == want.shape
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(), want, rtol=1e-10)


def test_convolution_dilation_and_axis_minus_3(make_layer):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 9, 8))
    layer = make_layer('name: "conv" type: "Convolution" convolution_param { num_output: 3 kernel_size: 3 '
                       'dilation: 2 axis: -3 engine: CAFFE force_nd_im2col: true }', [x.shape])
    with torch.no_grad():
        for blob in layer.blobs:
            blob.copy_(torch.from_numpy(rng.standard_normal(tuple(blob.shape))))
    layer.double()
    w, b = (blob.detach().numpy() for blob in layer.blobs)
    dilated = np.zeros((3, 2, 5, 5))
    dilated[:, :, ::2, ::2] = w  # a dilated kernel is the kernel with zeros between its taps
    want = conv_loops(x, dilated, b, (1, 1), (0, 0), 1)
    assert layer.top_shapes[0] == want.shape == (1, 3, 5, 4)
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(), want, rtol=1e-10)


BAD = [
    ("kernel_size: 3", (1, 2, 5, 5), "num_output is required"),
    ("num_output: 2 kernel_size: 3 axis: 2", (1, 2, 5, 5), "axis 2: only channel axis 1"),
    ("num_output: 2 kernel_size: 3", (1, 2, 5, 5, 5), "expects a 4-d bottom.*N-d convolution is not supported"),
    ("num_output: 2 kernel_size: 3 kernel_h: 3 kernel_w: 3", (1, 2, 5, 5), "kernel_size or kernel_h and kernel_w"),
    ("num_output: 2 kernel_size: 3 stride: 2 stride_h: 2", (1, 2, 5, 5), "stride or stride_h and stride_w"),
    ("num_output: 2 kernel_h: 3", (1, 2, 5, 5), r"kernel \(3, 0\) must be positive"),
    ("num_output: 2 kernel_size: 3 stride: 0", (1, 2, 5, 5), r"stride \(0, 0\) must be positive"),
    ("num_output: 2 kernel_size: 3 group: 0", (1, 2, 5, 5), r"group \(0,\) must be positive"),
    ("num_output: 3 kernel_size: 3 group: 2", (1, 2, 5, 5), "must divide by group"),
]


# A deconvolution grows its input, so only a convolution has a kernel too large for it.
@pytest.mark.parametrize("type_name,params,shape,match",
                         [("Convolution",) + b for b in BAD] + [("Deconvolution",) + b for b in BAD]
                         + [("Convolution", "num_output: 2 kernel_size: 6", (1, 2, 5, 5), "smaller than the kernel")])
def test_convolution_parameter_errors(make_layer, type_name, params, shape, match):
    with pytest.raises(CaffeError, match=f"layer 'conv' \\({type_name}\\).*" + match):
        make_layer(f'name: "conv" type: "{type_name}" convolution_param {{ {params} }}', [shape])


@pytest.mark.parametrize("type_name", ["Convolution", "Deconvolution"])
def test_convolution_gradcheck(make_layer, type_name):
    layer = make_layer(f'name: "conv" type: "{type_name}" convolution_param {{ num_output: 4 kernel_size: 3 '
                       'stride: 2 pad: 1 group: 2 dilation: 1 }', [(1, 2, 5, 4)])
    with torch.no_grad():
        for blob in layer.blobs:
            blob.normal_()
    layer.double()
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: torch.func.functional_call(
        layer, {"blobs.0": w, "blobs.1": b}, (x,)), (x, layer.blobs[0], layer.blobs[1]))
