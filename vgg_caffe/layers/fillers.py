"""Caffe's weight fillers (filler.hpp): constant, gaussian, positive_unitball, uniform, xavier, msra, bilinear.

xavier draws uniform(-sqrt(3/n), sqrt(3/n)) and msra gaussian(0, sqrt(2/n)), with n the fan-in,
the fan-out or their mean (variance_norm), fan-in being count/shape[0] and fan-out count/shape[1]
as in Caffe. The paper initialised with gaussian std 0.01 (variance 1e-2... of the std squared,
i.e. N(0, 1e-2)) and zero biases, or with Glorot's (xavier) scheme.
"""
import math

import torch

from ..errors import CaffeError
from ..proto import pb
from .base import fan_in_out


@torch.no_grad()
def fill(tensor, filler, generator=None, where="?"):
    """Fill `tensor` in place from a FillerParameter (None means Caffe's default: constant 0)."""
    kind = filler.type if filler is not None else "constant"
    if filler is None:
        filler = pb.FillerParameter()
    if kind == "constant":
        tensor.fill_(filler.value)
    elif kind == "gaussian":
        tensor.normal_(filler.mean, filler.std, generator=generator)
        if filler.sparse >= 0:
            # Caffe keeps each weight with probability sparse / shape[0] (its num_outputs).
            keep = filler.sparse / (tensor.shape[0] if tensor.dim() else 1)
            tensor.mul_(torch.rand(tensor.shape, generator=generator) < keep)
    elif kind == "positive_unitball":
        # Caffe's PositiveUnitballFiller: uniform in [0, 1], each of the shape[0] rows scaled to sum 1.
        tensor.uniform_(0.0, 1.0, generator=generator)
        rows = tensor.view(tensor.shape[0] if tensor.dim() else 1, -1)
        rows.div_(rows.sum(1, keepdim=True))
    elif kind == "uniform":
        tensor.uniform_(filler.min, filler.max, generator=generator)
    elif kind in ("xavier", "msra"):
        fan_in, fan_out = fan_in_out(tuple(tensor.shape))
        n = {pb.FillerParameter.FAN_IN: fan_in, pb.FillerParameter.FAN_OUT: fan_out,
             pb.FillerParameter.AVERAGE: (fan_in + fan_out) / 2}[filler.variance_norm]
        if kind == "xavier":
            bound = math.sqrt(3.0 / n)
            tensor.uniform_(-bound, bound, generator=generator)
        else:
            tensor.normal_(0.0, math.sqrt(2.0 / n), generator=generator)
    elif kind == "bilinear":
        # Upsampling kernel for deconvolution (Caffe's BilinearFiller), same for every channel.
        # Centre (k - 1) / (2f), as Caffe master's filler.hpp (and its TestFillOdd/TestFillEven):
        # the older (2f - 1 - f % 2) / (2f) is off-centre for k = 2, 3, 6, 7, 10, 11, ...
        k = tensor.shape[-1]
        f = math.ceil(k / 2.0)
        c = (k - 1) / (2.0 * f)
        ramp = 1 - torch.abs(torch.arange(k, dtype=torch.float64) / f - c)
        tensor.copy_((ramp[:, None] * ramp[None, :]).expand_as(tensor))
    else:
        raise CaffeError(f"{where}: unknown filler type '{kind}'; known: constant, gaussian, "
                         "positive_unitball, uniform, xavier, msra, bilinear")
