"""AdaGrad (Caffe's AdaGradSolver, adagrad_solver.cpp):
  history += diff^2                                        (one history blob per learnable blob)
  step = local_rate * diff / (sqrt(history) + delta)
Caffe's constructor CHECKs that momentum is 0: AdaGrad has no momentum term."""
import torch

from ...errors import CaffeError
from .base import UpdateRule, register


@register
class AdaGrad(UpdateRule):
    type = "AdaGrad"

    def check(self, param):
        if param.momentum != 0:
            raise CaffeError(f"{self.source}: momentum cannot be used with AdaGrad (momentum: {param.momentum:g}); "
                             "allowed: momentum 0 (remove the field)")

    def step(self, ks, grads, local_rate, iteration):
        h = self.slot(0, ks)
        torch._foreach_add_(h, torch._foreach_mul(grads, grads))
        return scaled_by_rms(grads, h, self.param.delta, local_rate)


def scaled_by_rms(grads, history, delta, local_rate):
    """local_rate * grads / (sqrt(history) + delta), the step AdaGrad and RMSProp share, in
    Caffe's order (the quotient first, then the rate)."""
    denom = torch._foreach_sqrt(history)
    torch._foreach_add_(denom, delta)
    step = torch._foreach_div(grads, denom)
    torch._foreach_mul_(step, local_rate)
    return step
