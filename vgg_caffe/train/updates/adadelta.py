"""AdaDelta (Caffe's AdaDeltaSolver), with momentum as the decay of both running averages:
  g2 = momentum * g2 + (1 - momentum) * diff^2             (history, the first N blobs)
  diff *= sqrt((u2 + delta) / (g2 + delta))
  u2 = momentum * u2 + (1 - momentum) * diff^2             (update history, the next N blobs)
  step = local_rate * diff
"""
import torch

from .base import UpdateRule, register


@register
class AdaDelta(UpdateRule):
    type = "AdaDelta"
    slots = 2

    def step(self, ks, grads, local_rate, iteration):
        g2, u2 = self.slot(0, ks), self.slot(1, ks)
        m, delta = self.param.momentum, self.param.delta
        torch._foreach_mul_(g2, m)
        torch._foreach_addcmul_(g2, grads, grads, value=1.0 - m)
        num = torch._foreach_add(u2, delta)
        den = torch._foreach_add(g2, delta)
        ratio = torch._foreach_div(num, den)
        step = torch._foreach_mul(grads, torch._foreach_sqrt(ratio))
        torch._foreach_mul_(u2, m)
        torch._foreach_addcmul_(u2, step, step, value=1.0 - m)
        torch._foreach_mul_(step, local_rate)
        return step
