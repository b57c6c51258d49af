"""Speed options of a Net: numeric precision, activation memory layout, and torch.compile.

Caffe computes in float32 and that stays the default, so results are Caffe's; the rest are
options whose effect on the numbers is measured (bench/bench_precision.py) and stated here.

precision: "fp32" (default), "tf32" or "bf16" (Net(..., precision=...), net.precision = ...,
`--precision` on the command-line tools).
  fp32  true float32 everywhere. torch allows TF32 in cuDNN convolutions by default
        (torch.backends.cudnn.allow_tf32 is True), which on Ampere and later GPUs rounds the
        inputs of every convolution to a 10-bit mantissa; fp32 mode switches that off, and
        cuBLAS TF32 as well, so a GPU computes what Caffe's GPU path computes.
  tf32  TF32 tensor cores for the convolutions and matmuls of a CUDA net (float32 storage,
        products of 10-bit mantissas, about 1e-3 relative error each). On a CPU the same as fp32.
  bf16  torch.autocast(bfloat16) over the graph, on the net's device type: convolutions and inner
        products multiply bfloat16 values (8-bit mantissa) and accumulate in float32 (oneDNN's AMX
        kernels on CPUs that have them, tensor cores on GPUs). Parameters stay float32: they are
        the master weights, their .grad arrive in float32 and the solver applies Caffe's update
        to them in float32, its history float32 too. Layers whose class sets `fp32_only = True`
        (Softmax, Accuracy, BatchNorm) and every loss layer (`is_loss`) run outside autocast on float32 copies of their
        bottoms, so losses, probabilities and statistics are float32. On a CPU an InnerProduct
        with at most 32 rows (the batch, for fc layers) computes in float32 in passes that build
        an autograd graph (training), where autocast would cast its weight on every pass: the
        product is bound by reading the weight, and float32 is both faster there and exact
        (vgg_caffe.islands has the figures). Passes without autograd keep it in bfloat16.
        The outputs forward returns are float32; other blobs in net.blobs keep the dtype they
        were computed in (bfloat16, or float32 from an island).
  The CUDA TF32 switches are process-wide; a CUDA net sets them before each forward pass, so
  nets in different modes may take turns in one process. CPU nets leave them alone.
  Passes without autograd (no_grad, inference_mode) reuse the bf16 casts of the convolution and
  inner-product weights from one pass to the next instead of casting them again (bitwise the
  same values; vgg_caffe.weight_casts says when a copy is remade and net.weight_casts = False
  turns it off).

channels_last: "auto" (default), True or False. 4-d float inputs are laid out NHWC so that the
  convolutions run in oneDNN's / cuDNN's channels-last form (faster on CPUs and on tensor-core
  GPUs); "auto" means on for nets with a Convolution or Deconvolution layer. Blobs keep Caffe's
  logical NCHW shape (a memory format, not a transpose) and agree with an NCHW run up to float
  rounding (another summation order). Convolution weights are stored channels-last too (as
  nn.Module.to(memory_format=torch.channels_last) does; their bf16 casts then need no reorder,
  about 20% of a bf16 VGG pass): the same logical (O, I, kh, kw) blob, so weight files, net
  surgery and the solver (whose history is contiguous) see Caffe's layout; the swap happens at
  the next forward pass after the setting changes. False lays everything out contiguous NCHW.

keep_blobs: None (default: net.blobs holds every blob after a pass, as pycaffe's) or blob names:
  only those, the outputs and the loss tops are kept; the graph frees every other activation
  after its last use: a pass needs less memory. (It used to save time too, the page faults of a
  pass holding every blob; since freed memory is reused (vgg_caffe.hostmem) bench_precision
  measures the two within noise of each other.)

fuse_conv_relu: True (default) or False: in bf16 passes without autograd on a CPU, each
  convolution and the in-place ReLU after it run as one oneDNN call, bitwise torch's own values
  (vgg_caffe.fusion says where and why only bf16); the activation then crosses memory once, not
  three times. Training passes, fp32 nets and GPUs run the two layers as they are.

torch_compile: False (default) or True: torch.compile of the graph module, for training and
  inference (vgg_caffe.compiled). Where the compiler is unavailable (torch.compile raising, no C++
  compiler for the CPU backend, an error when a call compiles), or where the compiled passes do
  not time at least 3 % faster than uncompiled ones over a short trial (inductor's CPU training
  kernels are slower), the net says so in one line on stderr and runs the graph uncompiled from
  then on.
"""
import contextlib
import sys

import torch
from torch import fx, nn

from . import fusion, weight_casts
from .islands import LOW, island_for
from .compiled import Compiled, compiler_unavailable  # noqa: F401  (re-exported)
from .errors import CaffeError

MODES = ("fp32", "tf32", "bf16")
CONVOLUTIONS = ("Convolution", "Deconvolution")
_DEFAULTS = {"precision": "fp32", "torch_compile": False}


