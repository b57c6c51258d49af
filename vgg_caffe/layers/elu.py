"""ELU (Caffe's ELULayer): y = x for x > 0, alpha * (exp(x) - 1) otherwise (alpha default 1).

Caffe writes exp(x) - 1 (not expm1) on min(x, 0); its gradient is 1 for x > 0 and
alpha * exp(x) = y + alpha for x <= 0 (alpha at exactly 0), which is autograd's of this form.
"""
import torch

from .base import Layer, register


@register
class ELU(Layer):
    type = "ELU"
    in_place_ok = True
    __constants__ = ["alpha"]

    def setup(self):
        self.alpha = float(self.param.elu_param.alpha)

    def forward(self, x):
        # The clamp keeps exp finite on the branch where() discards (else inf * 0 = NaN in backward).
        negative = self.alpha * (torch.exp(torch.clamp(x, max=0.0)) - 1.0)
        return torch.where(x > 0, x, negative)
