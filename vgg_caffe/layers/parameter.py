"""Parameter (Caffe's ParameterLayer): one learnable blob of parameter_param.shape as its top.

No bottoms. The blob is the top itself (Caffe shares data and diff), so whatever reads the top
trains it. Caffe gives it no filler: it starts at zero unless a .caffemodel supplies it.
"""
import torch
from torch import nn

from .base import Layer, register


@register
class Parameter(Layer):
    type = "Parameter"
    bottoms = (0, 0)

    def setup(self):
        p = self.param.parameter_param
        if not p.HasField("shape"):
            raise self.error("parameter_param.shape is required")
        self.shape = tuple(int(d) for d in p.shape.dim)
        if any(d < 0 for d in self.shape):
            raise self.error(f"parameter_param.shape {self.shape} has a negative dim")
        self.blobs.append(nn.Parameter(torch.zeros(self.shape)))  # also a 0-d shape, unlike add_blob

    def reshape(self, bottom_shapes):
        return [self.shape]

    def forward(self):
        return self.blobs[0]
