"""Pooling (Caffe's PoolingLayer): MAX, AVE and STOCHASTIC over kernel/stride/pad windows.

Caffe sizes the output with ceil by default: out = ceil((H + 2p - k) / s) + 1, then, when any pad
is set, drops the last window if it would start inside the bottom/right padding
((out - 1) * s >= H + p). round_mode FLOOR uses floor instead (same clip rule). MAX windows are
clipped to the input; AVE sums the clipped window and divides by the window clipped to H + p
(so padding inside the image's padded extent counts, padding beyond it does not).
torch's pooling agrees with this whenever its own output size equals Caffe's and pad <= k/2; any
other case goes through an explicit pad + divisor map so the semantics never depend on torch's.

STOCHASTIC (Zeiler & Fergus; Caffe's StoPoolForward kernels, GPU-only in Caffe) takes no pad and
expects non-negative input (it follows a ReLU). In training (module.training, as Dropout) each
window draws u ~ U[0, 1) and outputs the first element, in row-major window order, at which the
running sum reaches u * (window sum): an element picked with probability proportional to its
value. The gradient goes to the picked element alone (Caffe's StoPoolBackward). In testing it
outputs the probability-weighted average sum(x^2) / (FLT_MIN + sum(x)); Caffe defines no test-time
gradient, here it is that formula's. The draws come from torch's global generator, or, with a
sample window (Net.set_sample_window), from one keyed by (seed, iteration, layer name) for the
global batch, as Dropout, so data-parallel runs pick the same elements as one process.
"""
import math

import torch
import torch.nn.functional as F

from .. import rng
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
    __constants__ = ["is_max", "is_stochastic", "native", "ceil", "kernel", "stride", "pad", "extra"]
    __jit_ignored_attributes__ = ["sample_window"]

    def setup(self):
        p = self.param.pooling_param
        if len(self.bottom_shapes[0]) != 4:
            raise self.error(f"expects a 4-d bottom (N, C, H, W), got shape {self.bottom_shapes[0]}")
        if p.HasField("kernel_size") and (p.HasField("kernel_h") or p.HasField("kernel_w")):
            raise self.error("give pooling_param.kernel_size or kernel_h and kernel_w, not both")
        self.is_max = p.pool == pb.PoolingParameter.MAX
        self.is_stochastic = p.pool == pb.PoolingParameter.STOCHASTIC
        self.sample_window = None
        self.use_window = False
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
        if self.is_stochastic and self.pad != (0, 0):
            raise self.error(f"pad {self.pad}: padding is only implemented for MAX and AVE pooling, not STOCHASTIC")

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
        divisor = self._divisor(h, w) if not (self.is_max or self.is_stochastic) else torch.ones(1)
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

    def set_sample_window(self, window):
        self.sample_window = window
        self.use_window = window is not None

    def forward(self, x):
        if self.is_stochastic:
            return self._stochastic(x)
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

    def _stochastic(self, x):
        n, c = x.shape[0], x.shape[1]
        oh, ow = self.out[0], self.out[1]
        # Zeros to the right/bottom complete the clipped windows: they add nothing to any sum.
        padded = F.pad(x.reshape(n * c, 1, x.shape[2], x.shape[3]), [0, self.extra[1], 0, self.extra[0]])
        windows = F.unfold(padded, self.kernel, stride=self.stride)  # (N*C, kh*kw, oh*ow), row-major taps
        windows = windows.reshape(n, c, -1, oh, ow)
        if not self.training:
            # 1.1754943508222875e-38 is FLT_MIN, Caffe's start for the sum (no division by zero).
            return (windows * windows).sum(2) / (windows.sum(2) + 1.1754943508222875e-38)
        running = windows.cumsum(2)
        threshold = self._uniform(x, n, c, oh, ow) * running[:, :, -1]
        pick = (running >= threshold.unsqueeze(2)).to(torch.uint8).argmax(2, keepdim=True)
        return windows.gather(2, pick).squeeze(2)

    def _uniform(self, x, n: int, c: int, oh: int, ow: int):
        if self.use_window and not torch.jit.is_scripting():
            return self._window_uniform(x, n, c, oh, ow)
        return torch.rand([n, c, oh, ow], dtype=x.dtype, device=x.device)

    @torch.jit.unused
    def _window_uniform(self, x, n, c, oh, ow):
        """U[0, 1) per window for this process's rows of the global batch (see Dropout)."""
        w = self.sample_window
        total = w.total if w.total is not None else w.stop
        stop = w.stop if w.stop is not None else total
        if stop - w.start != n or not 0 <= w.start <= stop <= total:
            raise self.error(f"sample window [{w.start}, {stop}) of {total} does not match a batch of {n}")
        gen = rng.torch_generator(w.seed, w.iteration, self.name)
        u = torch.rand((total, c, oh, ow), generator=gen, dtype=x.dtype)[w.start:stop]
        return u.to(x.device)

    def multiply_adds(self):
        return 0  # comparisons and additions only

    def receptive(self):
        return (self.kernel[0], self.stride[0], self.pad[0])
