"""LSTMUnit (Caffe's LSTMUnitLayer): one time step of the LSTM non-linearity.

Bottoms c_prev (1, N, H), gate inputs x (1, N, 4H) in Caffe's order i, f, o, g, and cont (1, N);
tops c (1, N, H) and h (1, N, H):
    i = sigmoid(x_i)   f = cont * sigmoid(x_f) (exactly 0 where cont == 0)   o = sigmoid(x_o)
    g = tanh(x_g)      c = f * c_prev + i * g                                h = o * tanh(c)
with tanh(v) computed as Caffe does, 2 * sigmoid(2v) - 1. The backward is Caffe's: the gradient
of x_f is dc * c_prev * f * (1 - f), f including cont, which is the derivative of the forward
only for cont in {0, 1}; nothing flows into cont. The LSTM layer runs this same function per step.
"""
from typing import List

import torch

from .base import Layer, register


def caffe_tanh(v: torch.Tensor) -> torch.Tensor:
    # Caffe's LSTM kernels write tanh this way (CPU and GPU alike).
    return 2.0 * torch.sigmoid(2.0 * v) - 1.0


def lstm_unit(c_prev: torch.Tensor, x: torch.Tensor, cont: torch.Tensor) -> List[torch.Tensor]:
    """c, h = Caffe's LSTMUnit(c_prev (.., N, H), x (.., N, 4H), cont (.., N))."""
    hidden = c_prev.shape[-1]
    i = torch.sigmoid(x[..., :hidden])
    x_f = x[..., hidden:2 * hidden]
    o = torch.sigmoid(x[..., 2 * hidden:3 * hidden])
    g = caffe_tanh(x[..., 3 * hidden:])
    k = cont.detach().unsqueeze(-1).to(x.dtype)
    f = torch.where(k == 0, torch.zeros_like(x_f), k * torch.sigmoid(x_f)).detach()
    # Caffe's hand-written gradient for x_f is f * (1 - f) (f with cont folded in); the value of
    # this term is exactly f, so the forward is untouched.
    f = f + (f * (1.0 - f)) * (x_f - x_f.detach())
    c = f * c_prev + i * g
    h = o * caffe_tanh(c)
    return [c, h]


@register
class LSTMUnit(Layer):
    type = "LSTMUnit"
    bottoms = (3, 3)
    tops = (2, 2)

    def reshape(self, bottom_shapes):
        c_prev, x, cont = (tuple(s) for s in bottom_shapes)
        names = list(self.param.bottom) or ["c_prev", "x", "cont"]
        for name, shape, axes in zip(names, (c_prev, x, cont), (3, 3, 2)):
            if len(shape) != axes or shape[0] != 1:
                raise self.error(f"bottom '{name}' has shape {shape}; it must have {axes} axes with a "
                                 "first axis of 1 (one time step)")
        n, hidden = c_prev[1], c_prev[2]
        for name, shape in zip(names[1:], (x, cont)):
            if shape[1] != n:
                raise self.error(f"bottom '{name}' has shape {shape}: {shape[1]} streams, but "
                                 f"'{names[0]}' {c_prev} has {n}")
        if x[2] != 4 * hidden:
            raise self.error(f"bottom '{names[1]}' has shape {x}; its last axis must be 4 * {hidden} = "
                             f"{4 * hidden} (gates i, f, o, g of '{names[0]}' {c_prev})")
        return [c_prev, c_prev]

    def forward(self, c_prev, x, cont) -> List[torch.Tensor]:
        return lstm_unit(c_prev, x, cont)

    def multiply_adds(self):
        return 3 * self.top_shapes[0][1] * self.top_shapes[0][2]
