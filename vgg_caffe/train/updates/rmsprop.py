"""RMSProp (Caffe's RMSPropSolver): history = rms_decay * history + (1 - rms_decay) * diff^2;
step = local_rate * diff / (sqrt(history) + delta). Caffe refuses momentum with RMSProp and
requires 0 <= rms_decay <= 1."""
import torch

from ...errors import CaffeError
from .adagrad import scaled_by_rms
from .base import UpdateRule, register


@register
class RMSProp(UpdateRule):
    type = "RMSProp"

    def check(self, param):
        if param.momentum != 0:
            raise CaffeError(f"{self.source}: momentum cannot be used with RMSProp (got {param.momentum}); "
                             "use rms_decay instead")
        if not 0 <= param.rms_decay <= 1:
            raise CaffeError(f"{self.source}: rms_decay should lie between 0 and 1, got {param.rms_decay}")

    def step(self, ks, grads, local_rate, iteration):
        h = self.slot(0, ks)
        decay = self.param.rms_decay
        torch._foreach_mul_(h, decay)
        torch._foreach_addcmul_(h, grads, grads, value=1.0 - decay)
        return scaled_by_rms(grads, h, self.param.delta, local_rate)
