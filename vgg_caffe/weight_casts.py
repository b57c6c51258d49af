"""bfloat16 copies of the weights that autocast casts on every pass, kept between inference passes.

Under torch.autocast(bfloat16) every convolution and inner product casts its float32 weight and
bias to bfloat16 on each call: for VGG-16 that is 138 M values read in float32 and written in
bfloat16 per pass, 10-20 % of a bf16 inference pass on a CPU at batch 8 (fc6 alone is 103 M).
Caffe computes with its blobs in the type they are stored in and has no such step. A pass that
builds no autograd graph (torch.no_grad or inference_mode, as testing and evaluation are) needs no float32
weights at all, so the bf16 copies made by one pass serve the next: the values are exactly
autocast's casts (round to nearest even, same memory format), so outputs are bitwise those of
plain autocast. Training passes (grad enabled) cast as autocast does: the float32 master weights
change every step and gradients must reach them. The copies take half the memory of the float32
weights they are made from (276 MB for VGG-16) for as long as the net lives.

What is cast is what autocast would cast: every blob of a Convolution or Deconvolution layer, and
both blobs of an InnerProduct (only the weight when transpose: its bias is added outside the
matmul, in float32). A copy is remade when its weight changes as torch sees changes: a new
tensor (`p.data = ...`, .to(), a layout change), or an in-place write counted by the tensor's
version (optimizer steps, `with torch.no_grad(): p.copy_(w)`, the solver's update, weight files
loaded by copy_from, fillers). Writes torch does not count -- through `p.data` (`p.data.copy_(w)`,
`p.data[...] = w`) or through a numpy view of the memory -- are not seen: after such a write call
net.forget_weight_casts(), or set net.weight_casts = False to cast on every pass. pycaffe nets
(whose numpy views are the way scripts write weights) and the nets a pycaffe solver wraps have
weight_casts off.
"""
import torch
from torch.func import functional_call

from .islands import fp32_only

CAST_TYPES = ("Convolution", "Deconvolution", "InnerProduct")


def cast_blob_indices(layer):
    """Indices of the blobs of `layer` that autocast feeds to a bfloat16 kernel."""
    if layer.type in ("Convolution", "Deconvolution"):
        return range(len(layer.blobs))
    if layer.type == "InnerProduct":
        return range(1) if getattr(layer, "transpose", False) else range(len(layer.blobs))
    return range(0)


def _key(p):
    return (p.data_ptr(), p._version, p.dtype, p.device, tuple(p.shape), tuple(p.stride()))


class WeightCasts:
    """The bf16 copies of one net's autocast-bound parameters, each with the key of the float32
    tensor it was made from."""

    def __init__(self):
        self.copies = {}   # id(param) -> (key, bf16 tensor)

    def forget(self):
        self.copies.clear()

    def cast_params(self, net):
        """{id(param): param} of the parameters autocast would cast."""
        found = {}
        for layer in net.layers.values():
            if layer.type in CAST_TYPES and not fp32_only(layer):   # an FP32 island computes in float32
                for i in cast_blob_indices(layer):
                    p = layer.blobs[i]
                    if p.dtype == torch.float32:
                        found[id(p)] = p
        return found

    def bf16(self, p):
        key = _key(p)
        held = self.copies.get(id(p))
        if held is None or held[0] != key:
            with torch.no_grad():
                held = (key, p.detach().to(torch.bfloat16))   # keeps the memory format
            self.copies[id(p)] = held
        return held[1]

    def run(self, net, module, feeds):
        """module(*feeds) with the net's castable parameters replaced by their bf16 copies."""
        wanted = self.cast_params(net)
        live = set(wanted)
        for stale in [k for k in self.copies if k not in live]:
            del self.copies[stale]      # a layer replaced by surgery: drop its copy
        swap = {name: self.bf16(p) for name, p in module.named_parameters() if id(p) in wanted}
        return functional_call(module, swap, tuple(feeds), strict=False)


def applies(net):
    """Whether an uncompiled pass of `net` may use the cached copies: bf16, no autograd graph, and
    the net allows it. (Compiled passes cast inside the compiled code.)"""
    return net.precision == "bf16" and not torch.is_grad_enabled() and getattr(net, "weight_casts", True)


def casts_of(net):
    held = net.__dict__.get("_weight_casts")
    if held is None:
        held = net.__dict__["_weight_casts"] = WeightCasts()
    return held
