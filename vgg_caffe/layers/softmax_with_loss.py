"""SoftmaxWithLoss (Caffe's SoftmaxWithLossLayer): multinomial logistic loss of the softmax.

loss = -sum over positions of log(max(p[label], FLT_MIN)) / normaliser, positions being every
index outside `axis` (N for a classifier, N*H*W for a dense map). Labels equal to ignore_label
add nothing. The normaliser follows loss_param.normalization: FULL all positions, VALID those not
ignored (the default), BATCH_SIZE the product of the axes before `axis`, NONE 1; the legacy
`normalize` (when normalization is not set) means VALID if true, BATCH_SIZE if false. Caffe clamps
it to at least 1. The gradient is Caffe's (p - onehot) / normaliser even where FLT_MIN clamps the
value. Labels may be float (as Caffe stores them) or integer; an optional second top returns p.
"""
import math
from typing import List

import torch

from ..proto import pb
from .base import Layer, register
from .softmax import canonical_axis

# log(FLT_MIN) = -87.3365447505531, written as a literal where used so that TorchScript compiles it.


def loss_normalization(param):
    lp = param.loss_param
    if not lp.HasField("normalization") and lp.HasField("normalize"):
        return pb.LossParameter.VALID if lp.normalize else pb.LossParameter.BATCH_SIZE
    return lp.normalization


@register
class SoftmaxWithLoss(Layer):
    type = "SoftmaxWithLoss"
    bottoms = (2, 2)
    tops = (1, 2)
    is_loss = True
    __constants__ = ["axis", "has_ignore", "ignore_label", "mode", "two_tops"]

    def setup(self):
        self.axis = canonical_axis(self, self.param.softmax_param.axis, self.bottom_shapes[0])
        lp = self.param.loss_param
        self.has_ignore = lp.HasField("ignore_label")
        self.ignore_label = int(lp.ignore_label)
        self.mode = int(loss_normalization(self.param))
        self.two_tops = len(self.param.top) == 2

    def reshape(self, bottom_shapes):
        shape, label = tuple(bottom_shapes[0]), tuple(bottom_shapes[1])
        axis = canonical_axis(self, self.axis, shape)
        positions = math.prod(shape[:axis]) * math.prod(shape[axis + 1:])
        if math.prod(label) != positions:
            raise self.error(f"label '{self.param.bottom[1]}' has shape {label} ({math.prod(label)} values) but "
                             f"'{self.param.bottom[0]}' {shape} needs one label per position outside axis "
                             f"{axis}: {positions}")
        return [()] + ([shape] if self.two_tops else [])

    def forward(self, x, label) -> List[torch.Tensor]:
        outer = 1
        for d in x.shape[:self.axis]:
            outer *= d
        classes = x.shape[self.axis]
        logp = torch.log_softmax(x, self.axis).reshape(outer, classes, -1)
        # Caffe's log(max(p, FLT_MIN)) in the value, its unclamped (p - onehot) in the gradient.
        logp = logp + (logp.clamp(min=-87.33654475055310) - logp).detach()
        target = label.reshape(outer, 1, -1).long()
        valid = torch.ones_like(target, dtype=torch.bool)
        if self.has_ignore:
            valid = target != self.ignore_label
        if not torch.jit.is_scripting():
            self._check_labels(target, valid, classes)
        picked = logp.gather(1, torch.where(valid, target, torch.zeros_like(target)))
        total = -(picked * valid.to(logp.dtype)).sum()
        loss = total / self._normaliser(outer, target.numel(), valid)
        if self.two_tops:
            return [loss, torch.softmax(x, self.axis)]
        return [loss]

    def _normaliser(self, outer: int, positions: int, valid: torch.Tensor) -> torch.Tensor:
        if self.mode == 0:  # FULL
            n = float(positions)
        elif self.mode == 1:  # VALID
            return valid.sum().to(torch.float32).clamp(min=1.0)
        elif self.mode == 2:  # BATCH_SIZE
            n = float(outer)
        else:  # NONE
            n = 1.0
        return torch.tensor(max(n, 1.0))

    @torch.jit.unused
    def _check_labels(self, target, valid, classes):
        bad = valid & ((target < 0) | (target >= classes))
        if bool(bad.any()):
            raise self.error(f"label {int(target[bad][0])} is outside [0, {classes})"
                             + ("" if self.has_ignore else " and no ignore_label is set"))
