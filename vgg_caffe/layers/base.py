"""The layer contract and the registry keyed by Caffe's type string.

As in Caffe (layer_factory.hpp), each layer type registers itself under its type string, a second
registration of the same string is refused, and an unknown type fails naming the layer and listing
the known types. Building, shape inference, parameter counting and weight I/O all go through the
class registered here, so there is no second if/elif chain over types anywhere.

A layer is an nn.Module built once from its LayerParameter and the shapes of its bottoms
(Caffe's LayerSetUp + Reshape). Its learnable blobs are `self.blobs`, an nn.ParameterList in
Caffe's order and Caffe's layout (convolution weight (O, I/g, kh, kw), inner-product weight (N, K)
or (K, N) when transposed, biases (N,)), so a .caffemodel blob copies in without reshaping.

Building a layer also runs the CHECKs Caffe makes for every layer: its fillers are known ones, no
top has a negative dimension, geometry goes through pair() (kernel, stride, dilation positive;
kernel_size or kernel_h/kernel_w), and no blob is allocated that the machine cannot hold
(vgg_caffe.machine). check_static() is the part that needs no shapes, for tools that show a net
without building it (tools/draw_net.py through vgg_caffe.info.validate_net).
"""
import math

import torch
from torch import nn

from .. import machine
from ..errors import CaffeError

_REGISTRY = {}


