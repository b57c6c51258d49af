"""RNN (Caffe's RNNLayer, a RecurrentLayer): an Elman network with tanh hidden and output units.

Bottoms x (T, N, ...) and cont (T, N), then an optional static input x_static (N, ...), then, with
recurrent_param.expose_hidden, the initial state h0 (1, N, H). Tops o (T, N, H), then with
expose_hidden the final state hT (1, N, H). Per step t, as Caffe's unrolled net:
    h_t = tanh(W_hh (cont_t * h_{t-1}) + (W_xh x_t + b_h) [+ W_xh_static x_static])
    o_t = tanh(W_ho h_t + b_o)
x is flattened from axis 2 (D = its product) and x_static from axis 1 (Ds).

Blobs, in Caffe's order so that a .caffemodel loads by index: W_xh (H, D), b_h (H,),
[W_xh_static (H, Ds)], W_hh (H, H), W_ho (H, H), b_o (H,); weight_filler fills the weights,
bias_filler the biases.

State, as Caffe: without expose_hidden each forward starts from the hT of the previous one (zeros
at first, or when N changes; `reset()` zeroes it). Gradients reach x, x_static and the weights;
none reaches cont, h0, or comes back from the hT top (Caffe shares only their data). T is fixed
when the layer is built; N may change. debug_info has no effect here.
"""
from typing import List

import torch
import torch.nn.functional as F

from .base import register
from .fillers import fill
from .recurrent import Recurrent


@register
class RNN(Recurrent):
    type = "RNN"
    bottoms = (2, 4)
    tops = (1, 2)
    state_names = ("h0",)
    top_names = ("o", "hT")

    def setup(self):
        self.setup_recurrent()
        h = self.H
        self.add_blob((h, self.D))          # W_xh
        self.add_blob((h,))                 # b_h
        if self.static_input:
            self.add_blob((h, self.Ds))     # W_xh_static
        self.add_blob((h, h))               # W_hh
        self.add_blob((h, h))               # W_ho
        self.add_blob((h,))                 # b_o
        self.register_buffer("h_carry", torch.zeros(0), persistent=False)

    def forward(self, bottoms: List[torch.Tensor]) -> List[torch.Tensor]:
        x, cont = bottoms[0], bottoms[1].detach()
        steps, n = x.shape[0], x.shape[1]
        w_hh, w_ho, b_o = self.blobs[-3], self.blobs[-2], self.blobs[-1]
        x_in = F.linear(x.reshape(steps, n, -1), self.blobs[0], self.blobs[1])
        static = torch.zeros(0)
        if self.static_input:
            static = F.linear(bottoms[2].reshape(n, -1), self.blobs[2]).unsqueeze(0)
        if self.expose_hidden:
            h = bottoms[3 if self.static_input else 2].detach().to(x.dtype)
        else:
            h = self._carried(self.h_carry, n, x)
        outs: List[torch.Tensor] = []
        for t in range(steps):
            pre = F.linear(h * cont[t:t + 1].unsqueeze(-1).to(x.dtype), w_hh) + x_in[t:t + 1]
            if self.static_input:
                pre = pre + static
            h = torch.tanh(pre)
            outs.append(torch.tanh(F.linear(h, w_ho, b_o)))
        h_last = h.detach()
        if not self.expose_hidden:
            self.h_carry = h_last
            return [torch.cat(outs, 0)]
        return [torch.cat(outs, 0), h_last]

    def fill(self, generator=None):
        p = self.param.recurrent_param
        wf = p.weight_filler if p.HasField("weight_filler") else None
        bf = p.bias_filler if p.HasField("bias_filler") else None
        biases = {1, len(self.blobs) - 1}
        for i, blob in enumerate(self.blobs):
            fill(blob, bf if i in biases else wf, generator, self.name)

    def multiply_adds(self):
        return self.T * self.N * self.H * (self.D + 2 * self.H + (self.Ds if self.static_input else 0))
