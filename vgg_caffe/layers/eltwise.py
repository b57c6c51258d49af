"""Eltwise (Caffe's EltwiseLayer): element-wise PROD, SUM (with one coeff per bottom) or MAX of
bottoms of identical shape. Takes its bottoms as one list, so any number of them scripts."""
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
        coeff = list(p.coeff)
        if coeff and self.op != pb.EltwiseParameter.SUM:
            raise self.error("coeff is only for operation SUM")
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
        else:  # MAX
            for i in range(1, len(xs)):
                y = torch.maximum(y, xs[i])
        return y

    def multiply_adds(self):
        n = 1
        for d in self.top_shapes[0]:
            n *= d
        return n * (len(self.param.bottom) - 1)
