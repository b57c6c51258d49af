"""Silence (Caffe's SilenceLayer): consumes any number of bottoms and produces nothing.

It exists so that blobs nobody reads are not net outputs. Its gradient to every bottom is zero
(Caffe's Backward sets the diffs to 0): nothing flows from it, and autograd adds nothing.
"""
from typing import List

import torch

from .base import Layer, register


@register
class Silence(Layer):
    type = "Silence"
    bottoms = (1, None)
    tops = (0, 0)
    takes_list = True

    def reshape(self, bottom_shapes):
        return []

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        return torch.jit.annotate(List[torch.Tensor], [])
