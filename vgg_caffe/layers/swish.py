"""Swish (Caffe's SwishLayer): y = x * sigmoid(beta * x) (beta default 1).

Gradient beta * y + sigmoid(beta * x) * (1 - beta * y), Caffe's, which is autograd's of this form.
"""
import torch

from .base import Layer, register


@register
class Swish(Layer):
    type = "Swish"
    in_place_ok = True
    __constants__ = ["beta"]

    def setup(self):
        self.beta = float(self.param.swish_param.beta)

    def forward(self, x):
        return x * torch.sigmoid(x * self.beta if self.beta != 1.0 else x)
