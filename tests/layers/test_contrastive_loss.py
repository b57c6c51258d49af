"""ContrastiveLoss against Caffe's formulas written out in numpy (margin, legacy_version), its
hand-written gradient (with the 1e-4 in the dissimilar-pair denominator), and gradcheck."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError


def reference(a, b, y, margin=1.0, legacy=False):
    """Caffe's value and its backward for a (the gradient of b is the negative)."""
    num = a.shape[0]
    a2, b2 = a.reshape(num, -1), b.reshape(num, -1)
    loss, grad = 0.0, np.zeros_like(a2)
    for n in range(num):
        diff = a2[n] - b2[n]
        d2 = diff @ diff
        if int(y.ravel()[n]):
            loss += d2
            grad[n] = diff / num
        elif legacy:
            loss += max(margin - d2, 0.0)
            grad[n] = -diff / num if margin - d2 > 0 else 0
        else:
            d = np.sqrt(d2)
            loss += max(margin - d, 0.0) ** 2
            grad[n] = -(margin - d) / (d + 1e-4) * diff / num if margin - d > 0 else 0
    return loss / num / 2, grad.reshape(a.shape)


def _layer(make_layer, param, shapes):
    return make_layer('name: "loss" type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "sim" top: "loss" '
                      + param, shapes)


def _pairs(seed, n=6):
    rng = np.random.default_rng(seed)
    a, b = 0.4 * rng.standard_normal((n, 3, 1, 1)), 0.4 * rng.standard_normal((n, 3, 1, 1))
    y = np.array([1, 0, 0, 1, 0, 0], float).reshape(n, 1, 1, 1)
    b[2] = a[2] + 3.0  # a dissimilar pair beyond the margin: no loss, no gradient
    return a, b, y


@pytest.mark.parametrize("param,margin,legacy", [
    ("", 1.0, False),
    ("contrastive_loss_param { margin: 2.0 }", 2.0, False),
    ("contrastive_loss_param { legacy_version: true }", 1.0, True),
    ("contrastive_loss_param { margin: 1.5 legacy_version: true }", 1.5, True),
])
def test_value_and_caffe_gradient(make_layer, param, margin, legacy):
    a, b, y = _pairs(0)
    layer = _layer(make_layer, param, [a.shape, b.shape, y.shape])
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    loss = layer(ta, tb, torch.from_numpy(y))
    want, grad = reference(a, b, y, margin, legacy)
    np.testing.assert_allclose(loss.item(), want, rtol=1e-12)
    loss.backward()
    np.testing.assert_allclose(ta.grad.numpy(), grad, atol=1e-14)
    np.testing.assert_allclose(tb.grad.numpy(), -grad, atol=1e-14)
    assert not np.any(ta.grad.numpy()[2])


def test_identical_dissimilar_pair_has_finite_gradient(make_layer):
    # d = 0: the derivative of (margin - d)^2 is undefined; Caffe's 1e-4 makes it (a - b) * ... = 0.
    a = torch.ones(1, 2, 1, 1, dtype=torch.float64, requires_grad=True)
    layer = _layer(make_layer, "", [(1, 2, 1, 1)] * 2 + [(1, 1, 1, 1)])
    loss = layer(a, a.detach().clone(), torch.zeros(1, 1, 1, 1))
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    assert torch.all(a.grad == 0)


def test_legacy_gradcheck_and_new_form_against_finite_differences(make_layer):
    a, b, y = (torch.from_numpy(v) for v in _pairs(1))
    ta, tb = a.clone().requires_grad_(), b.clone().requires_grad_()
    legacy = _layer(make_layer, "contrastive_loss_param { legacy_version: true }", [a.shape, b.shape, y.shape])
    assert torch.autograd.gradcheck(lambda a, b: legacy(a, b, y), (ta, tb))
    # The new form's gradient is the derivative times d / (d + 1e-4) on dissimilar pairs.
    layer = _layer(make_layer, "", [a.shape, b.shape, y.shape])
    layer(ta, tb, y).backward()
    eps, numeric = 1e-6, np.zeros(a.shape)
    for idx in np.ndindex(*a.shape):
        up, down = a.clone(), a.clone()
        up[idx] += eps
        down[idx] -= eps
        numeric[idx] = (layer(up, b, y).item() - layer(down, b, y).item()) / (2 * eps)
    d = np.sqrt(((a - b).reshape(6, -1).numpy() ** 2).sum(1)).reshape(6, 1, 1, 1)
    scale = np.where(y.numpy() != 0, 1.0, d / (d + 1e-4))
    np.testing.assert_allclose(ta.grad.numpy(), numeric * scale, atol=1e-8)


@pytest.mark.parametrize("shapes,message", [
    ([(4, 3, 1, 1), (4, 2, 1, 1), (4, 1, 1, 1)], r"bottoms 'a' \(4, 3, 1, 1\) and 'b' \(4, 2, 1, 1\) must both be"),
    ([(4, 3, 2, 1), (4, 3, 2, 1), (4, 1, 1, 1)], r"bottoms 'a' \(4, 3, 2, 1\) and 'b' \(4, 3, 2, 1\) must both be \(N, C, 1, 1\)"),
    ([(4, 3), (4, 3), (4, 2)], r"bottom 'sim' \(similarity\) has shape \(4, 2\)"),
    ([(4, 3), (4, 3), (3,)], r"bottoms 'a' \(4, 3\), 'b' \(4, 3\) and 'sim' \(3,\) must have the same first axis N"),
    ([(4, 3, 1, 1, 1), (4, 3), (4,)], r"bottom 'a' has shape \(4, 3, 1, 1, 1\); .*at most 4 axes"),
])
def test_contrastive_shape_errors(make_layer, shapes, message):
    with pytest.raises(CaffeError, match=r"layer 'loss' \(ContrastiveLoss\): " + message):
        _layer(make_layer, "", shapes)
