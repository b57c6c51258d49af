"""SigmoidCrossEntropyLoss against Caffe's stable formula written out in numpy, its rule for the
normalisation mode (BATCH_SIZE unless normalization or the legacy normalize says otherwise),
ignore_label, and the gradient (sigmoid(x) - t) / normaliser."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError


def reference(x, t, ignore=None, norm="BATCH_SIZE"):
    total, valid = 0.0, 0
    for xi, ti in zip(x.ravel(), t.ravel()):
        if ignore is not None and int(ti) == ignore:
            continue
        pos = 1.0 if xi >= 0 else 0.0
        total -= xi * (ti - pos) - np.log(1 + np.exp(xi - 2 * xi * pos))
        valid += 1
    denom = {"FULL": x.size, "VALID": valid, "BATCH_SIZE": x.shape[0], "NONE": 1}[norm]
    return total / max(denom, 1), valid


def _layer(make_layer, loss_param, shapes):
    return make_layer('name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" top: "loss" '
                      + loss_param, shapes)


def _data(seed):
    rng = np.random.default_rng(seed)
    x = 4 * rng.standard_normal((3, 2, 4))
    t = rng.uniform(0, 1, (3, 2, 4))
    t[0, 0, :2] = -1  # ignored where loss_param.ignore_label is -1
    return x, t


@pytest.mark.parametrize("loss_param,norm", [
    ("", "BATCH_SIZE"),                                              # no loss_param at all
    ("loss_param { ignore_label: -1 }", "BATCH_SIZE"),               # loss_param without a mode
    ("loss_param { ignore_label: -1 normalize: true }", "VALID"),
    ("loss_param { ignore_label: -1 normalize: false }", "BATCH_SIZE"),
    ("loss_param { ignore_label: -1 normalization: VALID }", "VALID"),
    ("loss_param { ignore_label: -1 normalization: FULL normalize: false }", "FULL"),
    ("loss_param { ignore_label: -1 normalization: NONE }", "NONE"),
])
def test_normalisation_rule_value_and_gradient(make_layer, loss_param, norm):
    x, t = _data(0)
    ignore = -1 if "ignore_label" in loss_param else None
    if ignore is None:
        t = np.abs(t)
    layer = _layer(make_layer, loss_param, [x.shape, t.shape])
    tx = torch.tensor(x, requires_grad=True)
    loss = layer(tx, torch.from_numpy(t))
    want, valid = reference(x, t, ignore, norm)
    np.testing.assert_allclose(loss.item(), want, rtol=1e-12)
    loss.backward()
    denom = max({"FULL": x.size, "VALID": valid, "BATCH_SIZE": 3, "NONE": 1}[norm], 1)
    grad = (1 / (1 + np.exp(-x)) - t) / denom
    if ignore is not None:
        grad[t.astype(int) == ignore] = 0
    np.testing.assert_allclose(tx.grad.numpy(), grad, atol=1e-14)


def test_stable_for_large_logits_in_float32(make_layer):
    x = torch.tensor([[80.0, -80.0, 0.0, 200.0]], requires_grad=True)
    t = torch.tensor([[0.0, 1.0, 1.0, 1.0]])
    layer = _layer(make_layer, "", [(1, 4), (1, 4)])
    loss = layer(x, t)
    assert loss.dtype == torch.float32
    np.testing.assert_allclose(loss.item(), 80 + 80 + np.log(2), rtol=1e-6)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), [[1.0, -1.0, -0.5, 0.0]], atol=1e-7)


def test_sigmoid_cross_entropy_gradcheck(make_layer):
    layer = _layer(make_layer, "loss_param { ignore_label: 7 normalization: VALID }", [(2, 3), (2, 3)])
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0.2, 7.0, 1.0], [0.0, 0.5, 0.9]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: layer(x, t), (x,))


def test_sigmoid_cross_entropy_shape_errors(make_layer):
    with pytest.raises(CaffeError, match=r"layer 'loss' \(SigmoidCrossEntropyLoss\): bottoms 'x' \(2, 3\) and "
                                         r"'t' \(2, 4\) must have the same count"):
        _layer(make_layer, "", [(2, 3), (2, 4)])
    with pytest.raises(CaffeError, match=r"same first axis N"):
        _layer(make_layer, "", [(2, 3), (3, 2)])
