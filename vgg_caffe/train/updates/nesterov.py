"""Nesterov (Caffe's NesterovSolver): history_new = momentum * history + local_rate * diff; the
step is (1 + momentum) * history_new - momentum * history_old."""
import torch

from .base import UpdateRule, register


@register
class Nesterov(UpdateRule):
    type = "Nesterov"

    def step(self, ks, grads, local_rate, iteration):
        h = self.slot(0, ks)
        momentum = self.param.momentum
        previous = [t.clone() for t in h]
        torch._foreach_mul_(h, momentum)
        torch._foreach_add_(h, grads, alpha=local_rate)
        torch._foreach_mul_(previous, -momentum)
        torch._foreach_add_(previous, h, alpha=1.0 + momentum)
        return previous
