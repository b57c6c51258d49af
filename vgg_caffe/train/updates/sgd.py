"""SGD (Caffe's SGDSolver::ComputeUpdateValue): history = momentum * history + local_rate * diff;
the step is the history. The rate sits inside the momentum history, unlike torch.optim.SGD."""
import torch

from .base import UpdateRule, register


@register
class SGD(UpdateRule):
    type = "SGD"

    def step(self, ks, grads, local_rate, iteration):
        h = self.slot(0, ks)
        torch._foreach_mul_(h, self.param.momentum)
        torch._foreach_add_(h, grads, alpha=local_rate)
        return h
