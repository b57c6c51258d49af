"""Split (Caffe's SplitLayer): hands one bottom to any number of tops. Caffe inserts it to sum the
gradients of a blob read by several layers; autograd does that already, so here it is an identity
kept for prototxt that name it explicitly."""
from typing import List

import torch

from .base import Layer, register


@register
class Split(Layer):
    type = "Split"
    tops = (1, None)
    __constants__ = ["n_tops"]

    def setup(self):
        self.n_tops = len(self.param.top)

    def reshape(self, bottom_shapes):
        return [tuple(bottom_shapes[0])] * len(self.param.top)

    def forward(self, x) -> List[torch.Tensor]:
        return [x for _ in range(self.n_tops)]
