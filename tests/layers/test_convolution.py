"""Convolution against a direct loop over output positions (cross-correlation, as Caffe)."""
import numpy as np
import pytest
import torch


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
