"""EuclideanLoss (Caffe's EuclideanLossLayer): sum((a - b)^2) / (2 N).

Both bottoms have the same first axis N and the same count per item (count(1), Caffe's check);
the shapes may differ otherwise. Both receive gradients, (a - b) / N and -(a - b) / N, as Caffe
(which, unlike its other losses, can back-propagate into the second bottom).
"""
import math

from .base import Layer, register


@register
class EuclideanLoss(Layer):
    type = "EuclideanLoss"
    bottoms = (2, 2)
    is_loss = True

    def reshape(self, bottom_shapes):
        a, b = (tuple(s) for s in bottom_shapes)
        names = list(self.param.bottom) or ["#0", "#1"]
        if not a or not b or a[0] != b[0]:
            raise self.error(f"bottoms '{names[0]}' {a} and '{names[1]}' {b} must have the same first axis N")
        if math.prod(a[1:]) != math.prod(b[1:]):
            raise self.error(f"bottoms '{names[0]}' {a} and '{names[1]}' {b} must have the same number of "
                             f"values per item ({math.prod(a[1:])} vs {math.prod(b[1:])})")
        return [()]

    def forward(self, a, b):
        diff = a - b.reshape(a.shape)
        return (diff * diff).sum() / a.shape[0] / 2.0
