"""Pooling (Caffe's PoolingLayer): MAX and AVE over kernel/stride/pad windows, global pooling.

Caffe sizes the output with ceil by default: out = ceil((H + 2p - k) / s) + 1, then, when any pad
is set, drops the last window if it would start inside the bottom/right padding
((out - 1) * s >= H + p). round_mode FLOOR uses floor instead (same clip rule). MAX windows are
clipped to the input; AVE sums the clipped window and divides by the window clipped to H + p
(so padding inside the image's padded extent counts, padding beyond it does not).
torch's pooling agrees with this whenever its own output size equals Caffe's and pad <= k/2; any
other case goes through an explicit pad + divisor map so the semantics never depend on torch's.
"""
import math

import torch
import torch.nn.functional as F

from ..proto import pb
from .base import Layer, pair, register

# Max pooling pads with -FLT_MAX (-3.4028234663852886e38), what Caffe starts its max from.


def caffe_pooled_size(size, kernel, stride, pad, ceil, any_pad):
    """Caffe's pooled size along one axis (pooling_layer.cpp Reshape)."""
    span = (size + 2 * pad - kernel) / stride
    out = (math.ceil(span) if ceil else math.floor(span)) + 1
    if any_pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _torch_pooled_size(size, kernel, stride, pad, ceil):
    """torch's pooling_output_shape, to know when its native kernels agree with Caffe."""
    out = (size + 2 * pad - kernel + (stride - 1 if ceil else 0)) // stride + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@register
class Pooling(Layer):
    type = "Pooling"
    __constants__ = ["is_max", "native", "ceil", "kernel", "stride", "pad", "extra"]

    def setup(self):
        p = self.param.pooling_param
        if p.pool == pb.PoolingParameter.STOCHASTIC:
            raise self.error("STOCHASTIC pooling is not supported (only MAX and AVE)")
        if len(self.bottom_shapes[0]) != 4:
            raise self.error(f"expects a 4-d bottom (N, C, H, W), got shape {self.bottom_shapes[0]}")
        self.is_max = p.pool == pb.PoolingParameter.MAX
        self.global_pooling = p.global_pooling
        self.ceil = p.round_mode == pb.PoolingParameter.CEIL
        if self.global_pooling:
            if p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w"):
                raise self.error("with global_pooling the kernel size cannot be specified")
        else:
            if not (p.HasField("kernel_size") or (p.HasField("kernel_h") and p.HasField("kernel_w"))):
                raise self.error("pooling_param needs kernel_size, or kernel_h and kernel_w")
            self.kernel = pair(p, "kernel_size", None, self)
        self.pad = pair(p, "pad", 0, self)
        self.stride = pair(p, "stride", 1, self)
        if self.global_pooling and (self.pad != (0, 0) or self.stride != (1, 1)):
            raise self.error("with global_pooling, pad must be 0 and stride 1")

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        if len(shape) != 4:
            raise self.error(f"expects a 4-d bottom (N, C, H, W), got shape {shape}")
        n, c, h, w = shape
        if self.global_pooling:
            self.kernel = (h, w)
        if min(self.kernel) < 1 or min(self.stride) < 1:
            raise self.error(f"kernel {self.kernel} and stride {self.stride} must be positive")
        for k, pd in zip(self.kernel, self.pad):
            if pd >= k:
                raise self.error(f"pad {self.pad} must be smaller than the kernel {self.kernel}")
        any_pad = any(self.pad)
        out = tuple(caffe_pooled_size(s, k, st, pd, self.ceil, any_pad)
                    for s, k, st, pd in zip((h, w), self.kernel, self.stride, self.pad))
        if min(out) < 1:
            raise self.error(f"input {h}x{w} is smaller than the kernel {self.kernel[0]}x{self.kernel[1]}")
        self.out = out
        native = tuple(_torch_pooled_size(s, k, st, pd, self.ceil)
                       for s, k, st, pd in zip((h, w), self.kernel, self.stride, self.pad))
        self.native = native == out and all(2 * pd <= k for k, pd in zip(self.kernel, self.pad))
        # Right/bottom padding that makes a plain (floor, unpadded) pool cover every Caffe window.
        self.extra = tuple(max(0, (o - 1) * st + k - s - pd)
                           for o, st, k, s, pd in zip(out, self.stride, self.kernel, (h, w), self.pad))
        # Kept as a buffer so it follows the module to its device (unused by MAX).
        old = getattr(self, "divisor", None)
        divisor = self._divisor(h, w) if not self.is_max else torch.ones(1)
        self.register_buffer("divisor", divisor.to(old.device) if old is not None else divisor,
                             persistent=False)
        return [(n, c) + out]

    def _divisor(self, h, w):
        """Caffe's AVE divisor per output cell: the window clipped to [-pad, size + pad)."""
        rows = []
        for size, o, k, st, pd in zip((h, w), self.out, self.kernel, self.stride, self.pad):
            start = torch.arange(o) * st - pd
            rows.append((torch.clamp(start + k, max=size + pd) - start).double())
        return (rows[0][:, None] * rows[1][None, :]).float()

    def forward(self, x):
        if self.native:
            if self.is_max:
                return F.max_pool2d(x, self.kernel, self.stride, self.pad, ceil_mode=self.ceil)
            return F.avg_pool2d(x, self.kernel, self.stride, self.pad, ceil_mode=self.ceil,
                                count_include_pad=True)
        pads = [self.pad[1], self.extra[1], self.pad[0], self.extra[0]]
        if self.is_max:
            y = F.max_pool2d(F.pad(x, pads, value=-3.4028234663852886e38), self.kernel, self.stride)
            return y[:, :, :self.out[0], :self.out[1]]
        else:
            y = F.avg_pool2d(F.pad(x, pads), self.kernel, self.stride, divisor_override=1)
            return y[:, :, :self.out[0], :self.out[1]] / self.divisor.to(y.dtype)

    def multiply_adds(self):
        return 0  # comparisons and additions only

    def receptive(self):
        return (self.kernel[0], self.stride[0], self.pad[0])
