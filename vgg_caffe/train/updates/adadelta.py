"""AdaDelta (Caffe's AdaDeltaSolver, adadelta_solver.cpp), momentum being the decay of both
running averages and the rate still applied at the end (Caffe's examples use base_lr 1):
  g2 = momentum * g2 + (1 - momentum) * diff^2             (history: the first N blobs)
  diff = diff * sqrt((u2 + delta) / (g2 + delta))
  u2 = momentum * u2 + (1 - momentum) * diff^2             (update history: the next N blobs)
  step = local_rate * diff
Caffe has no CHECKs on its parameters."""
import torch

from .base import UpdateRule, f32, register


@register
class AdaDelta(UpdateRule):
    type = "AdaDelta"
    slots = 2

    def step(self, ks, grads, local_rate, iteration):
        g2, u2 = self.slot(0, ks), self.slot(1, ks)
        m, delta = self.param.momentum, self.param.delta
        keep = f32(1.0 - m)
        torch._foreach_mul_(g2, m)
        torch._foreach_add_(g2, torch._foreach_mul(grads, grads), alpha=keep)
        ratio = torch._foreach_div(torch._foreach_add(u2, delta), torch._foreach_add(g2, delta))
        step = torch._foreach_mul(grads, torch._foreach_sqrt(ratio))
        torch._foreach_mul_(u2, m)
        torch._foreach_add_(u2, torch._foreach_mul(step, step), alpha=keep)
        torch._foreach_mul_(step, local_rate)
        return step
