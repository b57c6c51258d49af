"""Adam (Caffe's AdamSolver, adam_solver.cpp): beta1 = momentum, beta2 = momentum2 (0.999),
eps = delta (1e-8), t = iteration + 1 (the 0-based iteration being updated):
  m = beta1 * m + (1 - beta1) * diff                      (history: the first N blobs)
  v = beta2 * v + (1 - beta2) * diff^2                    (the next N blobs)
  step = local_rate * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)
The bias correction multiplies the rate, as in Caffe, rather than m and v (so eps is not
corrected: this is not torch.optim.Adam's arithmetic). Caffe has no CHECKs on its parameters;
we refuse momentum 1 alone, whose correction divides by zero.
"""
import math

import torch

from ...errors import CaffeError
from .base import UpdateRule, f32, register


@register
class Adam(UpdateRule):
    type = "Adam"
    slots = 2

    def check(self, param):
        if param.momentum == 1:
            raise CaffeError(f"{self.source}: Adam's beta1 (momentum) is 1, so its bias correction "
                             "1 - beta1^t is 0; allowed: 0 <= momentum < 1 (Caffe's examples use 0.9)")

    def step(self, ks, grads, local_rate, iteration):
        m, v = self.slot(0, ks), self.slot(1, ks)
        beta1, beta2, eps = self.param.momentum, self.param.momentum2, self.param.delta
        t = iteration + 1
        # Caffe computes the correction in double (pow) and stores it as Dtype.
        correction = f32(math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t))
        torch._foreach_mul_(m, beta1)
        torch._foreach_add_(m, grads, alpha=f32(1.0 - beta1))
        torch._foreach_mul_(v, beta2)
        torch._foreach_add_(v, torch._foreach_mul(grads, grads), alpha=f32(1.0 - beta2))
        denom = torch._foreach_sqrt(v)
        torch._foreach_add_(denom, eps)
        step = torch._foreach_div(m, denom)
        torch._foreach_mul_(step, f32(local_rate * correction))
        return step
