"""Split: every top is the bottom; gradients from all tops sum into it (Caffe's SplitLayer backward)."""
import torch


def test_split_tops_and_gradient_sum(make_layer):
    layer = make_layer('name: "s" type: "Split" bottom: "x" top: "a" top: "b" top: "c"', [(2, 3)])
    assert layer.top_shapes == [(2, 3)] * 3
    x = torch.randn(2, 3, requires_grad=True)
    a, b, c = layer(x)
    assert torch.equal(a, x) and torch.equal(b, x) and torch.equal(c, x)
    (a * 1 + b * 2 + c * 3).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((2, 3), 6.0))
