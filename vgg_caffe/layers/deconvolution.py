"""Deconvolution (Caffe's DeconvolutionLayer): the transpose of Convolution, same parameters.

Weight blob (C_in, num_output/group, kh, kw) as Caffe stores it (torch's conv_transpose layout);
output size s*(H-1) + d*(k-1) + 1 - 2p.
"""
import torch.nn.functional as F

from .base import register
from .convolution import Convolution


@register
class Deconvolution(Convolution):
    type = "Deconvolution"

    def _weight_shape(self, channels, num_output):
        return (channels, num_output // self.group) + self.kernel

    def _channels_in(self):
        return self.blobs[0].shape[0]

    @staticmethod
    def _out_size(size, k, s, pd, d):
        return s * (size - 1) + d * (k - 1) + 1 - 2 * pd

    def forward(self, x):
        if self.bias_term:
            return F.conv_transpose2d(x, self.blobs[0], self.blobs[1], self.stride, self.pad, 0,
                                      self.group, self.dilation)
        return F.conv_transpose2d(x, self.blobs[0], None, self.stride, self.pad, 0, self.group, self.dilation)

    def receptive(self):
        return (1, 1, 0)  # upsampling has no receptive-field step of its own
