"""InnerProduct (Caffe's InnerProductLayer): y = x W^T + b over every axis from `axis` on.

The bottom is flattened from `axis` (C*H*W order, as Caffe's row-major blob), so K is the product
of those dims and must equal the weight's; the top keeps the leading axes and adds N. The weight
blob is (N, K), or (K, N) with transpose: true; the bias is (N,).
"""
import math

import torch
import torch.nn.functional as F

from .base import Layer, register
from .fillers import fill


@register
class InnerProduct(Layer):
    type = "InnerProduct"
    __constants__ = ["bias_term", "transpose", "axis", "K"]

    def setup(self):
        p = self.param.inner_product_param
        if not p.HasField("num_output") or p.num_output < 1:
            raise self.error("inner_product_param.num_output is required (> 0)")
        shape = self.bottom_shapes[0]
        self.axis = self._axis(p.axis, shape)
        self.K = math.prod(shape[self.axis:])
        self.N = p.num_output
        self.transpose = p.transpose
        self.bias_term = p.bias_term
        self.add_blob((self.K, self.N) if self.transpose else (self.N, self.K))
        if self.bias_term:
            self.add_blob((self.N,))

    def _axis(self, axis, shape):
        if not -len(shape) <= axis < len(shape):
            raise self.error(f"axis {axis} is out of range for a {len(shape)}-d bottom {tuple(shape)}")
        return axis % len(shape)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if len(shape) <= self.axis:
            raise self.error(f"axis {self.axis} is out of range for bottom shape {shape}")
        k = math.prod(shape[self.axis:])
        if k != self.K:
            raise self.error(
                f"expects {self.K} inputs per row (the weight is {tuple(self.blobs[0].shape)}), but bottom "
                f"'{self.param.bottom[0]}' has shape {shape}, i.e. {k} from axis {self.axis} on; "
                "the input size does not fit this net (a fully convolutional, dense net takes any size)")
        return [shape[:self.axis] + (self.N,)]

    def forward(self, x):
        x = x.flatten(self.axis)
        if self.transpose:
            y = torch.matmul(x, self.blobs[0])
            if self.bias_term:
                y = y + self.blobs[1]
            return y
        if self.bias_term:
            return F.linear(x, self.blobs[0], self.blobs[1])
        return F.linear(x, self.blobs[0])

    def fill(self, generator=None):
        p = self.param.inner_product_param
        fill(self.blobs[0], p.weight_filler if p.HasField("weight_filler") else None, generator, self.name)
        if self.bias_term:
            fill(self.blobs[1], p.bias_filler if p.HasField("bias_filler") else None, generator, self.name)

    def multiply_adds(self):
        return math.prod(self.top_shapes[0][:self.axis]) * self.K * self.N

    def receptive(self):
        # An inner product over a spatial map sees all of it at once.
        shape = self.bottom_shapes[0]
        return (shape[2], 1, 0) if self.axis == 1 and len(shape) == 4 else (1, 1, 0)
