"""Im2col (Caffe's Im2colLayer): the convolution's column buffer as a blob.

convolution_param gives kernel, stride, pad and dilation (one value, one per spatial axis, or
the _h/_w fields for 2-d) and `axis`, the channel axis (default 1; every later axis is spatial).
The top is (..., C * k1 * k2 ..., O1, O2, ...) with O = (I + 2p - (d(k - 1) + 1)) / s + 1
(floor), and row c*k1*k2 + i*k2 + j holds channel c's kernel tap (i, j) at each output position:
Caffe's channel-major im2col layout, the one torch's unfold also uses. Backward is col2im (taps
overlapping one input position are summed).
"""
import math
from typing import List

import torch.nn.functional as F

from .base import Layer, register
from .softmax import canonical_axis


@register
class Im2col(Layer):
    type = "Im2col"
    __constants__ = ["channel_axis", "n_spatial"]
    kernel: List[int]
    stride: List[int]
    pad: List[int]
    dilation: List[int]

    def setup(self):
        p = self.param.convolution_param
        shape = self.bottom_shapes[0]
        self.channel_axis = canonical_axis(self, p.axis, shape)
        self.n_spatial = len(shape) - self.channel_axis - 1
        if self.n_spatial < 1:
            raise self.error(f"bottom {tuple(shape)} has no spatial axis after channel axis {self.channel_axis}")
        self.kernel = self._spatial(p, "kernel_size", "kernel", None)
        self.stride = self._spatial(p, "stride", "stride", 1)
        self.pad = self._spatial(p, "pad", "pad", 0)
        self.dilation = self._spatial(p, "dilation", None, 1)
        for name, values, low in (("kernel", self.kernel, 1), ("stride", self.stride, 1),
                                  ("dilation", self.dilation, 1), ("pad", self.pad, 0)):
            if min(values) < low:
                raise self.error(f"{name} {tuple(values)} must be >= {low}")

    def _spatial(self, p, name, hw, default):
        """Caffe's per-axis resolution of a repeated field and its optional _h/_w pair."""
        n = self.n_spatial
        if hw and (p.HasField(f"{hw}_h") or p.HasField(f"{hw}_w")):
            if n != 2:
                raise self.error(f"{hw}_h and {hw}_w are only for 2-d input; this one has {n} spatial axes")
            if len(getattr(p, name)):
                raise self.error(f"give {name} or {hw}_h and {hw}_w, not both")
            return [int(getattr(p, f"{hw}_h")), int(getattr(p, f"{hw}_w"))]
        values = [int(v) for v in getattr(p, name)]
        if not values:
            if default is None:
                raise self.error(f"convolution_param.{name} (or {hw}_h and {hw}_w) is required")
            return [default] * n
        if len(values) not in (1, n):
            raise self.error(f"convolution_param.{name} has {len(values)} values; give one, or one per spatial "
                             f"axis ({n})")
        return values * n if len(values) == 1 else values

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if len(shape) != self.channel_axis + 1 + self.n_spatial:
            raise self.error(f"expects a {self.channel_axis + 1 + self.n_spatial}-d bottom, got {shape}")
        first = self.channel_axis + 1
        out = []
        for i in range(self.n_spatial):
            extent = self.dilation[i] * (self.kernel[i] - 1) + 1
            o = (shape[first + i] + 2 * self.pad[i] - extent) // self.stride[i] + 1
            if o < 1:
                raise self.error(f"bottom {shape} is smaller than the kernel {tuple(self.kernel)} "
                                 f"(pad {tuple(self.pad)}, dilation {tuple(self.dilation)})")
            out.append(o)
        channels = shape[self.channel_axis] * math.prod(self.kernel)
        return [shape[:self.channel_axis] + (channels,) + tuple(out)]

    def forward(self, x):
        first = self.channel_axis + 1
        pads: List[int] = []
        for i in range(self.n_spatial - 1, -1, -1):  # F.pad lists the last axis first
            pads.append(self.pad[i])
            pads.append(self.pad[i])
        y = F.pad(x, pads)
        # Each unfold turns one spatial axis into (output position, window) with the window last.
        for i in range(self.n_spatial):
            extent = self.dilation[i] * (self.kernel[i] - 1) + 1
            y = y.unfold(first + i, extent, self.stride[i])
            if self.dilation[i] > 1:
                y = y[..., ::self.dilation[i]]
        # (..., C, O1..On, k1..kn) -> (..., C, k1..kn, O1..On) -> (..., C*k1*..*kn, O1..On)
        order: List[int] = []
        for i in range(first):
            order.append(i)
        for i in range(self.n_spatial):
            order.append(first + self.n_spatial + i)
        for i in range(self.n_spatial):
            order.append(first + i)
        return y.permute(order).flatten(self.channel_axis, self.channel_axis + self.n_spatial)

    def receptive(self):
        if self.n_spatial != 2:
            return (1, 1, 0)
        return (self.dilation[0] * (self.kernel[0] - 1) + 1, self.stride[0], self.pad[0])
