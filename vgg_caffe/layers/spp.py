"""SPP (Caffe's SPPLayer): spatial pyramid pooling over pyramid_height levels.

Level l cuts the (H, W) map into 2^l x 2^l bins with a Pooling layer (MAX, AVE or STOCHASTIC as
spp_param.pool) of kernel ceil(H / 2^l), stride = kernel and pad (kernel * 2^l - H + 1) / 2
(integer division; likewise for W), Caffe's GetPoolingParam, so Pooling's own ceil rounding and
window clipping apply. Each level is flattened to (N, C * bins) and the levels are concatenated
along axis 1, coarsest first. With pyramid_height 1 the single level's (N, C, 1, 1) pooling
output is the top, unflattened, as in Caffe. A level whose pad reaches its kernel (an input
smaller than the bins) is Pooling's error, as it is Caffe's; so is STOCHASTIC with a level that
needs padding (Caffe pads only MAX and AVE), i.e. unless 2^l divides H and W at every level.
"""
from typing import List

import torch
from torch import nn

from ..proto import pb
from .base import Layer, register
from .pooling import Pooling


def level_pooling(level, height, width):
    """(kernel, stride, pad) as (h, w) pairs of pyramid level `level` (Caffe's GetPoolingParam)."""
    bins = 2 ** level
    kernel, pad = [], []
    for size in (height, width):
        k = -(-size // bins)  # ceil
        kernel.append(k)
        pad.append((k * bins - size + 1) // 2)
    return tuple(kernel), tuple(kernel), tuple(pad)


@register
class SPP(Layer):
    type = "SPP"
    __constants__ = ["single"]

    def setup(self):
        p = self.param.spp_param
        if p.pyramid_height < 1:
            raise self.error("spp_param.pyramid_height is required (>= 1)")
        self.height = int(p.pyramid_height)
        self.single = self.height == 1
        self.pool_name = pb.SPPParameter.PoolMethod.Name(p.pool)
        self.levels = nn.ModuleList()

    def _level_param(self, level, h, w):
        kernel, stride, pad = level_pooling(level, h, w)
        lp = pb.LayerParameter(name=f"{self.name} level {level}", type="Pooling")
        q = lp.pooling_param
        q.pool = pb.PoolingParameter.PoolMethod.Value(self.pool_name)
        q.kernel_h, q.kernel_w = kernel
        q.stride_h, q.stride_w = stride
        q.pad_h, q.pad_w = pad
        return lp

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4:
            raise self.error(f"expects a 4-d bottom (N, C, H, W), got shape {shape}")
        n, _, h, w = shape
        if h < 1 or w < 1:
            raise self.error(f"bottom {shape} has an empty spatial extent")
        for level in range(self.height):
            lp = self._level_param(level, h, w)
            if level < len(self.levels):
                # Rebuild in place, so the pooling keeps its device (its divisor buffer).
                pool = self.levels[level]
                pool.param = lp
                pool.setup()
                pool.top_shapes = pool.reshape([shape])
            else:
                self.levels.append(Pooling(lp, [shape], self.phase, self.source))
        tops = [pool.top_shapes[0] for pool in self.levels]
        if self.single:
            return [tops[0]]
        return [(n, sum(t[1] * t[2] * t[3] for t in tops))]

    def set_sample_window(self, window):
        """STOCHASTIC levels draw from the net's sample window, each keyed by its own name."""
        for pool in self.levels:
            pool.set_sample_window(window)

    def forward(self, x):
        if self.single:
            return self.levels[0](x)
        outs: List[torch.Tensor] = []
        for pool in self.levels:
            outs.append(pool(x).flatten(1))
        return torch.cat(outs, 1)

    def receptive(self):
        return (1, 1, 0)  # whole-map bins: no fixed receptive field
