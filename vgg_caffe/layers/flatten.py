"""Flatten (Caffe's FlattenLayer): merges axes axis..end_axis (defaults 1..-1) into one."""
import math

from .base import Layer, register
from .softmax import canonical_axis


@register
class Flatten(Layer):
    type = "Flatten"
    __constants__ = ["start", "end"]

    def setup(self):
        self.start, self.end = self._axes(self.bottom_shapes[0])

    def _axes(self, shape):
        p = self.param.flatten_param
        start, end = canonical_axis(self, p.axis, shape), canonical_axis(self, p.end_axis, shape)
        if end < start:
            raise self.error(f"end_axis {p.end_axis} comes before axis {p.axis} for bottom shape {tuple(shape)}")
        return start, end

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        self.start, self.end = self._axes(shape)
        return [shape[:self.start] + (math.prod(shape[self.start:self.end + 1]),) + shape[self.end + 1:]]

    def forward(self, x):
        return x.flatten(self.start, self.end)
