"""TanH (Caffe's TanHLayer): tanh(x). May run in place."""
import torch

from .base import Layer, register


@register
class TanH(Layer):
    type = "TanH"
    in_place_ok = True

    def forward(self, x):
        return torch.tanh(x)
