"""Adam (Caffe's AdamSolver): beta1 = momentum, beta2 = momentum2, eps = delta, t = iteration + 1;
  m = beta1 * m + (1 - beta1) * diff                      (history, the first N blobs)
  v = beta2 * v + (1 - beta2) * diff^2                    (the next N blobs)
  step = local_rate * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)
The bias correction multiplies the rate, as in Caffe, rather than m and v.
"""
import math

import torch

from .base import UpdateRule, register


@register
class Adam(UpdateRule):
    type = "Adam"
    slots = 2

    def step(self, ks, grads, local_rate, iteration):
        m, v = self.slot(0, ks), self.slot(1, ks)
        beta1, beta2, eps = self.param.momentum, self.param.momentum2, self.param.delta
        t = iteration + 1
        correction = math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
        torch._foreach_mul_(m, beta1)
        torch._foreach_add_(m, grads, alpha=1.0 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1.0 - beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_add_(denom, eps)
        step = torch._foreach_div(m, denom)
        torch._foreach_mul_(step, local_rate * correction)
        return step
