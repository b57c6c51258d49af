"""Convolution + in-place ReLU as one oneDNN call, in bf16 passes without autograd on a CPU.

Caffe nets put a ReLU in place after nearly every convolution (`bottom: "conv1_1" top:
"conv1_1"`), so the convolution's own output is never seen: Caffe overwrites it. Computed apart,
the convolution writes its output to memory and the ReLU reads it back and writes it again; for
VGG-16 at 224 that is 3 x 13 passes over activations of up to 8 x 64 x 224 x 224 values. oneDNN
applies the ReLU to each value as the convolution writes it (a "post-op",
torch.ops.mkldnn._convolution_pointwise), so the activation crosses memory once.

Only bf16 nets fuse. On AMX a bfloat16 convolution is fast enough for those memory passes to
show: fused, VGG-16 inference at batch 8 on 2 cores ran 1.02-1.15x as fast (medians of four
bench_precision runs; 1.05-1.10x round by round). A float32 convolution is bound by its
arithmetic: fused too, fp32 inference measured 0.99-1.05x in three runs (0.98-1.02x round by
round), no gain, while torch computes some float32 convolutions with its own kernels (small
ones, or 1x1 ones in one thread), whose summation order the fused call would not reproduce. So
fp32, Caffe's default, keeps its two calls.

The fused call is oneDNN's convolution, the kernel torch runs for every bfloat16 convolution on a
CPU whose oneDNN supports bfloat16, with max(x, 0) applied to its result: its values are bitwise
those of F.conv2d followed by F.relu under autocast (tests/test_fusion.py checks this against a
hand-written torch twin). Stride 1 only: with stride 2 the two calls differed in 10 of about
3,200 random bfloat16 shapes (all strided, all with a non-square input), so strided convolutions
keep their own call. Anything else the fused op does not cover runs unfused too: a pass that
builds an autograd graph (the fused op has no backward), a ReLU with a negative_slope, a
convolution whose output anything else reads (not in place, or read before the ReLU).

Used by vgg_caffe.precision.rebuilt for bf16 inference passes (torch.no_grad / inference_mode:
testing, evaluation, feature extraction); training passes run the layers as they are.
`net.fuse_conv_relu = False` turns it off for one net.
"""
import torch
from torch import nn

_OP = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)


def _onednn_bf16():
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):   # a build without the query: do not fuse bf16
        return False


_BF16 = _OP is not None and _onednn_bf16()


def available(device_type):
    """Whether fused convolution + ReLU can run on `device_type` with this torch build and CPU."""
    return device_type == "cpu" and _BF16 and torch.backends.mkldnn.is_available()


def fusable(conv, relu):
    """Whether Caffe layers `conv` then `relu` (its only reader) can run as one FusedConvReLU."""
    return (conv.type == "Convolution" and relu.type == "ReLU" and not relu.slope
            and conv.blobs[0].dim() == 4 and tuple(conv.stride) == (1, 1))


class FusedConvReLU(nn.Module):
    """A Convolution layer and the ReLU applied to its output: one oneDNN call in a bf16 pass
    without autograd, else the two layers."""

    def __init__(self, conv, relu):
        super().__init__()
        self.conv, self.relu = conv, relu

    def forward(self, x):
        conv = self.conv
        if torch.is_grad_enabled() or x.dim() != 4 or not torch.is_autocast_enabled("cpu") or not _BF16 \
                or torch.get_autocast_dtype("cpu") != torch.bfloat16 \
                or any(t.dtype not in (torch.float32, torch.bfloat16) for t in (x, conv.blobs[0])):
            return self.relu(conv(x))
        # as autocast casts the three for F.conv2d (the weights may already be bf16 copies)
        x, w = x.to(torch.bfloat16), conv.blobs[0].to(torch.bfloat16)
        b = conv.blobs[1].to(torch.bfloat16) if conv.bias_term else None
        with torch.autocast("cpu", enabled=False):
            return _OP(x, w, b, list(conv.pad), list(conv.stride), list(conv.dilation), conv.group,
                       "relu", [], "")


def fuse(graph, module_of):
    """Rewrite fx `graph` in place: each Convolution node read only by a fusable ReLU node calls a
    FusedConvReLU under the convolution's name, and the ReLU node is gone (its readers, and the
    blob it wrote in place, take the convolution node). `module_of(target)` is the layer a node
    calls, or None for one that must keep its own call. Returns {module name: FusedConvReLU}."""
    fused = {}
    for node in list(graph.nodes):
        if node.op != "call_module" or len(node.users) != 1:
            continue
        (reader,) = node.users
        if reader.op != "call_module" or reader.args != (node,) or reader.kwargs:
            continue
        conv, relu = module_of(node.target), module_of(reader.target)
        if conv is None or relu is None or not fusable(conv, relu):
            continue
        reader.replace_all_uses_with(node)
        graph.erase_node(reader)
        fused[node.target] = FusedConvReLU(conv, relu)
    return fused
