"""MultinomialLogisticLoss (Caffe's MultinomialLogisticLossLayer): -log of given probabilities.

The first bottom holds probabilities (N, ...) (a Softmax's output), read as N rows of
dim = count / N values; the label bottom has one value per row (N, 1, 1, 1 or N), an index into
the row. loss = -sum_n log(max(p[n, label_n], kLOG_THRESHOLD)) / N with Caffe's
kLOG_THRESHOLD = 1e-20 in float. The gradient is Caffe's -1 / max(p, 1e-20) / N at the label
(also where the threshold clamps the value) and 0 elsewhere; nothing flows into the label.
No ignore_label or normalization: Caffe's layer has neither.
"""
import math

import torch

from .base import Layer, register
from .softmax_with_loss import check_label_range, with_caffe_gradient

# kLOG_THRESHOLD is a C++ float: 1e-20 rounded to float32, 9.999999682655225e-21, written as a
# literal where used so that TorchScript compiles it.


@register
class MultinomialLogisticLoss(Layer):
    type = "MultinomialLogisticLoss"
    bottoms = (2, 2)
    is_loss = True

    def reshape(self, bottom_shapes):
        p, label = (tuple(s) for s in bottom_shapes)
        names = list(self.param.bottom) or ["#0", "#1"]
        if not p or not label or p[0] != label[0]:
            raise self.error(f"bottoms '{names[0]}' {p} and '{names[1]}' {label} must have the same first axis N")
        if math.prod(label[1:]) != 1:
            raise self.error(f"label '{names[1]}' has shape {label}; it must hold one label per item (N, 1, 1, 1)")
        return [()]

    def forward(self, prob, label):
        num = prob.shape[0]
        p = prob.reshape(num, -1)
        target = label.detach().reshape(num, 1).long()
        if not torch.jit.is_scripting():
            self._check_labels(target, p.shape[1])
        picked = p.detach().gather(1, target).clamp(min=9.999999682655225e-21)
        value = -torch.log(picked).sum() / num
        grad = torch.zeros_like(p).scatter_(1, target, -1.0 / picked / num)
        return with_caffe_gradient(value, p, grad)

    @torch.jit.unused
    def _check_labels(self, target, dim):
        check_label_range(self, target, torch.ones_like(target, dtype=torch.bool), dim)
