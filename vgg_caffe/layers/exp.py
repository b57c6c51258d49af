"""Exp (Caffe's ExpLayer): y = base ^ (shift + scale * x) (defaults base -1 meaning e, scale 1, shift 0).

As Caffe: y = outer * exp(inner * x) with inner = ln(base) * scale and outer = base ^ shift
(e ^ shift for base -1), both in float; base must be -1 or > 0 with a finite log.
Gradient inner * y, Caffe's, which is autograd's of this form.
"""
import math

import numpy as np
import torch

from .base import Layer, register


def log_base(layer, field, base):
    """ln(base) as Caffe's Exp and Log layers take it (float; base -1 means e, ln e = 1 exactly)."""
    if base == -1.0:
        return np.float32(1.0)
    if not base > 0:
        raise layer.error(f"{field} is {base}; allowed: -1 (meaning e) or a base > 0")
    with np.errstate(all="ignore"):
        value = np.log(np.float32(base))
    if not math.isfinite(value):
        raise layer.error(f"{field} is {base}: ln(base) = {value} is not finite")
    return value


@register
class Exp(Layer):
    type = "Exp"
    in_place_ok = True
    __constants__ = ["inner", "outer"]

    def setup(self):
        p = self.param.exp_param
        base, scale, shift = float(p.base), np.float32(p.scale), np.float32(p.shift)
        self.inner = float(log_base(self, "exp_param.base", base) * scale)
        if shift == 0:
            self.outer = 1.0
        else:
            with np.errstate(all="ignore"):
                self.outer = float(np.exp(shift) if base == -1.0 else np.power(np.float32(base), shift))

    def forward(self, x):
        y = torch.exp(x) if self.inner == 1.0 else torch.exp(x * self.inner)
        if self.outer != 1.0:
            y = y * self.outer
        return y
