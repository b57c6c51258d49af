"""HingeLoss (Caffe's HingeLossLayer): one-vs-all hinge loss of scores, L1 or L2.

The scores bottom is read as N rows of dim = count / N values, the label bottom as one index per
row. With t[n, k] = max(0, 1 + s x[n, k]), s = -1 at the label and +1 elsewhere:
L1 (the default) loss = sum t / N, L2 loss = sum t^2 / N (Caffe does not halve it). The gradient
is Caffe's s * sign(t) / N, resp. 2 s t / N (0 where t is 0); nothing flows into the label.
"""
import math

import torch

from ..proto import pb
from .base import Layer, register
from .softmax_with_loss import check_label_range


@register
class HingeLoss(Layer):
    type = "HingeLoss"
    bottoms = (2, 2)
    is_loss = True
    __constants__ = ["squared"]

    def setup(self):
        norm = self.param.hinge_loss_param.norm
        if norm not in (pb.HingeLossParameter.L1, pb.HingeLossParameter.L2):
            raise self.error(f"hinge_loss_param.norm {norm} is unknown; allowed: L1, L2")
        self.squared = norm == pb.HingeLossParameter.L2

    def reshape(self, bottom_shapes):
        x, label = (tuple(s) for s in bottom_shapes)
        names = list(self.param.bottom) or ["#0", "#1"]
        if not x or not label or x[0] != label[0]:
            raise self.error(f"bottoms '{names[0]}' {x} and '{names[1]}' {label} must have the same first axis N")
        if math.prod(label[1:]) != 1:
            raise self.error(f"label '{names[1]}' has shape {label}; it must hold one label per item")
        return [()]

    def forward(self, x, label):
        num = x.shape[0]
        scores = x.reshape(num, -1)
        target = label.detach().reshape(num, 1).long()
        if not torch.jit.is_scripting():
            self._check_labels(target, scores.shape[1])
        sign = torch.ones_like(scores).scatter_(1, target, -1.0)
        # relu's gradient is 0 at 0, as Caffe's sign(0).
        t = torch.relu(1.0 + sign * scores)
        if self.squared:
            return (t * t).sum() / num
        return t.sum() / num

    @torch.jit.unused
    def _check_labels(self, target, dim):
        check_label_range(self, target, torch.ones_like(target, dtype=torch.bool), dim)
