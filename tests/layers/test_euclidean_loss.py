"""EuclideanLoss against sum((a - b)^2) / (2N) written out in numpy; gradients into both bottoms."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError

LAYER = 'name: "loss" type: "EuclideanLoss" bottom: "pred" bottom: "target" top: "loss"'


def test_value_and_gradients_of_both_bottoms(make_layer):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 6))  # same count per item
    layer = make_layer(LAYER, [a.shape, b.shape])
    assert layer.top_shapes == [()] and layer.is_loss
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    loss = layer(ta, tb)
    diff = a.reshape(4, -1) - b
    np.testing.assert_allclose(loss.item(), (diff ** 2).sum() / 4 / 2, rtol=1e-13)
    (3.0 * loss).backward()  # loss_weight 3
    np.testing.assert_allclose(ta.grad.numpy(), 3.0 * diff.reshape(a.shape) / 4, rtol=1e-13)
    np.testing.assert_allclose(tb.grad.numpy(), -3.0 * diff / 4, rtol=1e-13)


def test_euclidean_gradcheck(make_layer):
    layer = make_layer(LAYER, [(3, 2), (3, 2)])
    a = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (a, b))


@pytest.mark.parametrize("shapes,message", [
    ([(4, 3), (4, 2)], r"'pred' \(4, 3\) and 'target' \(4, 2\) must have the same number of values per item"),
    ([(4, 3), (2, 6)], r"'pred' \(4, 3\) and 'target' \(2, 6\) must have the same first axis N"),
])
def test_euclidean_shape_errors(make_layer, shapes, message):
    with pytest.raises(CaffeError, match=r"layer 'loss' \(EuclideanLoss\): bottoms " + message):
        make_layer(LAYER, shapes)