def check_precision(mode, where="precision"):
    """`mode` if it is one of MODES, else a CaffeError naming the allowed values."""
    if mode not in MODES:
        raise CaffeError(f"{where}: unknown precision {mode!r}; allowed: {', '.join(MODES)}")
    return mode


def check_layout(value, where="channels_last"):
    if value not in ("auto", True, False):
        raise CaffeError(f"{where}: {value!r}; allowed: 'auto', True, False")
    return value


def set_defaults(precision=None, torch_compile=None):
    """The process-wide defaults that nets whose own setting is None follow (the command-line
    tools set them from --precision / --compile, so that every net they build agrees)."""
    if precision is not None:
        _DEFAULTS["precision"] = check_precision(precision)
    if torch_compile is not None:
        _DEFAULTS["torch_compile"] = bool(torch_compile)


def defaults():
    return dict(_DEFAULTS)


class Setting:
    """A Net attribute that reads the process default while it is unset (None)."""

    def __init__(self, key, check):
        self.key, self.check = key, check

    def __set_name__(self, owner, name):
        self.slot = "_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        value = obj.__dict__.get(self.slot)
        return _DEFAULTS[self.key] if value is None else value

    def __set__(self, obj, value):
        obj.__dict__[self.slot] = None if value is None else self.check(value)


def describe(mode, device="cpu"):
    """One log line saying what `mode` computes on `device`."""
    cuda = str(device).startswith("cuda")
    if mode == "fp32":
        return "Precision: fp32 (true float32" + ("; cuBLAS and cuDNN TF32 switched off)" if cuda else ")")
    if mode == "tf32":
        return ("Precision: tf32 (TF32 tensor cores for convolutions and matmuls)" if cuda
                else "Precision: tf32 (no TF32 on a CPU: computes in float32)")
    return ("Precision: bf16 (autocast to bfloat16 with float32 accumulation; float32 weights, "
            "updates, losses, softmax and accuracy)")


def add_arguments(parser):
    """--precision and --compile, as every tool that runs nets spells them."""
    parser.add_argument("--precision", choices=MODES, default="fp32",
                        help="fp32: Caffe's float32 (default; TF32 off on CUDA); tf32: TF32 tensor cores on "
                             "CUDA; bf16: bfloat16 autocast with float32 weights, updates and losses")
    parser.add_argument("--compile", dest="torch_compile", action="store_true",
                        help="torch.compile the net's graph (falls back, with a notice, where unavailable)")


@contextlib.contextmanager
def from_arguments(args, device="cpu", log=None):
    """While inside: --precision / --compile are the process defaults, logged once (restored
    on exit, so a tool called in-process leaves no trace)."""
    saved = defaults()
    precision = getattr(args, "precision", None) or "fp32"
    compiled = bool(getattr(args, "torch_compile", False) or getattr(args, "compile", False))
    set_defaults(precision=precision, torch_compile=compiled)
    say = log or (lambda line: print(line, file=sys.stderr))
    say(describe(precision, device or "cpu") + ("; torch.compile on" if compiled else ""))
    try:
        yield
    finally:
        set_defaults(**saved)


# -- running a net's graph -----------------------------------------------------------------------

def set_cuda_flags(mode):
    """cuBLAS / cuDNN TF32 on for tf32, off (true float32) otherwise."""
    on = mode == "tf32"
    if torch.backends.cuda.matmul.allow_tf32 != on:
        torch.backends.cuda.matmul.allow_tf32 = on
    if torch.backends.cudnn.allow_tf32 != on:
        torch.backends.cudnn.allow_tf32 = on


def autocast(mode, device_type):
    """The autocast context of `mode`: bfloat16 for bf16, none otherwise."""
    if mode == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def autocast_for(net):
    return autocast(net.precision, net._device().type)


def uses_channels_last(net):
    """Whether the net's 4-d float inputs are laid out channels-last ("auto": it convolves)."""
    value = net.channels_last
    if value == "auto":
        return any(layer.type in CONVOLUTIONS for layer in net.layers.values())
    return bool(value)


def lay_out(net, feeds):
    """The inputs in the memory format the net runs in (a copy only where the layout changes),
    convolution weights moved to it too."""
    fmt = torch.channels_last if uses_channels_last(net) else torch.contiguous_format
    for layer in net.layers.values():
        if layer.type == "Convolution" and len(layer.blobs) and layer.blobs[0].dim() == 4:
            w = layer.blobs[0]
            if not w.is_contiguous(memory_format=fmt):
                w.data = w.data.contiguous(memory_format=fmt)  # same values and logical shape
    return [t.contiguous(memory_format=fmt) if t.dim() == 4 and t.is_floating_point() else t for t in feeds]


