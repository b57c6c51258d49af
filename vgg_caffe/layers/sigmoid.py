"""Sigmoid (Caffe's SigmoidLayer): 1 / (1 + exp(-x)). May run in place."""
import torch

from .base import Layer, register


@register
class Sigmoid(Layer):
    type = "Sigmoid"
    in_place_ok = True

    def forward(self, x):
        return torch.sigmoid(x)
