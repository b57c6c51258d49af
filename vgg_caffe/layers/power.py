"""Power (Caffe's PowerLayer): y = (shift + scale * x) ^ power (defaults power 1, scale 1, shift 0).

As Caffe, when power * scale == 0 the input is ignored: y is the constant 1 (power 0) or
shift ^ power (scale 0), with zero gradient (the constant carries no autograd history); the
scale, shift and power steps are skipped when they are the identity.
"""
import numpy as np
import torch

from .base import Layer, register


@register
class Power(Layer):
    type = "Power"
    in_place_ok = True
    __constants__ = ["power", "scale", "shift", "constant", "value"]

    def setup(self):
        p = self.param.power_param
        self.power, self.scale, self.shift = float(p.power), float(p.scale), float(p.shift)
        self.constant = self.power * self.scale == 0.0
        self.value = 1.0
        if self.constant and self.power != 0.0:
            # Caffe's pow(shift, power) in float: NaN or inf where C gives them (Python would raise).
            with np.errstate(all="ignore"):
                self.value = float(np.power(np.float32(self.shift), np.float32(self.power)))

    def forward(self, x):
        if self.constant:
            return torch.full_like(x, self.value)
        y = x
        if self.scale != 1.0:
            y = y * self.scale
        if self.shift != 0.0:
            y = y + self.shift
        if self.power != 1.0:
            y = torch.pow(y, self.power)
        return y
