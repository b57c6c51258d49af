"""Accuracy (Caffe's AccuracyLayer): the fraction of positions whose true class is in the top k.

A position is correct when fewer than top_k other classes score >= the true class's score, so
ties count against the prediction, exactly as Caffe. Positions whose label equals ignore_label are
left out of both counts; with none left the accuracy is 0. The optional second top holds the
accuracy per class (0 for classes with no positions). Labels may be float or integer.
"""
import math
from typing import List

import torch

from .base import Layer, register
from .softmax import canonical_axis


@register
class Accuracy(Layer):
    type = "Accuracy"
    fp32_only = True  # compared in float32 under bf16 autocast (vgg_caffe.precision)
    bottoms = (2, 2)
    tops = (1, 2)
    __constants__ = ["axis", "top_k", "has_ignore", "ignore_label", "two_tops"]

    def setup(self):
        p = self.param.accuracy_param
        self.axis = canonical_axis(self, p.axis, self.bottom_shapes[0])
        self.top_k = int(p.top_k)
        self.has_ignore = p.HasField("ignore_label")
        self.ignore_label = int(p.ignore_label)
        self.two_tops = len(self.param.top) == 2

    def reshape(self, bottom_shapes):
        shape, label = tuple(bottom_shapes[0]), tuple(bottom_shapes[1])
        axis = canonical_axis(self, self.axis, shape)
        if self.top_k > shape[axis]:
            raise self.error(f"top_k ({self.top_k}) exceeds the {shape[axis]} classes of '{self.param.bottom[0]}'")
        positions = math.prod(shape[:axis]) * math.prod(shape[axis + 1:])
        if math.prod(label) != positions:
            raise self.error(f"label '{self.param.bottom[1]}' has shape {label} ({math.prod(label)} values) but "
                             f"'{self.param.bottom[0]}' {shape} needs one label per position: {positions}")
        return [()] + ([(shape[axis],)] if self.two_tops else [])

    def forward(self, x, label) -> List[torch.Tensor]:
        outer = 1
        for d in x.shape[:self.axis]:
            outer *= d
        classes = x.shape[self.axis]
        scores = x.detach().reshape(outer, classes, -1)
        target = label.detach().reshape(outer, 1, -1).long()
        valid = torch.ones_like(target, dtype=torch.bool)
        if self.has_ignore:
            valid = target != self.ignore_label
        safe = torch.where(valid, target, torch.zeros_like(target)).clamp(0, classes - 1)
        true_score = scores.gather(1, safe)
        # Classes other than the true one scoring at least as high (the true one always does).
        rivals = (scores >= true_score).sum(1, keepdim=True) - 1
        correct = (rivals < self.top_k) & valid
        count = valid.sum()
        accuracy = torch.where(count > 0, correct.sum().to(x.dtype) / count.clamp(min=1).to(x.dtype),
                               torch.zeros((), dtype=x.dtype, device=x.device))
        if not self.two_tops:
            return [accuracy]
        flat = safe[valid]
        per_total = torch.zeros(classes, dtype=x.dtype, device=x.device).index_add_(
            0, flat, torch.ones_like(flat, dtype=x.dtype))
        per_correct = torch.zeros(classes, dtype=x.dtype, device=x.device).index_add_(
            0, flat, correct[valid].to(x.dtype))
        per_class = torch.where(per_total > 0, per_correct / per_total.clamp(min=1), torch.zeros_like(per_total))
        return [accuracy, per_class]
