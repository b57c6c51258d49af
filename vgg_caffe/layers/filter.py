"""Filter (Caffe's FilterLayer): keeps the samples a selector marks, in every other bottom.

The last bottom is the selector, of shape (N,) or (N, 1, ...): sample n of each other bottom
goes to the matching top when selector[n] != 0, in order. There is one top per filtered bottom,
and each bottom must share the selector's N. The tops' batch size depends on the data: at set-up
it is N, as Caffe's first Reshape; each forward gives the number of selected samples, possibly
0 (empty tops, as Caffe), and Net.blob_shapes follows it after the pass. The gradient reaches
the selected samples only (zero elsewhere); the selector gets none (Caffe refuses to
backpropagate to it).
"""
from typing import List

import torch

from .base import Layer, register


@register
class Filter(Layer):
    type = "Filter"
    bottoms = (2, None)
    tops = (1, None)
    takes_list = True

    def setup(self):
        if len(self.param.top) != len(self.param.bottom) - 1:
            raise self.error(f"{len(self.param.top)} tops for {len(self.param.bottom)} bottoms; Filter has one top "
                             "per bottom except the last (the selector)")

    def reshape(self, bottom_shapes):
        names = list(self.param.bottom)
        selector = tuple(bottom_shapes[-1])
        if not selector or any(d != 1 for d in selector[1:]):
            raise self.error(f"selector '{names[-1]}' has shape {selector}; it must be (N,) or (N, 1, ...)")
        for name, shape in zip(names[:-1], bottom_shapes[:-1]):
            if not shape or shape[0] != selector[0]:
                raise self.error(f"bottom '{name}' has shape {tuple(shape)} but the selector '{names[-1]}' has "
                                 f"{selector[0]} samples; each bottom needs the selector's first dim")
        return [tuple(s) for s in bottom_shapes[:-1]]

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        selector = xs[-1].detach().reshape(-1)
        keep = torch.nonzero(selector != 0).reshape(-1)
        return [x.index_select(0, keep) for x in xs[:-1]]
