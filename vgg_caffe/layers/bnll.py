"""BNLL (Caffe's BNLLLayer, binomial normal log likelihood): y = log(1 + exp(x)), the softplus.

Computed as Caffe does: x + log(1 + exp(-x)) for x > 0, log(1 + exp(x)) otherwise, the exp in the
input's precision and the rest in double (Caffe writes log(1. + ...), and 1. is a double), the
result rounded back. So exp(-20) ~ 2e-9 survives (1 + 2e-9 is 1 in float), exp(-40) does not.
Gradient exp(x) / (1 + exp(x)), the sigmoid (0.5 at 0, from the x <= 0 branch as Caffe's).
"""
import torch

from .base import Layer, register


@register
class BNLL(Layer):
    type = "BNLL"
    in_place_ok = True

    def forward(self, x):
        # Each branch sees only its own half of x, so the discarded one cannot overflow into NaN.
        pos = torch.clamp(x, min=0.0)
        neg = torch.clamp(x, max=0.0)
        wide = torch.float64
        upper = pos.to(wide) + torch.log(1.0 + torch.exp(-pos).to(wide))
        lower = torch.log(1.0 + torch.exp(neg).to(wide))
        return torch.where(x > 0, upper, lower).to(x.dtype)
