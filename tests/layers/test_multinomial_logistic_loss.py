"""MultinomialLogisticLoss against -sum(log(max(p[label], 1e-20))) / N written out in numpy, with
Caffe's gradient -1 / max(p, 1e-20) / N at the label (also where the threshold clamps)."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError

LAYER = 'name: "loss" type: "MultinomialLogisticLoss" bottom: "prob" bottom: "label" top: "loss"'
THRESHOLD = float(np.float32(1e-20))  # Caffe's kLOG_THRESHOLD is a float


def test_value_and_gradient_with_threshold(make_layer):
    p = np.array([[0.2, 0.7, 0.1], [0.0, 0.5, 0.5], [0.3, 0.3, 0.4]])
    labels = np.array([1.0, 0.0, 2.0])  # sample 1 has probability 0 at its label
    layer = make_layer(LAYER, [p.shape, (3, 1, 1, 1)])
    tp = torch.tensor(p, requires_grad=True)
    loss = layer(tp, torch.from_numpy(labels).reshape(3, 1, 1, 1))
    picked = np.maximum(p[np.arange(3), labels.astype(int)], THRESHOLD)
    np.testing.assert_allclose(loss.item(), -np.log(picked).sum() / 3, rtol=1e-13)
    loss.backward()
    want = np.zeros_like(p)
    want[np.arange(3), labels.astype(int)] = -1.0 / picked / 3
    np.testing.assert_allclose(tp.grad.numpy(), want, rtol=1e-13)
    assert tp.grad[1, 0].item() == pytest.approx(-1.0 / THRESHOLD / 3)


def test_rows_are_count_over_num(make_layer):
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 1.0, (2, 2, 3))  # dim = 6 per item, labels index the flat row
    labels = np.array([5.0, 2.0])
    layer = make_layer(LAYER, [p.shape, labels.shape])
    loss = layer(torch.from_numpy(p), torch.from_numpy(labels))
    flat = p.reshape(2, 6)
    np.testing.assert_allclose(loss.item(), -(np.log(flat[0, 5]) + np.log(flat[1, 2])) / 2, rtol=1e-13)


def test_multinomial_gradcheck(make_layer):
    layer = make_layer(LAYER, [(3, 4), (3,)])
    p = (torch.rand(3, 4, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    labels = torch.tensor([3.0, 0.0, 1.0])
    assert torch.autograd.gradcheck(lambda p: layer(p, labels), (p,))


def test_multinomial_errors(make_layer):
    with pytest.raises(CaffeError, match=r"layer 'loss' \(MultinomialLogisticLoss\): label 'label' has shape "
                                         r"\(3, 2\); it must hold one label per item"):
        make_layer(LAYER, [(3, 4), (3, 2)])
    with pytest.raises(CaffeError, match=r"must have the same first axis N"):
        make_layer(LAYER, [(3, 4), (2,)])
    layer = make_layer(LAYER, [(2, 4), (2,)])
    with pytest.raises(CaffeError, match=r"layer 'loss'.*label 4 is outside \[0, 4\)"):
        layer(torch.full((2, 4), 0.25), torch.tensor([0.0, 4.0]))
