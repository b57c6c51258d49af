"""Bias (Caffe's BiasLayer): y = x + b, b broadcast over the axes of x it does not cover.

b covers the `num_axes` axes of x starting at `axis` (default axis 1, num_axes 1: one value per
channel; num_axes -1: every axis from `axis` on; num_axes 0: one scalar). b is a learned blob of
that shape (bias_param.filler, default constant 0), or the second bottom, whose whole shape must
equal those axes of x (num_axes is then ignored). A scalar b (no axes) ignores `axis`, as Caffe
sets axis 0 for it. Scale reuses `covered_shape` and `check_covers` for its own scale and bias.
"""
from typing import List, Optional

import torch

from .base import Layer, register
from .fillers import fill


def bottom_name(layer, i):
    return layer.param.bottom[i] if len(layer.param.bottom) > i else str(i)


def canonical(layer, field, axis, shape):
    """Caffe's CanonicalAxisIndex for `field` (e.g. "bias_param.axis"): negative counts from the end."""
    if not -len(shape) <= axis < len(shape):
        raise layer.error(f"{field} {axis} is out of range for the {len(shape)}-d bottom "
                          f"'{bottom_name(layer, 0)}' {tuple(shape)}; allowed {-len(shape)} to {len(shape) - 1}")
    return axis % len(shape)


def covered_shape(layer, prefix, shape, axis, num_axes):
    """The shape of a learned blob covering `num_axes` axes of `shape` from `axis` (LayerSetUp)."""
    axis = canonical(layer, f"{prefix}.axis", axis, shape)
    if num_axes < -1:
        raise layer.error(f"{prefix}.num_axes is {num_axes}; allowed: -1 (every axis from axis {axis} on) or >= 0")
    if num_axes >= 0 and axis + num_axes > len(shape):
        raise layer.error(f"{prefix}.num_axes {num_axes} from axis {axis} extends past the {len(shape)}-d bottom "
                          f"'{bottom_name(layer, 0)}' {tuple(shape)}")
    end = len(shape) if num_axes == -1 else axis + num_axes
    return tuple(shape[axis:end])


def check_covers(layer, what, prefix, shape, axis, operand):
    """Caffe's Reshape checks: `operand` (a blob's or a bottom's shape) must equal the axes of
    `shape` it covers from `axis` (any axis for a scalar). Returns the axis to broadcast from."""
    shape, operand = tuple(shape), tuple(operand)
    if not operand:
        return 0
    axis = canonical(layer, f"{prefix}.axis", axis, shape)
    covered = shape[axis:axis + len(operand)]
    if axis + len(operand) > len(shape) or covered != operand:
        raise layer.error(f"{what} has shape {operand}, which does not match the axes {axis}.."
                          f"{axis + len(operand) - 1} of the bottom '{bottom_name(layer, 0)}' {shape} "
                          f"({covered} there); set {prefix}.axis / num_axes so that it does")
    return axis


def broadcast_shape(t: torch.Tensor, axis: int, rank: int) -> List[int]:
    """The view of `t` that lines its axes up with axes axis.. of a rank-`rank` tensor."""
    return [1] * axis + list(t.shape) + [1] * (rank - axis - t.dim())


@register
class Bias(Layer):
    type = "Bias"
    bottoms = (1, 2)
    in_place_ok = True
    __constants__ = ["axis", "two_bottoms"]

    def setup(self):
        p = self.param.bias_param
        self.two_bottoms = len(self.bottom_shapes) == 2
        if not self.two_bottoms:
            self.add_blob(covered_shape(self, "bias_param", self.bottom_shapes[0], p.axis, p.num_axes))

    def reshape(self, bottom_shapes):
        p = self.param.bias_param
        if self.two_bottoms:
            what, operand = f"the bias bottom '{bottom_name(self, 1)}'", bottom_shapes[1]
        else:
            what, operand = "the bias blob", self.blobs[0].shape
        self.axis = check_covers(self, what, "bias_param", bottom_shapes[0], p.axis, operand)
        return [tuple(bottom_shapes[0])]

    def forward(self, x, bias: Optional[torch.Tensor] = None):
        # two_bottoms is a TorchScript constant: only the branch this layer uses is compiled.
        if self.two_bottoms:
            assert bias is not None
            b = bias
        else:
            b = self.blobs[0]
        return x + b.reshape(broadcast_shape(b, self.axis, x.dim()))

    def fill(self, generator=None):
        if not self.two_bottoms:
            fill(self.blobs[0], self.param.bias_param.filler, generator, self.name)

    def multiply_adds(self):
        n = 1
        for d in self.top_shapes[0]:
            n *= d
        return n  # one add per element
