"""ArgMax (Caffe's ArgMaxLayer): the indices (and optionally values) of the top_k largest entries.

With `axis` set, the top has the bottom's shape with that axis replaced by top_k, holding the
indices, or with out_max_val the values instead. Without `axis` each sample's entries are
flattened (count(1) of them) and the top is (N, 1, top_k), or (N, 2, top_k) with out_max_val:
row 0 the indices, row 1 the values; padded with 1s to the bottom's number of axes when it has
more than 3. Ties go to the larger index, as Caffe's partial_sort of (value, index) pairs under
std::greater. Indices are stored as numbers of the bottom's dtype. Caffe has no backward for
ArgMax, so the top carries no gradient.
"""
from typing import List

import torch

from .base import Layer, register
from .softmax import canonical_axis


@register
class ArgMax(Layer):
    type = "ArgMax"
    __constants__ = ["has_axis", "axis", "top_k", "out_max_val"]

    def setup(self):
        p = self.param.argmax_param
        shape = self.bottom_shapes[0]
        self.top_k = int(p.top_k)
        self.out_max_val = bool(p.out_max_val)
        self.has_axis = p.HasField("axis")
        if self.top_k < 1:
            raise self.error("argmax_param.top_k must be at least 1")
        self.axis = canonical_axis(self, p.axis, shape) if self.has_axis else 1

    def reshape(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        if self.has_axis:
            self.axis = canonical_axis(self, self.param.argmax_param.axis, shape)
            if self.top_k > shape[self.axis]:
                raise self.error(f"top_k {self.top_k} exceeds axis {self.axis} of bottom {shape} "
                                 f"(size {shape[self.axis]})")
            return [shape[:self.axis] + (self.top_k,) + shape[self.axis + 1:]]
        per_sample = 1
        for d in shape[1:]:
            per_sample *= d
        if self.top_k > per_sample:
            raise self.error(f"top_k {self.top_k} exceeds the {per_sample} entries per sample of bottom {shape}")
        top = [1] * max(len(shape), 3)
        top[0], top[1], top[2] = shape[0], 2 if self.out_max_val else 1, self.top_k
        return [tuple(top)]

    def _top_k(self, rows):
        """Values and indices of the top_k largest along the last axis; ties to the larger index."""
        n = rows.shape[-1]
        # Reversed, a stable descending sort puts equal values in descending original index.
        values, order = torch.sort(rows.flip(-1), dim=-1, descending=True, stable=True)
        return values[..., :self.top_k], (n - 1 - order[..., :self.top_k]).to(rows.dtype)

    def forward(self, x):
        x = x.detach()
        if self.has_axis:
            values, index = self._top_k(x.movedim(self.axis, -1))
            out = values if self.out_max_val else index
            return out.movedim(-1, self.axis)
        per_sample = 1
        for d in x.shape[1:]:
            per_sample *= d
        values, index = self._top_k(x.reshape(x.shape[0], per_sample))
        out = torch.stack([index, values], 1) if self.out_max_val else index.unsqueeze(1)
        shape: List[int] = [out.shape[0], out.shape[1], out.shape[2]]
        for _ in range(3, x.dim()):
            shape.append(1)
        return out.reshape(shape)
