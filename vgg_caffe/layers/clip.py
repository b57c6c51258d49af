"""Clip (Caffe's ClipLayer): y = max(min, min(x, max)); clip_param.min and max are required.

The gradient passes where min <= x <= max, both ends included, as Caffe's backward. With min > max
Caffe (which does not check) gives min everywhere, and so does this order of the two clamps
(torch.clamp(x, min, max) would give max).
"""
import torch

from .base import Layer, register


@register
class Clip(Layer):
    type = "Clip"
    in_place_ok = True
    __constants__ = ["min", "max"]

    def setup(self):
        p = self.param.clip_param
        missing = [f for f in ("min", "max") if not p.HasField(f)]
        if missing:
            raise self.error(f"clip_param.{' and clip_param.'.join(missing)} "
                             f"{'is' if len(missing) == 1 else 'are'} required: clip_param {{ min: ... max: ... }}")
        self.min, self.max = float(p.min), float(p.max)

    def forward(self, x):
        return torch.clamp(torch.clamp(x, max=self.max), min=self.min)
