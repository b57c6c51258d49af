"""The layer contract and the registry keyed by Caffe's type string.

As in Caffe (layer_factory.hpp), each layer type registers itself under its type string, a second
registration of the same string is refused, and an unknown type fails naming the layer and listing
the known types. Building, shape inference, parameter counting and weight I/O all go through the
class registered here, so there is no second if/elif chain over types anywhere.

A layer is an nn.Module built once from its LayerParameter and the shapes of its bottoms
(Caffe's LayerSetUp + Reshape). Its learnable blobs are `self.blobs`, an nn.ParameterList in
Caffe's order and Caffe's layout (convolution weight (O, I/g, kh, kw), inner-product weight (N, K)
or (K, N) when transposed, biases (N,)), so a .caffemodel blob copies in without reshaping.
"""
import math

import torch
from torch import nn

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
    takes_list = False

    def __init__(self, param, bottom_shapes, phase="TEST", source=None):
        super().__init__()
        self.param = param
        self.name = param.name
        self.phase = phase
        self.source = source
        self.blobs = nn.ParameterList()
        self.bottom_shapes = [tuple(s) for s in bottom_shapes]
        self.setup()
        self.top_shapes = [tuple(int(d) for d in s) for s in self.reshape(self.bottom_shapes)]

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
        """Append a learnable blob of `shape` (zeros until filled or loaded)."""
        self.blobs.append(nn.Parameter(torch.zeros(tuple(shape))))
        return self.blobs[-1]

    def blob_shapes(self):
        return [tuple(b.shape) for b in self.blobs]

    def param_count(self):
        return sum(b.numel() for b in self.blobs)

    def extra_repr(self):
        return f"name={self.name!r}"


def pair(param, name, default=None, source_layer=None):
    """Caffe's (h, w) resolution: `name_h`/`name_w` if set, else a repeated `name` of 1 or 2 values.

    Works for ConvolutionParameter (repeated fields) and PoolingParameter (optional fields).
    """
    prefix = name.replace("_size", "")  # kernel_size pairs with kernel_h / kernel_w
    h_field, w_field = f"{prefix}_h", f"{prefix}_w"
    fields = param.DESCRIPTOR.fields_by_name
    if h_field in fields and (param.HasField(h_field) or param.HasField(w_field)):
        return int(getattr(param, h_field)), int(getattr(param, w_field))
    field = param.DESCRIPTOR.fields_by_name[name]
    repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
    if repeated:
        values = list(getattr(param, name))
        if not values:
            if default is None:
                raise source_layer.error(f"{name} is required")
            return default, default
        if len(values) == 1:
            return int(values[0]), int(values[0])
        if len(values) == 2:
            return int(values[0]), int(values[1])
        raise source_layer.error(f"{name} has {len(values)} values; 2-d layers take 1 or 2")
    if not param.HasField(name) and default is None:
        raise source_layer.error(f"{name} (or {name}_h and {name}_w) is required")
    value = int(getattr(param, name)) if param.HasField(name) else default
    return value, value


def fan_in_out(shape):
    """Caffe's fan-in = count / shape[0], fan-out = count / shape[1] (its filler.hpp convention)."""
    count = math.prod(shape)
    return count // shape[0], (count // shape[1]) if len(shape) > 1 else count