def run_graph(net, feeds):
    """Run net.graph_module on `feeds` in the net's precision (and compiled, if asked)."""
    mode = net.precision
    device = feeds[0].device if feeds else net._device()
    if device.type == "cuda":
        set_cuda_flags(mode)
    run = runner(net, mode, device.type)
    with autocast(mode, device.type):
        blobs = run(*feeds)
    if mode == "bf16":
        for name in net.output_names:
            value = blobs.get(name)
            if isinstance(value, torch.Tensor) and value.dtype in LOW:
                blobs[name] = value.float()
    return blobs


def runner(net, mode, device_type):
    """What runs the graph: the graph module itself for fp32/tf32; for bf16 a copy whose layers
    that compute in float32 are wrapped in their islands (vgg_caffe.islands); with keep_blobs a
    copy returning only the kept blobs; in bf16 passes without autograd on a CPU, a copy with each
    convolution and its in-place ReLU fused (vgg_caffe.fusion). Called through eager_caller;
    compiled when net.torch_compile. Cached on the net (a new graph_module, as after surgery,
    starts a new cache)."""
    state = net.__dict__.setdefault("_speed_state", {})
    if state.get("graph") is not net.graph_module:
        state.clear()
        state["graph"], state["runners"] = net.graph_module, {}
    keep = getattr(net, "keep_blobs", None)
    keep = None if keep is None else frozenset(keep) | set(net.output_names) | set(net.loss_weights)
    compiled = bool(net.torch_compile)
    can_fuse = mode == "bf16" and bool(getattr(net, "fuse_conv_relu", True)) and fusion.available(device_type)
    # Uncompiled, bf16 inference passes run fused and training passes plain (cached apart). Compiled,
    # the compiler sees the plain graph and the fused one is the eager pass it is tried against
    # and falls back to (FusedConvReLU runs its two layers in training passes).
    fused = can_fuse and (compiled or not torch.is_grad_enabled())
    key = (mode == "bf16", compiled, device_type, keep, fused)
    found = state["runners"].get(key)
    if found is None:
        def graph(fuse):
            if key[0] or keep is not None or fuse:
                return rebuilt(net.graph_module, device_type if key[0] else None, keep, fuse)
            return net.graph_module
        found = eager_caller(net, graph(fused))
        if compiled:
            found = Compiled(graph(False), net.source, params=net.parameters(), eager=found)
        state["runners"][key] = found
    return found


def eager_caller(net, module):
    """module(*feeds), through the net's bf16 weight casts in passes where they apply."""
    def call(*feeds):
        if weight_casts.applies(net):
            return weight_casts.casts_of(net).run(net, module, feeds)
        return module(*feeds)
    return call


def rebuilt(graph_module, islands_on=None, keep=None, fused=False):
    """A copy of the net's GraphModule sharing its layers: layers wrapped in their float32
    islands (vgg_caffe.islands.island_for) for autocast on device type `islands_on`; when
    `keep` (blob names) is given, returning only those blobs, so that fx's generated code frees
    every other one right after its last use instead of holding all of them to the end of the
    pass; with `fused`, each convolution and the in-place ReLU after it as one call
    (vgg_caffe.fusion, for bf16 passes without autograd on a CPU)."""
    graph = fx.Graph()
    blobs = graph.graph_copy(graph_module.graph, {})
    if keep is not None:
        blobs = {name: node for name, node in blobs.items() if name in keep}
    graph.output(blobs)

    layers = {n.target: graph_module.get_submodule(n.target) for n in graph.nodes if n.op == "call_module"}
    islands = {t: island_for(layer, islands_on) if islands_on is not None else None for t, layer in layers.items()}
    # a layer that runs in an island keeps its own call
    pairs = fusion.fuse(graph, lambda t: layers[t] if islands[t] is None else None) if fused else {}
    root = nn.Module()
    for node in graph.nodes:
        if node.op == "call_module" and not hasattr(root, node.target):
            t = node.target
            wrapped = pairs[t] if t in pairs else islands[t]
            root.add_module(t, layers[t] if wrapped is None else wrapped)
    return fx.GraphModule(root, graph, class_name="CaffeNetBF16" if islands_on else "CaffeNetKept")



def island_call(net, layer):
    """What the graph calls for `layer` in the net's precision (for timing a layer alone)."""
    island = island_for(layer, net._device().type) if net.precision == "bf16" else None
    return layer if island is None else island


def compiled_runners(net):
    """{runner key: Compiled} of the net's compiled runners."""
    state = net.__dict__.get("_speed_state", {})
    return {k: r for k, r in state.get("runners", {}).items() if isinstance(r, Compiled)}


def compile_seconds(net):
    """The first-call (compile) time of the net's compiled runners, {key: s}."""
    return {k: r.first_call_s for k, r in compiled_runners(net).items()}


def compile_choices(net):
    """What the compile trials of the net's compiled runners kept, {key: {"train"|"inference":
    "compiled"|"eager"|None (still on trial)}}."""
    return {k: r.choice for k, r in compiled_runners(net).items()}
