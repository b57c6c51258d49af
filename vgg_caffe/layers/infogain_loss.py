"""InfogainLoss (Caffe's InfogainLossLayer): SoftmaxWithLoss weighted by an infogain matrix H.

Bottoms: scores (logits) with the classes along infogain_loss_param.axis (default 1), labels
(one per position outside that axis), and optionally H as a third bottom; otherwise H is read
once from infogain_loss_param.source, a binary BlobProto. H holds C * C values, row-major
(H[label, class]); the identity gives SoftmaxWithLoss with Caffe's other log threshold. With p
the softmax along the axis:
    loss = -sum over positions not ignored, sum over l of H[label, l] log(max(p_l, 1e-20))
divided by the normaliser of loss_param.normalization (VALID by default; the deprecated
`normalize` is refused, as Caffe). The gradient is Caffe's p * sum_l H[label, l] - H[label, :],
over the same normaliser, also where the threshold clamps the value; nothing flows into the
labels or H. The optional second top returns p.
"""
import math
from typing import List

import numpy as np
import torch

from ..errors import CaffeError
from ..proto import pb, read_binary
from .base import Layer, register
from .softmax import canonical_axis
from .softmax_with_loss import check_label_range, normaliser, with_caffe_gradient


@register
class InfogainLoss(Layer):
    type = "InfogainLoss"
    bottoms = (2, 3)
    tops = (1, 2)
    is_loss = True
    takes_list = True
    __constants__ = ["axis", "has_ignore", "ignore_label", "mode", "two_tops", "h_bottom"]

    def setup(self):
        p = self.param.infogain_loss_param
        self.axis = canonical_axis(self, p.axis, self.bottom_shapes[0])
        lp = self.param.loss_param
        if lp.HasField("normalize"):
            raise self.error('loss_param.normalize is deprecated for InfogainLoss; use "normalization" '
                             "(FULL, VALID, BATCH_SIZE or NONE)")
        self.has_ignore = lp.HasField("ignore_label")
        self.ignore_label = int(lp.ignore_label)
        self.mode = int(lp.normalization)
        self.two_tops = len(self.param.top) == 2
        self.h_bottom = len(self.bottom_shapes) == 3
        matrix = torch.zeros(0)
        if not self.h_bottom:
            if not p.source:
                raise self.error("infogain_loss_param.source (a binary BlobProto holding H) is required "
                                 "when H is not given as a third bottom")
            try:
                blob = read_binary(p.source, pb.BlobProto)
            except CaffeError as e:
                raise self.error(f"infogain_loss_param.source: {e}") from None
            values = np.asarray(blob.double_data if len(blob.double_data) else blob.data, np.float64)
            matrix = torch.from_numpy(values).to(torch.get_default_dtype())
        self.register_buffer("infogain", matrix, persistent=False)

    def reshape(self, bottom_shapes):
        shape, label = tuple(bottom_shapes[0]), tuple(bottom_shapes[1])
        names = list(self.param.bottom) or ["#0", "#1", "#2"]
        axis = canonical_axis(self, self.axis, shape)
        if not label or shape[0] != label[0]:
            raise self.error(f"bottoms '{names[0]}' {shape} and '{names[1]}' {label} must have the same first axis N")
        positions = math.prod(shape[:axis]) * math.prod(shape[axis + 1:])
        if math.prod(label) != positions:
            raise self.error(f"label '{names[1]}' has shape {label} ({math.prod(label)} values) but "
                             f"'{names[0]}' {shape} needs one label per position outside axis {axis}: {positions}")
        classes = shape[axis]
        count = math.prod(bottom_shapes[2]) if self.h_bottom else self.infogain.numel()
        if count != classes * classes:
            where = f"bottom '{names[2]}' {tuple(bottom_shapes[2])}" if self.h_bottom else \
                f"infogain_loss_param.source '{self.param.infogain_loss_param.source}'"
            raise self.error(f"the infogain matrix H ({where}) has {count} values; "
                             f"it must be {classes} x {classes} for the {classes} classes of '{names[0]}' {shape}")
        return [()] + ([shape] if self.two_tops else [])

    def forward(self, bottoms: List[torch.Tensor]) -> List[torch.Tensor]:
        x, label = bottoms[0], bottoms[1]
        outer = 1
        for d in x.shape[:self.axis]:
            outer *= d
        classes = x.shape[self.axis]
        h = bottoms[2] if self.h_bottom else self.infogain
        h = h.detach().reshape(classes, classes).to(x.dtype)
        xr = x.reshape(outer, classes, -1)
        prob = torch.softmax(xr, 1)
        target = label.detach().reshape(outer, -1).long()
        valid = torch.ones_like(target, dtype=torch.bool)
        if self.has_ignore:
            valid = target != self.ignore_label
        if not torch.jit.is_scripting():
            self._check_labels(target, valid, classes)
        safe = torch.where(valid, target, torch.zeros_like(target))
        rows = h[safe].permute(0, 2, 1)                  # H[label] per position: (outer, C, inner)
        p = prob.detach()
        mask = valid.unsqueeze(1).to(x.dtype)
        logs = torch.log(p.clamp(min=9.999999682655225e-21))  # Caffe's kLOG_THRESHOLD (float 1e-20)
        total = -(rows * logs * mask).sum()
        grad = (p * rows.sum(1, keepdim=True) - rows) * mask
        norm = normaliser(self.mode, outer, target.numel(), valid, x)
        loss = with_caffe_gradient(total, xr, grad) / norm
        if self.two_tops:
            return [loss, prob.reshape(x.shape)]
        return [loss]

    @torch.jit.unused
    def _check_labels(self, target, valid, classes):
        check_label_range(self, target, valid, classes)
