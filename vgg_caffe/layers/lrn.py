"""LRN (Caffe's LRNLayer): local response normalisation, as used by the paper's A-LRN net.

ACROSS_CHANNELS: scale_c = k + alpha/n * sum of x^2 over the n channels centred on c (channels
outside the blob count as zero), y = x * scale^-beta. The paper's A-LRN uses Krizhevsky's
n=5, alpha=1e-4, beta=0.75, k=2; k matters (OpenCV's Caffe importer drops it, we do not).
WITHIN_CHANNEL: y = x * (1 + alpha * avg_{n x n}(x^2))^-beta, Caffe's AVE pooling of the squares
with pad (n-1)/2 and stride 1, whose divisor is always n*n at that geometry; k is not used.
local_size must be odd, as in Caffe.
"""
import torch.nn.functional as F

from ..proto import pb
from .base import Layer, register


@register
class LRN(Layer):
    type = "LRN"
    __constants__ = ["size", "alpha", "beta", "k", "across"]

    def setup(self):
        p = self.param.lrn_param
        if p.local_size % 2 == 0 or p.local_size < 1:
            raise self.error(f"local_size must be odd and positive, got {p.local_size}")
        self.size = int(p.local_size)
        self.alpha, self.beta, self.k = float(p.alpha), float(p.beta), float(p.k)
        self.across = p.norm_region == pb.LRNParameter.ACROSS_CHANNELS

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if len(shape) != 4:
            raise self.error(f"expects a 4-d bottom (N, C, H, W), got shape {shape}")
        return [shape]

    def forward(self, x):
        pre = (self.size - 1) // 2
        sq = x * x
        if self.across:
            # Mean over a window of n channels with zero padding = (sum over the window) / n.
            # (Padded explicitly: torch's pooling refuses fewer channels than the window.)
            padded = F.pad(sq.unsqueeze(1), [0, 0, 0, 0, pre, pre])
            mean = F.avg_pool3d(padded, (self.size, 1, 1), stride=1).squeeze(1)
            scale = mean * self.alpha + self.k
        else:
            mean = F.avg_pool2d(sq, self.size, stride=1, padding=pre, count_include_pad=True)
            scale = mean * self.alpha + 1.0
        return x * scale.pow(-self.beta)

    def multiply_adds(self):
        n = 1
        for d in self.top_shapes[0]:
            n *= d
        return n * (self.size + 2)  # the window sum, the scale and the product, per element
