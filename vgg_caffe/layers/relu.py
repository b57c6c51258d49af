"""ReLU (Caffe's ReLULayer): max(x, 0) + negative_slope * min(x, 0). Usually in place."""
import torch.nn.functional as F

from .base import Layer, register


@register
class ReLU(Layer):
    type = "ReLU"
    in_place_ok = True

    def setup(self):
        self.slope = self.param.relu_param.negative_slope
        self.inplace = False  # set by Net where Caffe's in-place write is safe for autograd

    def forward(self, x):
        if self.slope:
            return F.leaky_relu(x, self.slope, inplace=self.inplace)
        return F.relu(x, inplace=self.inplace)
