"""Threshold (Caffe's ThresholdLayer): y = 1 where x > threshold (default 0), else 0.

Caffe has no backward for it (NOT_IMPLEMENTED: a net needing a gradient through it stops). Here the
top is a comparison, so it carries no autograd history: nothing flows back through it, which is a
zero gradient for the bottom.
"""
from .base import Layer, register


@register
class Threshold(Layer):
    type = "Threshold"
    in_place_ok = True
    __constants__ = ["threshold"]

    def setup(self):
        self.threshold = float(self.param.threshold_param.threshold)

    def forward(self, x):
        return (x > self.threshold).to(x.dtype)
