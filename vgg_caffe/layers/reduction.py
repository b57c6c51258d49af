"""Reduction (Caffe's ReductionLayer): reduces every axis from `axis` on to one number.

operation SUM, ASUM (sum of |x|), SUMSQ (sum of x^2) or MEAN, times `coeff` (default 1). The top
keeps the axes before `axis` (axis 0, the default, gives a scalar). MEAN is SUM with coeff / dim,
dim being the number of values reduced, as reduction_layer.cpp computes it. The gradient is
Caffe's: coeff for SUM/MEAN, coeff * sign(x) for ASUM (0 at x = 0), 2 * coeff * x for SUMSQ.
"""
from typing import List

from ..proto import pb
from .base import Layer, register
from .softmax import canonical_axis

_OPS = {pb.ReductionParameter.SUM: "SUM", pb.ReductionParameter.ASUM: "ASUM",
        pb.ReductionParameter.SUMSQ: "SUMSQ", pb.ReductionParameter.MEAN: "MEAN"}


@register
class Reduction(Layer):
    type = "Reduction"
    __constants__ = ["axis", "op", "coeff"]

    def setup(self):
        p = self.param.reduction_param
        if p.operation not in _OPS:
            raise self.error(f"unknown reduction_param.operation {p.operation}; known: SUM, ASUM, SUMSQ, MEAN")
        self.op = _OPS[p.operation]
        self.coeff = float(p.coeff)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self.axis = canonical_axis(self, self.param.reduction_param.axis, shape)
        return [shape[:self.axis]]

    def forward(self, x):
        lead: List[int] = []
        dim = 1
        for i, d in enumerate(x.shape):
            if i < self.axis:
                lead.append(d)
            else:
                dim *= d
        rows = x.reshape(lead + [dim])
        if self.op == "ASUM":
            y = rows.abs().sum(-1)
        elif self.op == "SUMSQ":
            y = (rows * rows).sum(-1)
        else:
            y = rows.sum(-1)
        coeff = self.coeff
        if self.op == "MEAN":
            coeff = coeff / max(dim, 1)
        return y * coeff if coeff != 1.0 else y
