"""Slice (Caffe's SliceLayer): cuts one bottom into several tops along `axis`.

`slice_dim` is the legacy, non-negative spelling of `axis` (giving both is an error). With
slice_point p1 < p2 < ... (one fewer than the tops) the tops take [0, p1), [p1, p2), ...,
[p_last, size); without points the axis is split into equal parts, one per top, and must divide
evenly. As slice_layer.cpp: points must strictly increase from 1, may not pass the axis size
(the last may equal it, leaving an empty top), and there may not be more tops than the size.
"""
from typing import List

import torch

from .base import Layer, register
from .softmax import canonical_axis


@register
class Slice(Layer):
    type = "Slice"
    tops = (1, None)
    __constants__ = ["axis", "n_tops", "equal"]
    sizes: List[int]

    def setup(self):
        p = self.param.slice_param
        if p.HasField("axis") and p.HasField("slice_dim"):
            raise self.error("give slice_param.axis or the legacy slice_dim, not both")
        self.points = [int(x) for x in p.slice_point]
        self.n_tops = len(self.param.top)
        self.equal = not self.points
        if self.points and len(self.points) != self.n_tops - 1:
            raise self.error(f"{len(self.points)} slice_point values for {self.n_tops} tops; give one fewer "
                             "than the tops, or none for equal parts")

    def _axis(self, shape):
        p = self.param.slice_param
        if p.HasField("slice_dim"):
            if p.slice_dim >= len(shape):
                raise self.error(f"slice_dim {p.slice_dim} is out of range for a {len(shape)}-d bottom {tuple(shape)}")
            return int(p.slice_dim)
        return canonical_axis(self, p.axis, shape)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self.axis = self._axis(shape)
        size = shape[self.axis]
        if self.equal:
            if size % self.n_tops:
                raise self.error(f"{self.n_tops} tops do not divide axis {self.axis} of bottom {shape} "
                                 f"(size {size}) evenly; give slice_point values")
            self.sizes = [size // self.n_tops] * self.n_tops
        else:
            if self.n_tops > size:
                raise self.error(f"{self.n_tops} tops are more than the {size} entries of axis {self.axis} "
                                 f"of bottom {shape}")
            prev, sizes = 0, []
            for point in self.points:
                if point <= prev:
                    raise self.error(f"slice_point {self.points} must increase strictly from 1")
                sizes.append(point - prev)
                prev = point
            if prev > size:
                raise self.error(f"slice_point {prev} is past the end of axis {self.axis} of bottom {shape} "
                                 f"(size {size})")
            self.sizes = sizes + [size - prev]
        return [shape[:self.axis] + (s,) + shape[self.axis + 1:] for s in self.sizes]

    def forward(self, x) -> List[torch.Tensor]:
        if self.equal:
            # Equal parts of whatever arrives, so a data-dependent batch still splits.
            part = x.shape[self.axis] // self.n_tops
            return list(x.split_with_sizes([part] * self.n_tops, self.axis))
        return list(x.split_with_sizes(self.sizes, self.axis))
