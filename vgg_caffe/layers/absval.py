"""AbsVal (Caffe's AbsValLayer): y = |x|, gradient sign(x) (0 at 0). Caffe refuses in-place use."""
import torch

from .base import Layer, register


@register
class AbsVal(Layer):
    type = "AbsVal"
    in_place_ok = False  # CHECK_NE(top, bottom) in Caffe's LayerSetUp

    def forward(self, x):
        return torch.abs(x)