def register(cls):
    """Class decorator: register a Layer subclass under its `type` string (and its aliases)."""
    for name in (cls.type,) + tuple(cls.aliases):
        if name in _REGISTRY:
            raise RuntimeError(f"layer type '{name}' registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
        _REGISTRY[name] = cls
    return cls


def known_types():
    return sorted(_REGISTRY)


def layer_class(type_name, layer_name="?", source=None):
    """The class registered for `type_name`; a CaffeError naming the layer and the known types if none."""
    from . import _load_all  # noqa: F401  (importing the package registers every layer)

    cls = _REGISTRY.get(type_name)
    if cls is None:
        where = f"{source}: " if source else ""
        raise CaffeError(
            f"{where}layer '{layer_name}': unknown layer type '{type_name}'; known types: "
            + ", ".join(known_types()))
    return cls


class Layer(nn.Module):
    """Base of every layer. Subclasses set the class attributes and override what they need.

    Class attributes:
      type            Caffe's type string ("Convolution").
      aliases         further type strings handled by the same class.
      bottoms, tops   allowed counts as (min, max); max None means any number.
      in_place_ok     whether top may equal bottom (ReLU, Dropout); the graph is functional
                      either way, this only controls the check.
      is_data         True for layers that produce tops from a source, not from bottoms; their
                      tops become inputs of the torch graph and `Net` feeds them.
      is_loss         True for layers whose first top has loss_weight 1 by default.
      fp32_only       True for layers that must compute in float32 when the net runs in bf16
                      (vgg_caffe.precision runs them outside autocast on float32 bottoms):
                      Softmax, Accuracy, BatchNorm; every is_loss layer is treated so too.
      takes_list      True for layers taking any number of bottoms (Concat, Eltwise): forward
                      receives them as one list, so the layer stays TorchScript-able.
    A layer whose top count may vary (tops != (1, 1): Split, SoftmaxWithLoss, Accuracy) returns
    a list of tensors, one per top, even when it has one top; other layers return a tensor.
    Non-tensor settings that forward reads are listed in `__constants__` so that TorchScript
    compiles only the branch a layer uses (no bias blob, no second top).
    Instance attributes set by __init__: `param` (LayerParameter), `name`, `phase`
    ("TRAIN"/"TEST"), `bottom_shapes`, and `top_shapes` (filled by `reshape`).
    """

    type = None
    aliases = ()
    bottoms = (1, 1)
    tops = (1, 1)
    in_place_ok = False
    is_data = False
    is_loss = False
    fp32_only = False
    takes_list = False

    def __init__(self, param, bottom_shapes, phase="TEST", source=None):
        super().__init__()
        self.param = param
        self.name = param.name
        self.phase = phase
        self.source = source
        self.blobs = nn.ParameterList()
        self.bottom_shapes = [tuple(s) for s in bottom_shapes]
        check_fillers(param, self)
        self.setup()
        self.top_shapes = [tuple(int(d) for d in s) for s in self.reshape(self.bottom_shapes)]
        self.check_tops()

    def check_tops(self):
        """Caffe's Blob::Reshape CHECKs (no negative dimension) and, before anything is allocated,
        that each top fits in the memory the machine has (vgg_caffe.machine)."""
        names = list(self.param.top)
        for i, shape in enumerate(self.top_shapes):
            name = f"top '{names[i]}'" if i < len(names) else f"top {i}"
            if any(d < 0 for d in shape):
                hint = " (input_param.shape, or the net's input_dim / input_shape)" if self.is_data else ""
                raise self.error(f"{name} has shape {shape}: every dimension must be >= 0{hint}")
            if not _on_meta():
                machine.check_fits(shape, torch.get_default_dtype().itemsize, name, self.error)

    # -- contract ------------------------------------------------------------------------------

    def setup(self):
        """Read parameters, create learnable blobs (Caffe's LayerSetUp). Bottom shapes are known."""

    def reshape(self, bottom_shapes):
        """Top shapes for these bottom shapes (Caffe's Reshape). Raise self.error(...) if they do not fit."""
        return [bottom_shapes[0]]

    def forward(self, *bottoms):
        raise NotImplementedError

    def fill(self, generator=None):
        """Initialise the learnable blobs from the layer's fillers."""

    def multiply_adds(self):
        """Multiply-accumulate count of one forward pass at the build shapes (for `info`)."""
        return 0

    def receptive(self):
        """(kernel, stride, pad) along height for receptive-field arithmetic; (1, 1, 0) for pointwise."""
        return (1, 1, 0)

    # -- helpers -------------------------------------------------------------------------------

    def error(self, message):
        where = f"{self.source}: " if self.source else ""
        return CaffeError(f"{where}layer '{self.name}' ({self.type}): {message}")

    def add_blob(self, shape):
        """Append a learnable blob of `shape` (zeros until filled or loaded); refused, before it is
        allocated, when it cannot fit in the memory still available (vgg_caffe.machine)."""
        if any(int(d) < 0 for d in shape):
            raise self.error(f"learnable blob {len(self.blobs)} would have shape {tuple(shape)}: a negative dimension")
        if not _on_meta():
            machine.check_fits(shape, torch.get_default_dtype().itemsize, f"learnable blob {len(self.blobs)}",
                              self.error)
        self.blobs.append(nn.Parameter(torch.zeros(tuple(shape))))
        return self.blobs[-1]

    def blob_shapes(self):
        return [tuple(b.shape) for b in self.blobs]

    def param_count(self):
        return sum(b.numel() for b in self.blobs)

    def extra_repr(self):
        return f"name={self.name!r}"


# The smallest value Caffe's CHECKs allow for each geometry field (conv_layer / base_conv_layer /
# pooling_layer LayerSetUp): a zero kernel, stride or dilation is refused there (and here, before
# any division by it).
_LOWEST = {"kernel": 1, "stride": 1, "dilation": 1, "pad": 0}


def param_field(param):
    """The LayerParameter field a parameter message lives in (ConvolutionParameter -> convolution_param)."""
    name = param.DESCRIPTOR.name
    snake = "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))
    return snake.replace("_parameter", "_param")


def pair(param, name, default=None, source_layer=None):
    """Caffe's (h, w) resolution: `name_h`/`name_w` if set, else a repeated `name` of 1 or 2 values,
    with Caffe's CHECKs: `name` and its _h/_w pair exclude each other; kernel_h needs kernel_w (and
    stride, and for pooling pad, likewise); kernel, stride and dilation are positive.

    Works for ConvolutionParameter (repeated fields) and PoolingParameter (optional fields), so
    Convolution, Deconvolution and Pooling share one set of checks. `source_layer` is the layer (or
    anything with its error()) the errors name.
    """
    prefix = name.replace("_size", "")  # kernel_size pairs with kernel_h / kernel_w
    h_field, w_field = f"{prefix}_h", f"{prefix}_w"
    fields = param.DESCRIPTOR.fields_by_name
    where = param_field(param)
    lowest = _LOWEST.get(prefix, 0)
    field = fields[name]
    repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
    given = len(getattr(param, name)) > 0 if repeated else param.HasField(name)
    if h_field in fields and (param.HasField(h_field) or param.HasField(w_field)):
        if given:
            raise source_layer.error(f"give {where}.{name} or {h_field} and {w_field}, not both")
        values = int(getattr(param, h_field)), int(getattr(param, w_field))
        one = h_field if param.HasField(h_field) else w_field
        other = w_field if one == h_field else h_field
        # Caffe lets a convolution's pad_h stand alone (pad_w is then 0); every other lone half is
        # an error there (a zero kernel_w / stride_w, or pooling's "pad_h and pad_w are required").
        if not (param.HasField(h_field) and param.HasField(w_field)) and \
                (prefix != "pad" or where == "pooling_param"):
            if min(values) < lowest:
                raise source_layer.error(f"{where} {prefix} {values} must be positive: {one} is given without "
                                         f"{other}; give both, or {name}")
            raise source_layer.error(f"{where}: {one} is given without {other}; give both, or {name}")
    elif repeated:
        values = [int(v) for v in getattr(param, name)]
        if not values:
            if default is None:
                raise source_layer.error(f"{name} is required")
            values = [default]
        if len(values) > 2:
            raise source_layer.error(f"{name} has {len(values)} values; 2-d layers take 1 or 2")
        values = (values[0], values[-1])
    else:
        if not given and default is None:
            raise source_layer.error(f"{name} (or {h_field} and {w_field}) is required")
        value = int(getattr(param, name)) if given else default
        values = (value, value)
    if min(values) < lowest:
        raise source_layer.error(f"{where} {prefix} {values} must be "
                                 + ("positive" if lowest else f">= {lowest}"))
    return values


# ----------------------------------------------------------------------------------------------
# Checks that need no shapes: shared by every layer's build and by tools that draw or list a net
# without building it (tools/draw_net.py), so they refuse the same files.
# ----------------------------------------------------------------------------------------------

class _Unbuilt:
    """Stands in for a layer that is checked without being built: it only names it in errors."""

    def __init__(self, lp, source):
        self.name, self.type, self.source = lp.name, lp.type, source

    error = Layer.error


def _messages(lp):
    """The set singular *_param messages of a LayerParameter (transform_param, convolution_param...)."""
    for fd, value in lp.ListFields():
        if fd.message_type is not None and fd.name.endswith("_param") and not _is_repeated(fd):
            yield fd.name, value


def _is_repeated(fd):
    flag = getattr(fd, "is_repeated", None)
    return flag if isinstance(flag, bool) else fd.label == fd.LABEL_REPEATED


def check_fillers(lp, layer):
    """Every FillerParameter of the layer names a filler Caffe has and can fill with its values
    (Caffe's GetFiller fails at set-up on an unknown type, even when weights are loaded after). Each
    is tried on a 1x1 CPU tensor with a private generator, so the global random stream is untouched."""
    from .fillers import fill

    for field, message in _messages(lp):
        for fd, value in message.ListFields():
            if fd.message_type is None or fd.message_type.name != "FillerParameter":
                continue
            for k, filler in enumerate(value if _is_repeated(fd) else [value]):
                path = f"{field}.{fd.name}" + (f"[{k}]" if _is_repeated(fd) else "")
                try:
                    fill(torch.empty(1, 1, device="cpu"), filler, torch.Generator().manual_seed(0), "")
                except CaffeError as e:
                    raise layer.error(f"{path}: {str(e).lstrip(': ')}") from None
                except Exception as e:  # torch refuses the values (a negative std, min > max)
                    raise layer.error(f"{path}: the {filler.type} filler cannot use these values ({e})") from None


def check_static(lp, source=None):
    """The checks of a layer's parameters that need no bottom shapes: its type is registered,
    geometry (kernel, stride, pad, dilation through pair), num_output positive, input shapes without
    negative dimensions, fillers known. Building a layer runs the same checks and the rest."""
    layer_class(lp.type, lp.name, source)
    where = _Unbuilt(lp, source)
    for field, p in _messages(lp):
        names = p.DESCRIPTOR.fields_by_name
        if field in ("convolution_param", "pooling_param"):
            if not (field == "pooling_param" and p.global_pooling):
                _static_pair(p, "kernel_size", None, where)
            _static_pair(p, "stride", 1, where)
            _static_pair(p, "pad", 0, where)
            if "dilation" in names:
                _static_pair(p, "dilation", 1, where)
        if "num_output" in names and p.HasField("num_output") and p.num_output < 1:
            raise where.error(f"{field}.num_output must be positive, got {p.num_output}")
        if field == "input_param":
            for shape in p.shape:
                if any(d < 0 for d in shape.dim):
                    raise where.error(f"input_param.shape {tuple(shape.dim)}: every dimension must be >= 0")
    check_fillers(lp, where)


def _static_pair(p, name, default, where):
    values = getattr(p, name)
    if _is_repeated(p.DESCRIPTOR.fields_by_name[name]) and len(values) > 2:
        # N-d (Im2col, N-d convolution): one value per spatial axis, each within Caffe's bound.
        lowest = _LOWEST.get(name.replace("_size", ""), 0)
        if min(values) < lowest:
            raise where.error(f"{param_field(p)}.{name} {tuple(values)}: every value must be >= {lowest}")
        return
    pair(p, name, default, where)


def _on_meta():
    """Whether tensors are being made on torch's meta device (shapes only, nothing allocated)."""
    return torch.get_default_device().type == "meta"


def fan_in_out(shape):
    """Caffe's fan-in = count / shape[0], fan-out = count / shape[1] (its filler.hpp convention)."""
    count = math.prod(shape)
    return count // shape[0], (count // shape[1]) if len(shape) > 1 else count
