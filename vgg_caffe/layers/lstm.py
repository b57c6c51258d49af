"""LSTM (Caffe's LSTMLayer, a RecurrentLayer): a long short-term memory over T time steps.

Bottoms x (T, N, ...) and cont (T, N), then an optional static input x_static (N, ...), then, with
recurrent_param.expose_hidden, the initial states h0 and c0 (1, N, H). Tops h (T, N, H), then with
expose_hidden the final states hT and cT (1, N, H). Per step t, as Caffe's unrolled net:
    gates_t = W_hc (cont_t * h_{t-1}) + (W_xc x_t + b_c) [+ W_xc_static x_static]
    c_t, h_t = LSTMUnit(c_{t-1}, gates_t, cont_t)     (gates in the order i, f, o, g)
x is flattened from axis 2 (D = its product) and x_static from axis 1 (Ds).

Blobs, in Caffe's order so that a .caffemodel loads by index: W_xc (4H, D), b_c (4H,),
[W_xc_static (4H, Ds)], W_hc (4H, H); weight_filler fills the weights, bias_filler the bias.

State, as Caffe: without expose_hidden the layer starts each forward from the hT, cT of its
previous forward (zeros at first, or when N changes; `reset()` zeroes them, Caffe's Reset), so a
stream continues across batches where cont is 1 at t = 0. Gradients reach x, x_static and the
weights; none reaches cont, and, since Caffe shares only the data of h0/c0 and hT/cT with the
unrolled net, none flows into h0, c0 or out of the hT, cT tops. T is fixed when the layer is
built (Caffe unrolls for it); N may change. debug_info (logging of the unrolled net) has no
effect here.
"""
from typing import List

import torch
import torch.nn.functional as F

from .base import register
from .fillers import fill
from .lstm_unit import lstm_unit
from .recurrent import Recurrent


@register
class LSTM(Recurrent):
    type = "LSTM"
    bottoms = (2, 5)
    tops = (1, 3)
    state_names = ("h0", "c0")
    top_names = ("h", "hT", "cT")

    def setup(self):
        self.setup_recurrent()
        gates = 4 * self.H
        self.add_blob((gates, self.D))          # W_xc
        self.add_blob((gates,))                 # b_c
        if self.static_input:
            self.add_blob((gates, self.Ds))     # W_xc_static
        self.add_blob((gates, self.H))          # W_hc
        self.register_buffer("h_carry", torch.zeros(0), persistent=False)
        self.register_buffer("c_carry", torch.zeros(0), persistent=False)

    def forward(self, bottoms: List[torch.Tensor]) -> List[torch.Tensor]:
        x, cont = bottoms[0], bottoms[1].detach()
        steps, n = x.shape[0], x.shape[1]
        w_x, b = self.blobs[0], self.blobs[1]
        w_h = self.blobs[-1]
        x_gates = F.linear(x.reshape(steps, n, -1), w_x, b)
        static = torch.zeros(0)
        if self.static_input:
            static = F.linear(bottoms[2].reshape(n, -1), self.blobs[2]).unsqueeze(0)
        if self.expose_hidden:
            first = 3 if self.static_input else 2
            h = bottoms[first].detach().to(x.dtype)
            c = bottoms[first + 1].detach().to(x.dtype)
        else:
            h = self._carried(self.h_carry, n, x)
            c = self._carried(self.c_carry, n, x)
        hs: List[torch.Tensor] = []
        for t in range(steps):
            cont_t = cont[t:t + 1]
            gates = F.linear(h * cont_t.unsqueeze(-1).to(x.dtype), w_h) + x_gates[t:t + 1]
            if self.static_input:
                gates = gates + static
            out = lstm_unit(c, gates, cont_t)
            c, h = out[0], out[1]
            hs.append(h)
        h_last, c_last = h.detach(), c.detach()
        if not self.expose_hidden:
            self.h_carry = h_last
            self.c_carry = c_last
            return [torch.cat(hs, 0)]
        return [torch.cat(hs, 0), h_last, c_last]

    def fill(self, generator=None):
        p = self.param.recurrent_param
        wf = p.weight_filler if p.HasField("weight_filler") else None
        bf = p.bias_filler if p.HasField("bias_filler") else None
        for i, blob in enumerate(self.blobs):
            fill(blob, bf if i == 1 else wf, generator, self.name)

    def multiply_adds(self):
        return self.T * self.N * 4 * self.H * (self.D + self.H + (self.Ds if self.static_input else 0))
