"""Convolution (Caffe's ConvolutionLayer): pad/kernel/stride/dilation as one value, one per axis,
or the _h/_w fields; groups; optional bias. Weight blob (O, C/group, kh, kw), bias (O,).
Output size floor((H + 2p - (d(k-1)+1)) / s) + 1, as Caffe's im2col.

2-d only: Caffe's N-d convolution (a bottom other than 4-d, or a channel axis other than 1) is
refused by name. engine and force_nd_im2col choose Caffe's implementation, not its arithmetic,
so they are accepted and have no effect. As Caffe, kernel_size and kernel_h/w (likewise stride,
pad) are exclusive, and kernel, stride, dilation and group must be positive."""
import torch.nn.functional as F

from .base import Layer, pair, register
from .fillers import fill


@register
class Convolution(Layer):
    type = "Convolution"
    __constants__ = ["bias_term", "group"]

    def setup(self):
        p = self.param.convolution_param
        if p.num_output < 1:  # Caffe: CHECK_GT(num_output_, 0)
            raise self.error("convolution_param.num_output is required and must be positive"
                             + (f", got {p.num_output}" if p.HasField("num_output") else ""))
        if len(self.bottom_shapes[0]) != 4:
            raise self.error(f"expects a 4-d bottom (N, C, H, W), got shape {self.bottom_shapes[0]}; Caffe's "
                             "N-d convolution is not supported")
        if p.axis not in (1, -3):
            raise self.error(f"convolution_param.axis {p.axis}: only channel axis 1 (NCHW) is supported")
        for name, hw in (("kernel_size", "kernel"), ("stride", "stride"), ("pad", "pad")):
            if len(getattr(p, name)) and (p.HasField(f"{hw}_h") or p.HasField(f"{hw}_w")):
                raise self.error(f"give convolution_param.{name} or {hw}_h and {hw}_w, not both")
        self.kernel = pair(p, "kernel_size", None, self)
        self.pad = pair(p, "pad", 0, self)
        self.stride = pair(p, "stride", 1, self)
        self.dilation = pair(p, "dilation", 1, self)
        self.group = p.group
        for name, values in (("kernel", self.kernel), ("stride", self.stride), ("dilation", self.dilation),
                             ("group", (self.group,))):
            if min(values) < 1:
                raise self.error(f"convolution_param {name} {tuple(values)} must be positive")
        if min(self.pad) < 0:
            raise self.error(f"convolution_param pad {self.pad} must not be negative")
        channels = self.bottom_shapes[0][1]
        if channels % self.group or p.num_output % self.group:
            raise self.error(f"channels ({channels}) and num_output ({p.num_output}) must divide by group ({self.group})")
        self.add_blob(self._weight_shape(channels, p.num_output))
        self.bias_term = p.bias_term
        if p.bias_term:
            self.add_blob((p.num_output,))

    def _weight_shape(self, channels, num_output):
        return (num_output, channels // self.group) + self.kernel

    def _channels_in(self):
        return self.blobs[0].shape[1] * self.group

    @staticmethod
    def _out_size(size, k, s, pd, d):
        return (size + 2 * pd - (d * (k - 1) + 1)) // s + 1

    def reshape(self, bottom_shapes):
        n, c, h, w = self._check_bottom(bottom_shapes[0])
        out = []
        for size, k, s, pd, d in zip((h, w), self.kernel, self.stride, self.pad, self.dilation):
            o = self._out_size(size, k, s, pd, d)
            if o < 1:
                raise self.error(f"input {h}x{w} is smaller than the kernel {self.kernel[0]}x{self.kernel[1]} (pad {self.pad})")
            out.append(o)
        return [(n, self.param.convolution_param.num_output, out[0], out[1])]

    def _check_bottom(self, shape):
        if len(shape) != 4:
            raise self.error(f"expects a 4-d bottom (N, C, H, W), got shape {shape}")
        if shape[1] != self._channels_in():
            raise self.error(f"expects {self._channels_in()} input channels, got {shape[1]}")
        return shape

    def forward(self, x):
        # bias_term is a TorchScript constant, so the branch without a bias blob is never compiled.
        if self.bias_term:
            return F.conv2d(x, self.blobs[0], self.blobs[1], self.stride, self.pad, self.dilation, self.group)
        return F.conv2d(x, self.blobs[0], None, self.stride, self.pad, self.dilation, self.group)

    def fill(self, generator=None):
        p = self.param.convolution_param
        fill(self.blobs[0], p.weight_filler if p.HasField("weight_filler") else None, generator, self.name)
        if self.bias_term:
            fill(self.blobs[1], p.bias_filler if p.HasField("bias_filler") else None, generator, self.name)

    def multiply_adds(self):
        # Every weight meets every output position once (for deconvolution: every input position).
        n, _, h, w = self.top_shapes[0] if self.type == "Convolution" else self.bottom_shapes[0]
        return self.blobs[0].numel() * h * w * n

    def receptive(self):
        return (self.dilation[0] * (self.kernel[0] - 1) + 1, self.stride[0], self.pad[0])
