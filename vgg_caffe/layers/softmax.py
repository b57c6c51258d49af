"""Softmax (Caffe's SoftmaxLayer): exp(x) / sum exp(x) along `axis` (default 1, the channels)."""
import torch

from .base import Layer, register


def canonical_axis(layer, axis, shape):
    """Caffe's CanonicalAxisIndex: negative axes count from the end; out of range is an error."""
    if not -len(shape) <= axis < len(shape):
        raise layer.error(f"axis {axis} is out of range for a {len(shape)}-d bottom {tuple(shape)}")
    return axis % len(shape)


@register
class Softmax(Layer):
    type = "Softmax"
    fp32_only = True  # probabilities in float32 under bf16 autocast (vgg_caffe.precision)
    __constants__ = ["axis"]

    def setup(self):
        self.axis = canonical_axis(self, self.param.softmax_param.axis, self.bottom_shapes[0])

    def reshape(self, bottom_shapes):
        canonical_axis(self, self.axis, bottom_shapes[0])
        return [tuple(bottom_shapes[0])]

    def forward(self, x):
        return torch.softmax(x, self.axis)
