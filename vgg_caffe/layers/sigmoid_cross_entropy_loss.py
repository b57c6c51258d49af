"""SigmoidCrossEntropyLoss (Caffe's SigmoidCrossEntropyLossLayer): logistic loss of logits x
against targets t in [0, 1] (same count), in Caffe's numerically stable form

    loss = -sum over elements not ignored of  x (t - [x >= 0]) - log(1 + exp(x - 2 x [x >= 0]))

divided by the normaliser. Caffe's rule for the mode differs from the other losses: normalization
if set, else the legacy normalize (true VALID, false BATCH_SIZE), else BATCH_SIZE (the first
axis), also when loss_param is given without either. Elements whose int(t) equals
loss_param.ignore_label add nothing and count as not valid. The gradient is Caffe's
(sigmoid(x) - t) / normaliser, 0 at ignored elements, sigmoid computed as Caffe's Sigmoid layer,
0.5 tanh(x / 2) + 0.5; nothing flows into the targets.
"""
import math

import torch

from ..proto import pb
from .base import Layer, register
from .softmax_with_loss import loss_normalization, normaliser, with_caffe_gradient


@register
class SigmoidCrossEntropyLoss(Layer):
    type = "SigmoidCrossEntropyLoss"
    bottoms = (2, 2)
    is_loss = True
    __constants__ = ["has_ignore", "ignore_label", "mode"]

    def setup(self):
        lp = self.param.loss_param
        self.has_ignore = lp.HasField("ignore_label")
        self.ignore_label = int(lp.ignore_label)
        self.mode = int(loss_normalization(self.param, unset=pb.LossParameter.BATCH_SIZE))

    def reshape(self, bottom_shapes):
        x, t = (tuple(s) for s in bottom_shapes)
        names = list(self.param.bottom) or ["#0", "#1"]
        if not x or not t or x[0] != t[0]:
            raise self.error(f"bottoms '{names[0]}' {x} and '{names[1]}' {t} must have the same first axis N")
        if math.prod(x) != math.prod(t):
            raise self.error(f"bottoms '{names[0]}' {x} and '{names[1]}' {t} must have the same count "
                             f"({math.prod(x)} vs {math.prod(t)}): one target per prediction")
        return [()]

    def forward(self, x, target):
        t = target.detach().reshape(x.shape).to(x.dtype)
        xd = x.detach()
        pos = (xd >= 0).to(x.dtype)
        term = xd * (t - pos) - torch.log(1.0 + torch.exp(xd - 2.0 * xd * pos))
        valid = torch.ones_like(xd, dtype=torch.bool)
        if self.has_ignore:
            valid = t.to(torch.int64) != self.ignore_label
        value = -torch.where(valid, term, torch.zeros_like(term)).sum()
        sigmoid = 0.5 * torch.tanh(0.5 * xd) + 0.5
        grad = torch.where(valid, sigmoid - t, torch.zeros_like(t))
        norm = normaliser(self.mode, x.shape[0], x.numel(), valid, x)
        return with_caffe_gradient(value, x, grad) / norm
