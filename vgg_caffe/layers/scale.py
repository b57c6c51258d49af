"""Scale (Caffe's ScaleLayer): y = x * s (+ b), s and b broadcast over the axes of x they do not cover.

As Bias (bias.py): s covers `num_axes` axes of x from `axis` (defaults 1 and 1: one factor per
channel, what follows a BatchNorm; -1: every axis from `axis` on; 0: one scalar). With one bottom
s is a learned blob (scale_param.filler, default constant 1, the identity); with two bottoms the
second bottom is s, its whole shape must equal the axes it covers and num_axes is ignored. With
bias_term, a learned bias blob of the same shape follows (bias_param semantics, filled from
scale_param.bias_filler, default constant 0). Blobs, in Caffe's order: [s, b] with one bottom,
[b] with two.
"""
from typing import Optional

import torch

from ..proto import pb
from .base import Layer, register
from .bias import bottom_name, broadcast_shape, check_covers, covered_shape
from .fillers import fill


@register
class Scale(Layer):
    type = "Scale"
    bottoms = (1, 2)
    in_place_ok = True
    __constants__ = ["axis", "two_bottoms", "bias_term"]

    def setup(self):
        p = self.param.scale_param
        self.two_bottoms = len(self.bottom_shapes) == 2
        self.bias_term = p.bias_term
        x = self.bottom_shapes[0]
        if not self.two_bottoms:
            self.add_blob(covered_shape(self, "scale_param", x, p.axis, p.num_axes))
        if self.bias_term:
            # Caffe builds an inner Bias layer with num_axes = the scale bottom's rank, so the bias
            # always has the shape of s.
            n = len(self.bottom_shapes[1]) if self.two_bottoms else p.num_axes
            self.add_blob(covered_shape(self, "scale_param", x, p.axis, n))

    def reshape(self, bottom_shapes):
        p = self.param.scale_param
        if self.two_bottoms:
            what, operand = f"the scale bottom '{bottom_name(self, 1)}'", bottom_shapes[1]
        else:
            what, operand = "the scale blob", self.blobs[0].shape
        self.axis = check_covers(self, what, "scale_param", bottom_shapes[0], p.axis, operand)
        return [tuple(bottom_shapes[0])]

    def forward(self, x, scale: Optional[torch.Tensor] = None):
        # two_bottoms and bias_term are TorchScript constants: only the branches used compile.
        if self.two_bottoms:
            assert scale is not None
            s = scale
        else:
            s = self.blobs[0]
        y = x * s.reshape(broadcast_shape(s, self.axis, x.dim()))
        if self.bias_term:
            if self.two_bottoms:
                b = self.blobs[0]
            else:
                b = self.blobs[1]
            y = y + b.reshape(broadcast_shape(b, self.axis, x.dim()))
        return y

    def fill(self, generator=None):
        p = self.param.scale_param
        if not self.two_bottoms:
            ones = pb.FillerParameter(type="constant", value=1.0)
            fill(self.blobs[0], p.filler if p.HasField("filler") else ones, generator, self.name)
        if self.bias_term:
            fill(self.blobs[-1], p.bias_filler, generator, self.name)

    def multiply_adds(self):
        n = 1
        for d in self.top_shapes[0]:
            n *= d
        return n  # one multiply (and add, with a bias) per element
