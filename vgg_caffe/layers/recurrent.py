"""Recurrent (Caffe's RecurrentLayer): what RNN and LSTM share; not a layer type of its own.

Reproduces RecurrentLayer's set-up and shape rules: bottoms x (T, N, ...) with at least 2 axes and
cont (T, N) with exactly 2, then an optional static input x_static (N, ...), then, with
recurrent_param.expose_hidden, one bottom per recurrent state (1, N, num_output); one top, plus
one per recurrent state with expose_hidden. Caffe counts the static input present when there are
more bottoms than 2 plus the exposed states. T is fixed at set-up (Caffe unrolls the net for it);
N may change on reshape. Without expose_hidden the states carry over from one forward to the next
(Caffe copies h_T into h_0 before each forward); `reset()` zeroes them, as Caffe's Reset().
"""
import math

import torch

from .base import Layer


class Recurrent(Layer):
    takes_list = True
    # Subclasses: the recurrent states ("h0", "c0") and the top names, for messages.
    state_names = ()
    top_names = ()
    __constants__ = ["expose_hidden", "static_input", "H"]

    def setup_recurrent(self):
        """Read recurrent_param and the bottom shapes; sets T, N, D, Ds, H, static_input, expose_hidden."""
        p = self.param.recurrent_param
        if p.num_output < 1:
            raise self.error("recurrent_param.num_output is required (> 0)")
        self.H = int(p.num_output)
        self.expose_hidden = bool(p.expose_hidden)
        exposed = len(self.state_names) if self.expose_hidden else 0
        have = len(self.bottom_shapes)
        if have not in (2 + exposed, 3 + exposed):
            wanted = ["x", "cont", "[x_static]"] + (list(self.state_names) if self.expose_hidden else [])
            raise self.error(f"takes {2 + exposed} or {3 + exposed} bottoms ({', '.join(wanted)}) with "
                             f"expose_hidden {str(self.expose_hidden).lower()}, has {have}")
        self.static_input = have == 3 + exposed
        tops = len(self.param.top)
        if tops and tops != 1 + exposed:
            raise self.error(f"takes {1 + exposed} top(s) ({', '.join(self.top_names[:1 + exposed])}) with "
                             f"expose_hidden {str(self.expose_hidden).lower()}, has {tops}")
        x = tuple(self.bottom_shapes[0])
        if len(x) < 2:
            raise self.error(f"bottom '{self._bottom(0)}' has shape {x}; it must have at least 2 axes "
                             "(time steps T, streams N, ...)")
        self.T = int(x[0])
        self.D = math.prod(x[2:])
        self.Ds = math.prod(self.bottom_shapes[2][1:]) if self.static_input else 0

    def _bottom(self, i):
        names = list(self.param.bottom)
        return names[i] if i < len(names) else f"#{i}"

    def reshape(self, bottom_shapes):
        shapes = [tuple(s) for s in bottom_shapes]
        x, cont = shapes[0], shapes[1]
        if len(x) < 2:
            raise self.error(f"bottom '{self._bottom(0)}' has shape {x}; it must have at least 2 axes "
                             "(time steps T, streams N, ...)")
        if x[0] != self.T:
            raise self.error(f"bottom '{self._bottom(0)}' has {x[0]} time steps, but the layer was built for "
                             f"{self.T} (Caffe unrolls the net once; the number of time steps cannot change)")
        if math.prod(x[2:]) != self.D:
            raise self.error(f"bottom '{self._bottom(0)}' {x} has {math.prod(x[2:])} inputs per step from "
                             f"axis 2 on; the weights take {self.D}")
        n = x[1]
        if cont != (self.T, n):
            raise self.error(f"bottom '{self._bottom(1)}' (sequence continuation) has shape {cont}; it must "
                             f"be (T, N) = {(self.T, n)} to match '{self._bottom(0)}' {x}")
        index = 2
        if self.static_input:
            s = shapes[2]
            if len(s) < 1 or s[0] != n:
                raise self.error(f"bottom '{self._bottom(2)}' (static input) has shape {s}; its first axis "
                                 f"must be the {n} streams of '{self._bottom(0)}' {x}")
            if math.prod(s[1:]) != self.Ds:
                raise self.error(f"bottom '{self._bottom(2)}' {s} has {math.prod(s[1:])} inputs from axis 1 "
                                 f"on; the static weights take {self.Ds}")
            index = 3
        state = (1, n, self.H)
        if self.expose_hidden:
            for j, name in enumerate(self.state_names):
                if shapes[index + j] != state:
                    raise self.error(f"bottom '{self._bottom(index + j)}' ({name}) has shape "
                                     f"{shapes[index + j]}; it must be (1, N, num_output) = {state}")
        self.N = n
        tops = [(self.T, n, self.H)]
        if self.expose_hidden:
            tops += [state] * len(self.state_names)
        return tops

    def _carried(self, state: torch.Tensor, n: int, x: torch.Tensor) -> torch.Tensor:
        # The state left by the previous forward, or zeros (first forward, or N changed).
        if list(state.shape) == [1, n, self.H]:
            return state.to(dtype=x.dtype, device=x.device)
        return torch.zeros(1, n, self.H, dtype=x.dtype, device=x.device)

    @torch.jit.unused
    def reset(self):
        """Zero the carried states (Caffe's RecurrentLayer::Reset)."""
        for name, buf in self.named_buffers(recurse=False):
            if name.endswith("_carry"):
                setattr(self, name, torch.zeros(0, dtype=buf.dtype, device=buf.device))
