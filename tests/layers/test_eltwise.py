"""Eltwise PROD, SUM with coeff, and MAX against numpy."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError


@pytest.mark.parametrize("params,fn", [
    ("eltwise_param { operation: PROD }", lambda a, b, c: a * b * c),
    ("", lambda a, b, c: a + b + c),
    ("eltwise_param { operation: SUM coeff: 1 coeff: -2 coeff: 0.5 }", lambda a, b, c: a - 2 * b + 0.5 * c),
    ("eltwise_param { operation: MAX }", lambda a, b, c: np.maximum(np.maximum(a, b), c)),
])
def test_eltwise(make_layer, params, fn):
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((2, 3, 4)) for _ in range(3)]
    layer = make_layer(f'name: "e" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" {params}', [(2, 3, 4)] * 3)
    np.testing.assert_allclose(layer([torch.from_numpy(x) for x in xs]).numpy(), fn(*xs), rtol=1e-12)


def test_eltwise_errors(make_layer):
    with pytest.raises(CaffeError, match="layer 'e'.*identical shapes"):
        make_layer('name: "e" type: "Eltwise" bottom: "a" bottom: "b"', [(2, 3), (2, 4)])
    with pytest.raises(CaffeError, match="one per bottom"):
        make_layer('name: "e" type: "Eltwise" bottom: "a" bottom: "b" eltwise_param { coeff: 1 }', [(2, 3)] * 2)
    with pytest.raises(CaffeError, match="only for operation SUM"):
        make_layer('name: "e" type: "Eltwise" bottom: "a" bottom: "b" eltwise_param { operation: PROD coeff: 1 '
                   'coeff: 1 }', [(2, 3)] * 2)


def test_eltwise_max_ignores_coeff(make_layer):
    # Caffe's LayerSetUp refuses coeff only with PROD; MAX loads and never reads them:
    # top = max(a, b), not max(2a, -b).
    layer = make_layer('name: "e" type: "Eltwise" bottom: "a" bottom: "b" eltwise_param { operation: MAX '
                       'coeff: 2 coeff: -1 }', [(2, 3)] * 2)
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    np.testing.assert_array_equal(layer([torch.from_numpy(a), torch.from_numpy(b)]).numpy(), np.maximum(a, b))


@pytest.mark.parametrize("op", ["PROD", "SUM", "MAX"])
def test_eltwise_gradcheck(make_layer, op):
    layer = make_layer(f'name: "e" type: "Eltwise" bottom: "a" bottom: "b" eltwise_param {{ operation: {op} }}',
                       [(3, 4)] * 2)
    a = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: layer([a, b]), (a, b))


def test_eltwise_max_gradient_follows_caffes_mask_on_ties(make_layer):
    # Caffe: bottom 1 wins a tie with bottom 0 (a > b is false), a later bottom never wins a tie.
    layer = make_layer('name: "e" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" '
                       'eltwise_param { operation: MAX }', [(5,)] * 3)
    a = torch.tensor([1.0, 2.0, 5.0, 0.0, 4.0], requires_grad=True)
    b = torch.tensor([1.0, 3.0, 5.0, 0.0, 1.0], requires_grad=True)
    c = torch.tensor([0.0, 3.0, 5.0, 1.0, 4.0], requires_grad=True)
    layer([a, b, c]).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(b.grad.numpy(), [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(c.grad.numpy(), [0, 0, 0, 1, 0])


@pytest.mark.parametrize("stable", ["true", "false"])
def test_eltwise_prod_gradient_is_the_product_of_the_others(make_layer, stable):
    # Caffe's stable_prod_grad false computes top / bottom: the same value for non-zero bottoms.
    layer = make_layer(f'name: "e" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" eltwise_param {{ '
                       f'operation: PROD stable_prod_grad: {stable} }}', [(5,)] * 3)
    xs = [torch.randn(5, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    top = layer(xs)
    grads = torch.autograd.grad(top.sum(), xs)
    for x, g in zip(xs, grads):
        torch.testing.assert_close(g, (top / x).detach())
