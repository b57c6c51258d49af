"""PReLU (Caffe's PReLULayer): y = x for x > 0, a_c * x otherwise, a learned slope per channel.

The bottom has at least 2 axes; channels are axis 1. The slope blob is (C,), or with
channel_shared one scalar of shape () (Caffe's Blob(vector<int>(0))), filled from
prelu_param.filler, default constant 0.25. As Caffe's backward, dy/dx is 1 for x > 0 and a_c for
x <= 0 (so a_c at exactly 0), and dy/da_c sums dy * x over the x <= 0 positions of channel c.
"""
import torch

from ..proto import pb
from .base import Layer, register
from .fillers import fill


@register
class PReLU(Layer):
    type = "PReLU"
    in_place_ok = True
    __constants__ = ["channel_shared"]

    def setup(self):
        p = self.param.prelu_param
        shape = self.bottom_shapes[0]
        if len(shape) < 2:
            raise self.error(f"bottom shape {tuple(shape)}: the bottom must have at least 2 axes (N, C, ...)")
        self.channel_shared = bool(p.channel_shared)
        self.add_blob(() if self.channel_shared else (int(shape[1]),))

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if len(shape) < 2:
            raise self.error(f"bottom shape {shape}: the bottom must have at least 2 axes (N, C, ...)")
        if not self.channel_shared and shape[1] != self.blobs[0].shape[0]:
            raise self.error(f"bottom shape {shape} has {shape[1]} channels; the slope blob has "
                             f"{self.blobs[0].shape[0]} (channel_shared: false)")
        return [shape]

    def forward(self, x):
        a = self.blobs[0]
        if not self.channel_shared:
            a = a.reshape([1, a.shape[0]] + [1] * (x.dim() - 2))
        # where (not max + a * min) so that the gradient at x == 0 is a, as Caffe's (x <= 0) branch.
        return torch.where(x > 0, x, x * a)

    def fill(self, generator=None):
        p = self.param.prelu_param
        quarter = pb.FillerParameter(type="constant", value=0.25)
        fill(self.blobs[0], p.filler if p.HasField("filler") else quarter, generator, self.name)
