"""Eltwise (Caffe's EltwiseLayer): element-wise PROD, SUM (with one coeff per bottom) or MAX of
bottoms of identical shape. Takes its bottoms as one list, so any number of them scripts.

MAX sends each gradient to one bottom, as Caffe's mask: on a tie between the first two bottoms
the second wins, on a tie with a later bottom the earlier one keeps it (torch.maximum would
split it in halves). stable_prod_grad (default true) only chooses how Caffe computes the PROD
gradient: the product of the other bottoms (true, what autograd computes) or top / bottom
(false), which is the same number wherever it is defined (no bottom is 0) and inf/NaN where it
is not; both settings get the product of the others here.
"""
from typing import List

import torch

from ..proto import pb
from .base import Layer, register


@register
class Eltwise(Layer):
    type = "Eltwise"
    bottoms = (2, None)
    takes_list = True
    __constants__ = ["op"]

    def setup(self):
        p = self.param.eltwise_param
        self.op = int(p.operation)
        if self.op not in (pb.EltwiseParameter.PROD, pb.EltwiseParameter.SUM, pb.EltwiseParameter.MAX):
            raise self.error(f"unknown eltwise_param.operation {self.op}; known: PROD, SUM, MAX")
        coeff = list(p.coeff)
        # Caffe refuses coeff only with PROD; with MAX it loads and ignores them (eltwise_layer.cpp).
        if coeff and self.op == pb.EltwiseParameter.PROD:
            raise self.error("coeff is only for operation SUM (PROD takes none)")
        if coeff and len(coeff) != len(self.param.bottom):
            raise self.error(f"{len(coeff)} coeff values for {len(self.param.bottom)} bottoms; give one per bottom")
        self.coeff = [float(c) for c in coeff] or [1.0] * len(self.param.bottom)

    def reshape(self, bottom_shapes):
        first = tuple(bottom_shapes[0])
        for name, shape in zip(self.param.bottom, bottom_shapes):
            if tuple(shape) != first:
                raise self.error(f"bottom '{name}' has shape {tuple(shape)}, but '{self.param.bottom[0]}' has "
                                 f"{first}; Eltwise needs identical shapes")
        return [first]

    def forward(self, xs: List[torch.Tensor]):
        y = xs[0]
        if self.op == 1:  # SUM
            y = xs[0] * self.coeff[0] if self.coeff[0] != 1.0 else xs[0]
            for i in range(1, len(xs)):
                c = self.coeff[i]
                y = y + xs[i] * c if c != 1.0 else y + xs[i]
        elif self.op == 0:  # PROD
            for i in range(1, len(xs)):
                y = y * xs[i]
        else:  # MAX, with Caffe's tie rule (strict comparisons, see the docstring)
            y = torch.where(xs[0] > xs[1], xs[0], xs[1])
            for i in range(2, len(xs)):
                y = torch.where(xs[i] > y, xs[i], y)
        return y

    def multiply_adds(self):
        n = 1
        for d in self.top_shapes[0]:
            n *= d
        return n * (len(self.param.bottom) - 1)
