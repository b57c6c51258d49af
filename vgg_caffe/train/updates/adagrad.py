"""AdaGrad (Caffe's AdaGradSolver): history += diff^2; step = local_rate * diff / (sqrt(history) + delta).
Caffe refuses momentum with AdaGrad."""
import torch

from ...errors import CaffeError
from .base import UpdateRule, register


@register
class AdaGrad(UpdateRule):
    type = "AdaGrad"

    def check(self, param):
        if param.momentum != 0:
            raise CaffeError(f"{self.source}: momentum cannot be used with AdaGrad (got {param.momentum}); "
                             "remove it or set it to 0")

    def step(self, ks, grads, local_rate, iteration):
        h = self.slot(0, ks)
        torch._foreach_addcmul_(h, grads, grads)
        return scaled_by_rms(grads, h, self.param.delta, local_rate)


def scaled_by_rms(grads, history, delta, local_rate):
    """local_rate * grads / (sqrt(history) + delta), the step AdaGrad and RMSProp share."""
    denom = torch._foreach_sqrt(history)
    torch._foreach_add_(denom, delta)
    step = torch._foreach_div(grads, denom)
    torch._foreach_mul_(step, local_rate)
    return step
