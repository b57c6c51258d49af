"""Dropout (Caffe's DropoutLayer): TRAIN y = x * mask / (1 - p), mask ~ Bernoulli(1 - p); TEST y = x.

Follows module.training, as nn.Dropout. Without a sample window the mask comes from torch's global
generator. When the net has a SampleWindow (Net.set_sample_window), the mask is drawn for the
whole global batch (window.total rows) from a generator keyed by (seed, iteration, layer name),
and this process keeps rows [start, stop): one process and N processes splitting a batch drop
exactly the same units, so data-parallel training reproduces single-process training.

The keyed generator lives on the input's device and the mask is drawn there: no host work and no
copy per layer (drawing the global batch's mask costs the GPU microseconds, where drawing it on the
CPU and copying took 3 ms per layer at 256 rows). CPU and CUDA generators are different streams
(CUDA's is Philox), so a GPU run drops other units than a CPU run with the same seed; runs on
one device type, with any number of processes, agree exactly.
"""
import torch
import torch.nn.functional as F

from .. import rng
from .base import Layer, register


@register
class Dropout(Layer):
    type = "Dropout"
    in_place_ok = True
    __constants__ = ["ratio"]
    __jit_ignored_attributes__ = ["sample_window"]

    def setup(self):
        self.ratio = float(self.param.dropout_param.dropout_ratio)
        if not 0.0 <= self.ratio < 1.0:
            raise self.error(f"dropout_ratio must be in [0, 1), got {self.ratio}")
        self.sample_window = None
        self.use_window = False

    def set_sample_window(self, window):
        self.sample_window = window
        self.use_window = window is not None

    def forward(self, x):
        if not self.training or self.ratio == 0.0:
            return x
        if self.use_window:
            return x * self._window_mask(x)
        return F.dropout(x, self.ratio, True)

    @torch.jit.unused
    def _window_mask(self, x):
        """mask / (1 - p) for this process's rows of the global batch, drawn on x's device."""
        w = self.sample_window
        total = w.total if w.total is not None else w.stop
        stop = w.stop if w.stop is not None else total
        if stop - w.start != x.shape[0] or not 0 <= w.start <= stop <= total:
            raise self.error(f"sample window [{w.start}, {stop}) of {total} does not match a batch of "
                             f"{x.shape[0]}")
        gen = rng.torch_generator(w.seed, w.iteration, self.name, device=x.device)
        u = torch.rand((total,) + tuple(x.shape[1:]), generator=gen, device=x.device)[w.start:stop]
        return (u >= self.ratio).to(x.dtype) * (1.0 / (1.0 - self.ratio))
