"""HingeLoss against Caffe's one-vs-all hinge written out in numpy loops (L1 and L2), its gradient,
and float64 gradcheck away from the kinks."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError


def reference(x, labels, norm):
    num = x.shape[0]
    scores = x.reshape(num, -1)
    total = 0.0
    for n in range(num):
        for k in range(scores.shape[1]):
            s = -1.0 if k == int(labels[n]) else 1.0
            t = max(0.0, 1.0 + s * scores[n, k])
            total += t if norm == "L1" else t * t
    return total / num


def _layer(make_layer, norm, shapes):
    return make_layer(f'name: "loss" type: "HingeLoss" bottom: "score" bottom: "label" top: "loss" '
                      f'hinge_loss_param {{ norm: {norm} }}', shapes)


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_value_and_gradient(make_layer, norm):
    rng = np.random.default_rng(0)
    x = 1.5 * rng.standard_normal((4, 5))
    labels = np.array([0.0, 4.0, 2.0, 2.0])
    layer = _layer(make_layer, norm, [x.shape, labels.shape])
    tx = torch.tensor(x, requires_grad=True)
    loss = layer(tx, torch.from_numpy(labels))
    np.testing.assert_allclose(loss.item(), reference(x, labels, norm), rtol=1e-13)
    loss.backward()
    sign = np.ones_like(x)
    sign[np.arange(4), labels.astype(int)] = -1
    t = np.maximum(0, 1 + sign * x)
    want = sign * np.sign(t) / 4 if norm == "L1" else 2 * sign * t / 4
    np.testing.assert_allclose(tx.grad.numpy(), want, rtol=1e-13)


def test_default_norm_is_l1(make_layer):
    x, labels = np.array([[0.5, -0.2, 2.0]]), np.array([2.0])
    layer = make_layer('name: "loss" type: "HingeLoss" bottom: "s" bottom: "l"', [x.shape, labels.shape])
    assert layer(torch.from_numpy(x), torch.from_numpy(labels)).item() == pytest.approx(reference(x, labels, "L1"))


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_gradcheck(make_layer, norm):
    layer = _layer(make_layer, norm, [(3, 4), (3,)])
    # Scores well away from the kinks at s x = -1.
    x = torch.tensor([[0.3, -2.5, 0.1, 1.7], [-0.4, 0.6, 2.2, -3.0], [0.8, 0.2, -0.5, 0.05]],
                     dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1.0, 2.0, 0.0])
    assert torch.autograd.gradcheck(lambda x: layer(x, labels), (x,))


def test_hinge_errors(make_layer):
    with pytest.raises(CaffeError, match=r"layer 'loss' \(HingeLoss\): label 'label' has shape \(3, 4\)"):
        _layer(make_layer, "L1", [(3, 4), (3, 4)])
    with pytest.raises(CaffeError, match=r"same first axis N"):
        _layer(make_layer, "L2", [(3, 4), (4,)])
    layer = _layer(make_layer, "L1", [(2, 3), (2,)])
    with pytest.raises(CaffeError, match=r"label -1 is outside \[0, 3\)"):
        layer(torch.zeros(2, 3), torch.tensor([-1.0, 0.0]))
