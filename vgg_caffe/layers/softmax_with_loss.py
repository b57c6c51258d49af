"""SoftmaxWithLoss (Caffe's SoftmaxWithLossLayer): multinomial logistic loss of the softmax.

loss = -sum over positions of log(max(p[label], FLT_MIN)) / normaliser, positions being every
index outside `axis` (N for a classifier, N*H*W for a dense map), p the float softmax as Caffe's
internal Softmax layer computes it. Labels equal to ignore_label add nothing. The normaliser
follows loss_param.normalization: FULL all positions, VALID those not ignored (the default),
BATCH_SIZE the product of the axes before `axis`, NONE 1; the legacy `normalize` (when
normalization is not set) means VALID if true, BATCH_SIZE if false. Caffe clamps it to at least 1.
The gradient is Caffe's (p - onehot) / normaliser, also where FLT_MIN clamps the value (a
probability that underflowed to 0 costs -log(FLT_MIN) = 87.3365 and still gets gradient p - 1).
Labels may be float (as Caffe stores them) or integer; an optional second top returns p.

This module also holds what Caffe's other loss layers share: the normalisation rule, the
normaliser, and `with_caffe_gradient`, which gives a loss Caffe's hand-written backward where
that differs from the derivative of its forward (clamped logs, Caffe's epsilons).
"""
import math
from typing import List

import torch

from ..proto import pb
from .base import Layer, register
from .softmax import canonical_axis

# FLT_MIN = 1.1754943508222875e-38, written as a literal where used so that TorchScript compiles it.


def loss_normalization(param, unset=None):
    """Caffe's rule for the normalisation mode: normalization if set, else the legacy normalize
    (true VALID, false BATCH_SIZE), else `unset` (the proto default VALID when None)."""
    lp = param.loss_param
    if not lp.HasField("normalization") and lp.HasField("normalize"):
        return pb.LossParameter.VALID if lp.normalize else pb.LossParameter.BATCH_SIZE
    if not lp.HasField("normalization") and unset is not None:
        return unset
    return lp.normalization


def normaliser(mode: int, outer: int, positions: int, valid: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Caffe's get_normalizer, as a 0-d tensor of like's dtype: FULL (0) `positions`, VALID (1)
    the count of `valid`, BATCH_SIZE (2) `outer`, NONE (3) 1; never below 1 (a loss with no
    labels left is 0, not NaN)."""
    if mode == 1:
        return valid.sum().to(like.dtype).clamp(min=1.0)
    n = 1.0
    if mode == 0:
        n = float(positions)
    elif mode == 2:
        n = float(outer)
    return torch.full((), max(n, 1.0), dtype=like.dtype, device=like.device)


def with_caffe_gradient(value: torch.Tensor, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """A scalar equal to `value` (exactly) whose gradient with respect to x is `grad`.

    x - x.detach() is exactly zero for finite x, so nothing is added to the value; the product
    with grad carries Caffe's backward. A straight-through `v + (clamped - v).detach()` would
    instead round away the clamped value when v is huge (logits ~1e10 in float32).
    """
    return value.detach() + (grad.detach() * (x - x.detach())).sum()


def check_label_range(layer, target, valid, classes):
    """Eager-mode check (Caffe only DCHECKs): every label not ignored lies in [0, classes)."""
    if torch.compiler.is_compiling():   # a data-dependent branch would break the compiled graph
        return
    bad = valid & ((target < 0) | (target >= classes))
    if bool(bad.any()):
        raise layer.error(f"label {int(target[bad][0])} is outside [0, {classes})"
                          + ("" if getattr(layer, "has_ignore", False) else " and no ignore_label is set"))


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
        xr = x.reshape(outer, classes, -1)
        prob = torch.softmax(xr, 1)
        target = label.reshape(outer, 1, -1).long()
        valid = torch.ones_like(target, dtype=torch.bool)
        if self.has_ignore:
            valid = target != self.ignore_label
        if not torch.jit.is_scripting():
            self._check_labels(target, valid, classes)
        safe = torch.where(valid, target, torch.zeros_like(target))
        p = prob.detach()
        mask = valid.to(x.dtype)
        picked = torch.log(p.gather(1, safe).clamp(min=1.1754943508222875e-38))
        total = -(picked * mask).sum()
        onehot = torch.zeros_like(p).scatter_(1, safe, 1.0)
        norm = normaliser(self.mode, outer, target.numel(), valid, x)
        loss = with_caffe_gradient(total, xr, (p - onehot) * mask) / norm
        if self.two_tops:
            return [loss, prob.reshape(x.shape)]
        return [loss]

    @torch.jit.unused
    def _check_labels(self, target, valid, classes):
        # On a GPU the check would wait for the device; the solver checks the host labels before
        # the copy and marks the layer (vgg_caffe.train.devices.check_labels).
        if target.device.type != "cpu" and getattr(self, "labels_checked_on_host", False):
            return
        check_label_range(self, target, valid, classes)

    @torch.jit.unused
    def check_host_labels(self, label):
        """The label check on a host tensor before it is copied to the device (the solver calls
        it); afterwards the layer skips its own check on the device, which would wait for it."""
        target = label.reshape(-1).long()
        valid = target != self.ignore_label if self.has_ignore else torch.ones_like(target, dtype=torch.bool)
        check_label_range(self, target, valid, int(self.bottom_shapes[0][self.axis]))
        self.labels_checked_on_host = True
