"""Log (Caffe's LogLayer): y = log_base(shift + scale * x) (defaults base -1 meaning e, scale 1, shift 0).

As Caffe: y = ln(scale * x + shift) * (1 / ln(base)), the factor in float; base must be -1 or
> 0, and not 1 (1 / ln 1 is infinite). Gradient scale / (ln(base) * (scale * x + shift)),
Caffe's, which is autograd's of this form.
"""
import math

import numpy as np
import torch

from .base import Layer, register
from .exp import log_base


@register
class Log(Layer):
    type = "Log"
    in_place_ok = True
    __constants__ = ["scale", "shift", "base_scale"]

    def setup(self):
        p = self.param.log_param
        ln = log_base(self, "log_param.base", float(p.base))
        with np.errstate(all="ignore"):
            base_scale = np.float32(1.0) / ln
        if not math.isfinite(base_scale):
            raise self.error(f"log_param.base is {p.base}: 1 / ln(base) = {base_scale} is not finite "
                             "(base 1 has no logarithm)")
        self.base_scale = float(base_scale)
        self.scale, self.shift = float(p.scale), float(p.shift)

    def forward(self, x):
        y = x
        if self.scale != 1.0:
            y = y * self.scale
        if self.shift != 0.0:
            y = y + self.shift
        y = torch.log(y)
        if self.base_scale != 1.0:
            y = y * self.base_scale
        return y
