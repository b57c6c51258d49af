"""RMSProp (Caffe's RMSPropSolver, rmsprop_solver.cpp):
  history = rms_decay * history + (1 - rms_decay) * diff^2   (one history blob per learnable blob)
  step = local_rate * diff / (sqrt(history) + delta)
Caffe's constructor CHECKs momentum == 0 (the decay is rms_decay, default 0.99) and
0 <= rms_decay < 1."""
import torch

from ...errors import CaffeError
from .adagrad import scaled_by_rms
from .base import UpdateRule, f32, register


@register
class RMSProp(UpdateRule):
    type = "RMSProp"

    def check(self, param):
        if param.momentum != 0:
            raise CaffeError(f"{self.source}: momentum cannot be used with RMSProp (momentum: {param.momentum:g}); "
                             "allowed: momentum 0 (the decay of the mean square is rms_decay)")
        if not 0 <= param.rms_decay < 1:
            raise CaffeError(f"{self.source}: rms_decay should lie between 0 and 1 (got {param.rms_decay:g}); "
                             "allowed: 0 <= rms_decay < 1")

    def step(self, ks, grads, local_rate, iteration):
        h = self.slot(0, ks)
        decay = self.param.rms_decay
        torch._foreach_mul_(h, decay)
        torch._foreach_add_(h, torch._foreach_mul(grads, grads), alpha=f32(1.0 - decay))
        return scaled_by_rms(grads, h, self.param.delta, local_rate)
