"""Concat (Caffe's ConcatLayer): joins its bottoms along `axis` or the legacy `concat_dim` (not both).

Every other axis must agree. Takes its bottoms as one list, so any number of them scripts.
"""
from typing import List

import torch

from .base import Layer, register
from .softmax import canonical_axis


@register
class Concat(Layer):
    type = "Concat"
    bottoms = (1, None)
    takes_list = True
    __constants__ = ["axis"]

    def setup(self):
        p = self.param.concat_param
        if p.HasField("axis") and p.HasField("concat_dim"):
            raise self.error("give concat_param.axis or the legacy concat_dim, not both")
        axis = p.concat_dim if p.HasField("concat_dim") else p.axis
        self.axis = canonical_axis(self, axis, self.bottom_shapes[0])

    def reshape(self, bottom_shapes):
        first = tuple(bottom_shapes[0])
        for name, shape in zip(self.param.bottom, bottom_shapes):
            shape = tuple(shape)
            if len(shape) != len(first) or any(a != b for i, (a, b) in enumerate(zip(shape, first)) if i != self.axis):
                raise self.error(f"bottom '{name}' has shape {shape}; every bottom must match "
                                 f"'{self.param.bottom[0]}' {first} except along axis {self.axis}")
        size = sum(s[self.axis] for s in bottom_shapes)
        return [first[:self.axis] + (size,) + first[self.axis + 1:]]

    def forward(self, xs: List[torch.Tensor]):
        return torch.cat(xs, self.axis)
