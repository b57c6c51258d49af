"""LRN against Caffe's formulas written out as loops, with k != 1 (the paper's A-LRN uses k=2)."""
import numpy as np
import pytest
import torch


def lrn_across(x, n, alpha, beta, k):
    y = np.empty_like(x)
    c = x.shape[1]
    for ch in range(c):
        lo, hi = max(0, ch - (n - 1) // 2), min(c, ch - (n - 1) // 2 + n)
        scale = k + alpha / n * (x[:, lo:hi] ** 2).sum(axis=1)
        y[:, ch] = x[:, ch] * scale ** -beta
    return y


def lrn_within(x, n, alpha, beta):
    _, _, h, w = x.shape
    p = (n - 1) // 2
    y = np.empty_like(x)
    for i in range(h):
        for j in range(w):
            win = x[:, :, max(0, i - p):min(h, i - p + n), max(0, j - p):min(w, j - p + n)]
            scale = 1 + alpha * (win ** 2).sum(axis=(2, 3)) / (n * n)
            y[:, :, i, j] = x[:, :, i, j] * scale ** -beta
    return y


@pytest.mark.parametrize("n,alpha,beta,k", [(5, 1e-4, 0.75, 2.0), (3, 0.5, 0.6, 1.5), (9, 1e-2, 0.75, 2.0), (5, 2.0, 0.75, 1.0)])
def test_lrn_across_channels(make_layer, n, alpha, beta, k):
    x = np.random.default_rng(n).standard_normal((2, 7, 3, 4)) * 3
    layer = make_layer(f'name: "norm1" type: "LRN" lrn_param {{ local_size: {n} alpha: {alpha} beta: {beta} '
                       f'k: {k} }}', [x.shape])
    got = layer(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, lrn_across(x, n, alpha, beta, k), rtol=1e-6)


def test_lrn_k_matters(make_layer):
    x = torch.randn(1, 5, 2, 2, dtype=torch.float64)
    a = make_layer('name: "n" type: "LRN" lrn_param { k: 1 }', [x.shape])(x)
    b = make_layer('name: "n" type: "LRN" lrn_param { k: 2 }', [x.shape])(x)
    assert not torch.allclose(a, b)


def test_lrn_within_channel(make_layer):
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 5)) * 2
    layer = make_layer('name: "n" type: "LRN" lrn_param { local_size: 3 alpha: 0.7 beta: 0.8 k: 5 '
                       'norm_region: WITHIN_CHANNEL }', [x.shape])
    np.testing.assert_allclose(layer(torch.from_numpy(x)).numpy(), lrn_within(x, 3, 0.7, 0.8), rtol=1e-6)


def test_lrn_even_size_rejected(make_layer):
    from vgg_caffe.errors import CaffeError
    with pytest.raises(CaffeError, match="layer 'n'.*odd"):
        make_layer('name: "n" type: "LRN" lrn_param { local_size: 4 }', [(1, 3, 2, 2)])


@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
def test_lrn_gradcheck(make_layer, region):
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    layer = make_layer(f'name: "n" type: "LRN" lrn_param {{ local_size: 3 alpha: 0.5 k: 2 norm_region: {region} }}',
                       [x.shape])
    assert torch.autograd.gradcheck(layer, (x,))
