"""Layers that compute in float32 inside a bf16 net (the "islands" of vgg_caffe.precision).

Two kinds:

FP32Island  layers whose results must be float32 whatever the net runs in: the class sets
            `fp32_only = True` (Softmax, Accuracy, BatchNorm) or it is a loss. They run outside
            autocast on float32 copies of their bottoms.

FewRowsProduct  an InnerProduct on a CPU with at most FLOAT32_ROWS rows (the product of the
            bottom's axes before `axis`: the batch, for fc layers), in a pass that builds an
            autograd graph (training), where autocast casts the float32 master weight to bfloat16
            on every pass. Such a product is bound by reading the weight, not by arithmetic:
            autocast reads the float32 weight, writes a bfloat16 copy and reads that, and in a
            training pass writes the weight's gradient in bfloat16 and converts it to float32
            again; the float32 product reads the weight once and writes the gradient once. fc6
            of VGG-16 at batch 8, forward + backward on 2 cores (AMX): 102 ms in float32 against
            158 ms under autocast; at 64 rows autocast is ahead (168 against 234 ms), hence the
            limit of 32. The result is the float32 product, bitwise what an fp32
            net computes from the same bottom, so it is more exact than bf16, never less.
            The rows are those this process computes: a batch split over processes or
            sub-batches (iter_size) has fewer, so a bf16 run's fc layers may compute in float32
            in one split and in bfloat16 in another (fp32 runs do not depend on it).
            Passes without autograd run it under autocast as any other layer: their weight casts
            are made once and reused (vgg_caffe.weight_casts), so the bfloat16 product, reading
            half the bytes, is the faster one there; so do CUDA nets, whose memory is fast.
"""
import math

import torch
from torch import nn

LOW = (torch.bfloat16, torch.float16)
FLOAT32_ROWS = 32


def to_fp32(value):
    """`value` with its low-precision tensors (also inside a list of bottoms) made float32."""
    if isinstance(value, (list, tuple)):  # the bottoms of a takes_list layer
        return [to_fp32(v) for v in value]
    if isinstance(value, torch.Tensor) and value.dtype in LOW:
        return value.float()
    return value


def fp32_only(layer):
    """Whether `layer` runs in float32 under bf16: its class says so, or it is a loss."""
    return bool(getattr(layer, "fp32_only", False) or getattr(layer, "is_loss", False))


class FP32Island(nn.Module):
    """Runs a layer outside autocast on float32 copies of its low-precision bottoms."""

    def __init__(self, layer, device_type):
        super().__init__()
        self.layer, self.device_type = layer, device_type

    def forward(self, *bottoms):
        with torch.autocast(self.device_type, enabled=False):
            return self.layer(*[to_fp32(b) for b in bottoms])


class FewRowsProduct(FP32Island):
    """A CPU InnerProduct that runs as an FP32Island when it has few rows and its weight would be
    cast (see the module docstring); otherwise as under autocast."""

    def __init__(self, layer):
        super().__init__(layer, "cpu")

    def forward(self, x):
        if torch.is_grad_enabled() and self.layer.blobs[0].dtype == torch.float32 \
                and math.prod(x.shape[:self.layer.axis]) <= FLOAT32_ROWS:
            return super().forward(x)
        return self.layer(x)


def island_for(layer, device_type):
    """The wrapper `layer` runs in under bf16 autocast on `device_type`, or None (runs as it is)."""
    if fp32_only(layer):
        return FP32Island(layer, device_type)
    if layer.type == "InnerProduct" and device_type == "cpu":
        return FewRowsProduct(layer)
    return None
