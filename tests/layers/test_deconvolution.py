"""Deconvolution against its definition: each input pixel scatters weight * value into the output."""
import numpy as np
import torch


def deconv_loops(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    full = np.zeros((n, o, (h - 1) * stride + kh, (wd - 1) * stride + kw))
    for i in range(h):
        for j in range(wd):
            full[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw] += np.einsum(
                "nc,cokl->nokl", x[:, :, i, j], w)
    out = full[:, :, pad:full.shape[2] - pad, pad:full.shape[3] - pad]
    return out + b[None, :, None, None]


def test_deconvolution(make_layer):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))
    layer = make_layer('name: "up" type: "Deconvolution" convolution_param { num_output: 2 kernel_size: 4 '
                       'stride: 2 pad: 1 }', [x.shape])
    assert layer.blob_shapes() == [(3, 2, 4, 4), (2,)]  # Caffe's (C_in, num_output/group, kh, kw)
    with torch.no_grad():
        for blob in layer.blobs:
            blob.copy_(torch.from_numpy(rng.standard_normal(tuple(blob.shape))))
    layer.double()
    want = deconv_loops(x, *(blob.detach().numpy() for blob in layer.blobs), stride=2, pad=1)
    assert layer.top_shapes[0] == want.shape == (2, 2, 8, 10)
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(), want, rtol=1e-10)
