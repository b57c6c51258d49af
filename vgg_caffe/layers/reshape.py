"""Reshape (Caffe's ReshapeLayer): a new shape for the same data, without copying.

reshape_param.shape replaces the bottom axes [axis, axis + num_axes) (defaults: every axis); a
negative `axis` counts from the end, -1 meaning "after the last axis". A dim of 0 copies the
bottom dim at the same position (axis + i), one dim of -1 is inferred from the count; a second
-1, a 0 with no bottom axis to copy, or a count that does not match is an error, as Caffe's
CHECKs in reshape_layer.cpp. The result is a view of the bottom (Caffe's ShareData/ShareDiff).
Forward applies the rule to the tensor it is given, so a data-dependent batch (Filter) passes.
"""
import math
from typing import List

from .base import Layer, register


@register
class Reshape(Layer):
    type = "Reshape"
    __constants__ = ["start", "end"]
    dims: List[int]

    def setup(self):
        p = self.param.reshape_param
        self.dims = [int(d) for d in p.shape.dim]
        if sum(d == -1 for d in self.dims) > 1:
            raise self.error(f"reshape_param.shape {tuple(self.dims)} has more than one -1; at most one dim "
                             "may be inferred")
        if any(d < -1 for d in self.dims):
            raise self.error(f"reshape_param.shape {tuple(self.dims)}: dims must be positive, 0 (copy) or "
                             "-1 (infer)")
        if p.num_axes < -1:
            raise self.error(f"reshape_param.num_axes must be >= 0, or -1 for all, got {p.num_axes}")

    def _axes(self, shape):
        p = self.param.reshape_param
        n = len(shape)
        start = p.axis if p.axis >= 0 else n + p.axis + 1
        if not 0 <= start <= n:
            raise self.error(f"reshape_param.axis {p.axis} is out of range for a {n}-d bottom {tuple(shape)}")
        end = n if p.num_axes == -1 else start + p.num_axes
        if end > n:
            raise self.error(f"reshape_param.axis + num_axes = {start} + {p.num_axes} is beyond the {n} axes "
                             f"of bottom {tuple(shape)}")
        return start, end

    def reshape(self, bottom_shapes):
        shape = tuple(int(d) for d in bottom_shapes[0])
        self.start, self.end = self._axes(shape)
        top = list(shape[:self.start]) + list(self.dims) + list(shape[self.end:])
        for i, d in enumerate(self.dims):
            if d == 0:
                if self.start + i >= len(shape):
                    raise self.error(f"reshape_param.shape {tuple(self.dims)} has a 0 at position {i}, but bottom "
                                     f"{shape} has no axis {self.start + i} to copy")
                top[self.start + i] = shape[self.start + i]
        count = math.prod(shape)
        if -1 in self.dims:
            at = self.start + self.dims.index(-1)
            explicit = math.prod(d for j, d in enumerate(top) if j != at)
            if explicit == 0 or count % explicit:
                raise self.error(f"cannot infer the -1 of reshape_param.shape {tuple(self.dims)}: bottom {shape} "
                                 f"has {count} values, not a multiple of the other dims' product {explicit}")
            top[at] = count // explicit
        if math.prod(top) != count:
            raise self.error(f"bottom '{self.param.bottom[0]}' has shape {shape} ({count} values) but "
                             f"reshape_param.shape {tuple(self.dims)} gives {tuple(top)} ({math.prod(top)} values)")
        return [tuple(top)]

    def forward(self, x):
        shape = x.shape
        new: List[int] = []
        for i in range(self.start):
            new.append(shape[i])
        for i, d in enumerate(self.dims):
            new.append(shape[self.start + i] if d == 0 else d)
        for i in range(self.end, len(shape)):
            new.append(shape[i])
        return x.reshape(new)
