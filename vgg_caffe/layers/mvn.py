"""MVN (Caffe's MVNLayer): mean-variance normalisation of each sample (and channel).

The groups are each (sample, channel) pair, or each sample with across_channels: y = x - mean over
the group, and with normalize_variance (the default) y /= sqrt(var) + eps, var the biased variance
of the group and eps (1e-9) added to the standard deviation, not to the variance (mvn_layer.cpp).
Caffe's MVN uses the legacy 4-d accessors: the bottom may have at most 4 axes, a missing
channel/height/width counts as 1, and the top is the 4-d (N, C, H, W) view, so an (N, C) bottom
gives an (N, C, 1, 1) top.
The gradient is Caffe's (dy - mean(dy) - mean(dy * y) * y) / (sqrt(var) + eps). That is not
exactly the derivative of the forward (eps sits outside the square root), and it stays finite for
a constant group where the true derivative of sqrt is infinite; so the denominator carries
d/dvar = 1 / (2 (sqrt(var) + eps)) instead of sqrt's derivative.
"""
import torch

from .base import Layer, register


@register
class MVN(Layer):
    type = "MVN"
    in_place_ok = True  # as Caffe, whose in-place MVN is right in forward (the graph here is functional)
    __constants__ = ["normalize_variance", "across_channels", "eps"]

    def setup(self):
        p = self.param.mvn_param
        self.normalize_variance = bool(p.normalize_variance)
        self.across_channels = bool(p.across_channels)
        self.eps = float(p.eps)

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if not 1 <= len(shape) <= 4:
            raise self.error(f"bottom shape {shape}: MVN uses Caffe's legacy (num, channels, height, width) "
                             "accessors, allowed 1 to 4 axes")
        return [shape + (1,) * (4 - len(shape))]

    def forward(self, x):
        shape = list(x.shape) + [1] * (4 - x.dim())
        groups = shape[0] if self.across_channels else shape[0] * shape[1]
        d = x.reshape(groups, -1)
        d = d - d.mean(dim=1, keepdim=True)
        if self.normalize_variance:
            var = (d * d).mean(dim=1, keepdim=True)
            std = (torch.sqrt(var) + self.eps).detach()
            # Value sqrt(var) + eps exactly; gradient as Caffe's (see the module docstring).
            denom = std + (var - var.detach()) / (2.0 * std)
            d = d / denom
        return d.reshape(shape)

    def multiply_adds(self):
        n = 1
        for s in self.top_shapes[0]:
            n *= s
        return n * (3 if self.normalize_variance else 1)  # mean, variance, normalise: a pass each
