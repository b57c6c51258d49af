"""MVN against (x - mean) / (sqrt(var) + eps) per group written out in numpy, OpenCV's importer,
Caffe's backward formula, and float64 finite differences."""
import numpy as np
import pytest
import torch

from opencv_ref import opencv_forward
from vgg_caffe.errors import CaffeError


def mvn_ref(x, normalize_variance, across_channels, eps):
    """Loop over the groups: every (n, c) pair, or every n with across_channels."""
    x4 = x.reshape(x.shape + (1,) * (4 - x.ndim))
    y = np.empty_like(x4)
    for n in range(x4.shape[0]):
        groups = [slice(None)] if across_channels else [slice(c, c + 1) for c in range(x4.shape[1])]
        for g in groups:
            v = x4[n, g]
            d = v - v.mean()
            if normalize_variance:
                d = d / (np.sqrt(np.mean(d ** 2)) + eps)  # eps on the standard deviation
            y[n, g] = d
    return y


@pytest.mark.parametrize("normalize_variance", [True, False])
@pytest.mark.parametrize("across_channels", [False, True])
def test_forward_and_opencv(tmp_path, make_layer, normalize_variance, across_channels):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 3, 4, 5)) * 3 + 2).astype(np.float32)
    text = (f'type: "MVN" mvn_param {{ normalize_variance: {str(normalize_variance).lower()} '
            f'across_channels: {str(across_channels).lower()} eps: 0.01 }}')
    layer = make_layer(f'name: "m" {text}', [x.shape])
    got = layer(torch.from_numpy(x)).numpy()
    want = mvn_ref(x.astype(np.float64), normalize_variance, across_channels, float(np.float32(0.01)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # OpenCV (4.14) puts eps inside the square root, unlike Caffe's mvn_layer.cpp, so it is compared
    # at the default eps (1e-9), where the two placements agree.
    default_eps = text.replace(" eps: 0.01", "")
    ref = opencv_forward(tmp_path, default_eps, {"x": x})
    got = make_layer(f'name: "m" {default_eps}', [x.shape])(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref.reshape(x.shape), rtol=1e-5, atol=1e-6)


def test_eps_is_added_to_the_standard_deviation(make_layer):
    x = np.array([[[1.0, 3.0]]])  # one group: mean 2, std 1
    layer = make_layer('name: "m" type: "MVN" mvn_param { eps: 0.5 }', [x.shape])
    np.testing.assert_allclose(layer(torch.from_numpy(x)).numpy().ravel(), [-1 / 1.5, 1 / 1.5])  # not 1/sqrt(1.5)


@pytest.mark.parametrize("shape,top", [((4, 3), (4, 3, 1, 1)), ((2, 3, 5), (2, 3, 5, 1)), ((6,), (6, 1, 1, 1))])
def test_fewer_axes_give_caffes_4d_top(make_layer, shape, top):
    x = np.random.default_rng(1).standard_normal(shape)
    layer = make_layer('name: "m" type: "MVN" mvn_param { across_channels: true }', [shape])
    assert layer.top_shapes == [top]
    got = layer(torch.from_numpy(x)).numpy()
    assert got.shape == top
    np.testing.assert_array_equal(torch.jit.script(layer)(torch.from_numpy(x)).numpy(), got)
    np.testing.assert_allclose(got, mvn_ref(x, True, True, float(np.float32(1e-9))), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("normalize_variance", [True, False])
def test_gradient_is_caffes(make_layer, normalize_variance):
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.standard_normal((2, 3, 2, 3))).requires_grad_()
    layer = make_layer(f'name: "m" type: "MVN" mvn_param {{ normalize_variance: '
                       f'{str(normalize_variance).lower()} eps: 0.25 }}', [x.shape])
    g = rng.standard_normal(x.shape)
    y = layer(x)
    y.backward(torch.from_numpy(g))
    yn, xn = y.detach().numpy(), x.detach().numpy()
    want = np.empty_like(g)
    for n in range(2):
        for c in range(3):
            gg, yy = g[n, c], yn[n, c]
            if normalize_variance:  # Caffe's Backward_cpu
                want[n, c] = (gg - gg.mean() - (gg * yy).mean() * yy) / (xn[n, c].std() + 0.25)
            else:
                want[n, c] = gg - gg.mean()
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("across_channels", [False, True])
def test_gradcheck(make_layer, across_channels):
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    # With the default eps (1e-9) Caffe's gradient and the forward's derivative agree to ~1e-9.
    layer = make_layer(f'name: "m" type: "MVN" mvn_param {{ across_channels: {str(across_channels).lower()} }}',
                       [x.shape])
    assert torch.autograd.gradcheck(layer, (x,))
    mean_only = make_layer('name: "m" type: "MVN" mvn_param { normalize_variance: false }', [x.shape])
    assert torch.autograd.gradcheck(mean_only, (x,))


def test_constant_group_has_caffes_finite_gradient(make_layer):
    x = torch.ones(1, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    layer = make_layer('name: "m" type: "MVN" mvn_param { eps: 0.5 }', [x.shape])
    y = layer(x)
    assert torch.all(y == 0)
    g = torch.arange(8, dtype=torch.float64).reshape(1, 2, 2, 2)
    y.backward(g)
    want = (g - g.mean(dim=(2, 3), keepdim=True)) / 0.5  # y == 0, std == 0: (dy - mean(dy)) / eps
    torch.testing.assert_close(x.grad, want)


def test_more_than_four_axes_rejected(make_layer):
    with pytest.raises(CaffeError, match=r"layer 'm' \(MVN\): bottom shape \(1, 2, 3, 4, 5\).*1 to 4 axes"):
        make_layer('name: "m" type: "MVN"', [(1, 2, 3, 4, 5)])
