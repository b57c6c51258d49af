"""Embed (Caffe's EmbedLayer): a lookup table, top[..., :] = weight[index] (+ bias).

embed_param: num_output N and input_dim K (both required, positive), bias_term (default true),
weight_filler / bias_filler. The weight blob is (K, N), transposed from InnerProduct's layout as
Caffe stores it; the bias (N,). The bottom holds indices stored as numbers, any shape; the top
appends N. An index that is not an integer in [0, K) is an error at run time naming the layer
(Caffe's DCHECKs). The weight gradient accumulates rows (an index used twice gets both); the
indices get none (Caffe refuses to backpropagate to them).
"""
import torch
import torch.nn.functional as F

from .base import Layer, register
from .fillers import fill


@register
class Embed(Layer):
    type = "Embed"
    __constants__ = ["bias_term"]

    def setup(self):
        p = self.param.embed_param
        if p.num_output < 1:
            raise self.error("embed_param.num_output is required (> 0)")
        if p.input_dim < 1:
            raise self.error("embed_param.input_dim (the number of rows of the table) is required (> 0)")
        self.N, self.K = int(p.num_output), int(p.input_dim)
        self.bias_term = bool(p.bias_term)
        self.add_blob((self.K, self.N))
        if self.bias_term:
            self.add_blob((self.N,))

    def reshape(self, bottom_shapes):
        return [tuple(bottom_shapes[0]) + (self.N,)]

    def forward(self, x):
        x = x.detach()
        if not torch.jit.is_scripting():
            self._check(x)
        y = F.embedding(x.long(), self.blobs[0])
        if self.bias_term:
            y = y + self.blobs[1]
        return y

    @torch.jit.unused
    def _check(self, x):
        bad = (x < 0) | (x >= self.K) | (x != torch.trunc(x))
        if bool(bad.any()):
            raise self.error(f"index {x[bad][0].item():g} in bottom '{self.param.bottom[0]}' is not an integer in "
                             f"[0, {self.K}) (embed_param.input_dim {self.K})")

    def fill(self, generator=None):
        p = self.param.embed_param
        fill(self.blobs[0], p.weight_filler if p.HasField("weight_filler") else None, generator, self.name)
        if self.bias_term:
            fill(self.blobs[1], p.bias_filler if p.HasField("bias_filler") else None, generator, self.name)

    def multiply_adds(self):
        return 0  # a table lookup (and one addition per output for the bias)
