"""BatchNorm (Caffe's BatchNormLayer): y = (x - mean) / sqrt(var + eps) per channel, no affine part
(Caffe nets follow it with a Scale layer, bias_term: true).

Channels are axis 1 (a 1-d bottom is one channel); the statistics run over every other axis, so
m = N * (product of the spatial axes) values per channel. Three blobs, in Caffe's order and shapes:
the running mean sum (C,), the running variance sum (C,) and a one-element scale factor (1,).
- use_global_stats (default: phase == TEST, fixed when the layer is built, as Caffe's LayerSetUp):
  mean = blob0 * k, var = blob1 * k with k = 1 / blob2 (k = 0 when blob2 is 0, a fresh net).
- otherwise: the batch's mean and biased variance (divided by m), then, in place and outside
  autograd, factor = factor * maf + 1, mean_sum = batch_mean + maf * mean_sum and
  var_sum = m / (m - 1) * batch_var + maf * var_sum (correction 1 when m == 1), maf being
  moving_average_fraction (0.999). The gradient is autograd's through the batch statistics, which
  is Caffe's (dy - mean(dy) - mean(dy * y) * y) / sqrt(var + eps).
The blobs are statistics, not weights: Caffe forces lr_mult 0 on them (appending param { lr_mult: 0 }
entries to this layer's definition and refusing any other lr_mult), and they are
nn.Parameter(requires_grad=False), so autograd and the solver leave them alone while .caffemodel /
HDF5 I/O still reads and writes them as the layer's blobs.
"""
import torch
from torch import nn

from ..proto import pb
from .base import Layer, register


@register
class BatchNorm(Layer):
    type = "BatchNorm"
    fp32_only = True  # statistics in float32 under bf16 autocast (vgg_caffe.precision)
    in_place_ok = True
    __constants__ = ["channels", "use_global_stats", "maf", "eps"]

    def setup(self):
        p = self.param.batch_norm_param
        self._mask_statistics()
        self.use_global_stats = p.use_global_stats if p.HasField("use_global_stats") else self.phase == "TEST"
        self.maf = float(p.moving_average_fraction)
        self.eps = float(p.eps)
        if self.eps < 0:
            # Caffe does not check, but sqrt(var + eps) is then NaN wherever var < -eps.
            raise self.error(f"batch_norm_param.eps is {self.eps}; it must be >= 0 (default 1e-5)")
        shape = self.bottom_shapes[0]
        if len(shape) < 1:
            raise self.error("expects a bottom with at least one axis (N, C, ...)")
        self.channels = 1 if len(shape) == 1 else int(shape[1])
        for size in ((self.channels,), (self.channels,), (1,)):
            self.blobs.append(nn.Parameter(torch.zeros(size), requires_grad=False))

    def _mask_statistics(self):
        """Caffe's LayerSetUp: a ParamSpec with lr_mult 0 for each statistics blob the definition
        does not configure, and a refusal if it configures one as learnable. Works on a copy of
        the LayerParameter, as Caffe's layer owns its own."""
        specs = list(self.param.param)
        for i, spec in enumerate(specs[:3]):
            if spec.lr_mult != 0:
                raise self.error(f"param[{i}].lr_mult is {spec.lr_mult}: batch normalization statistics "
                                 "cannot be configured as learnable parameters; allowed: lr_mult 0 (or no param)")
        if len(specs) < 3:
            own = pb.LayerParameter()
            own.CopyFrom(self.param)
            for _ in range(3 - len(specs)):
                own.param.add(lr_mult=0.0)
            self.param = own

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        channels = 1 if len(shape) == 1 else (shape[1] if shape else 0)
        if channels != self.channels:
            name = self.param.bottom[0] if self.param.bottom else "0"
            raise self.error(f"bottom '{name}' has shape {shape}, "
                             f"{channels} channels on axis 1; the statistics blobs have {self.channels}")
        return [shape]

    def forward(self, x):
        c = self.channels
        x3 = x.reshape(x.shape[0], c, -1)  # (N, C, spatial): one row of statistics per channel
        if self.use_global_stats:
            factor = self.blobs[2]
            k = torch.where(factor == 0, torch.zeros_like(factor), 1.0 / factor)
            mean = self.blobs[0] * k
            var = self.blobs[1] * k
        else:
            mean = x3.mean(dim=[0, 2])
            centred = x3 - mean.reshape(1, c, 1)
            var = (centred * centred).mean(dim=[0, 2])
            self._update_statistics(mean, var, x3.shape[0] * x3.shape[2])
        y = (x3 - mean.reshape(1, c, 1)) / torch.sqrt(var + self.eps).reshape(1, c, 1)
        return y.reshape(x.shape)

    def _update_statistics(self, mean, var, m: int):
        correction = float(m) / (m - 1) if m > 1 else 1.0
        with torch.no_grad():
            s_mean, s_var, factor = self.blobs[0], self.blobs[1], self.blobs[2]
            factor.mul_(self.maf).add_(1.0)
            s_mean.mul_(self.maf).add_(mean.detach().to(s_mean.dtype))
            s_var.mul_(self.maf).add_(var.detach().to(s_var.dtype), alpha=correction)

    def fill(self, generator=None):
        # Caffe starts the statistics at zero (there is no filler for them).
        with torch.no_grad():
            for b in self.blobs:
                b.zero_()

    def multiply_adds(self):
        n = 1
        for d in self.top_shapes[0]:
            n *= d
        return n  # the subtraction and division per element (the statistics are cheaper)
