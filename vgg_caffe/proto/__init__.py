"""Caffe's messages (our own schema, caffe.proto) and reading, writing and upgrading them.

Reproduces Caffe's io.cpp / upgrade_proto.cpp behaviour: prototxt is protobuf text format and
.caffemodel / .binaryproto / .solverstate are binary protobuf of the same schema; nets in the old
V1 format (`layers { type: CONVOLUTION }`, `input_dim`) are upgraded to the current one (`layer {
type: "Convolution" }`, an Input layer) as upgrade_net_proto_text/binary do.

Errors name the file, the line and column, the message being read and, for an unknown field,
the fields that message does have.
"""
import os
import re

from google.protobuf import message as _message
from google.protobuf import text_format

from ..errors import CaffeError
from ..fileio import atomic_write
from . import caffe_pb2 as pb

TEXT_SUFFIXES = (".prototxt", ".pbtxt", ".txt", ".pt")
BINARY_SUFFIXES = (".caffemodel", ".binaryproto", ".solverstate", ".pb")

# V1 enum name -> the type string of the current format (Caffe's UpgradeV1LayerType).
V1_TYPE_NAMES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DATA": "Data", "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}


# ----------------------------------------------------------------------------------------------
# Text and binary
# ----------------------------------------------------------------------------------------------

def parse_text(text, message, source="<string>"):
    """Parse protobuf text into `message` (an instance); errors name source:line:column."""
    try:
        text_format.Merge(text, message)
    except text_format.ParseError as e:
        raise CaffeError(_describe_parse_error(e, message, source)) from None
    return message


def _describe_parse_error(err, message, source):
    line, col = err.GetLine(), err.GetColumn()
    detail = re.sub(r"^\d+:\d+ : ", "", str(err))
    where = f"{source}:{line}:{col}" if line is not None else source
    text = f"{where}: {detail} (reading a {message.DESCRIPTOR.full_name})"
    # Unknown fields: list what the message does have, so a typo is easy to spot.
    m = re.search(r'Message type "([\w.]+)" has no field named "(\w+)"', detail)
    if m:
        desc = pb.DESCRIPTOR.message_types_by_name.get(m.group(1).split(".")[-1])
        if desc is None:
            desc = _find_nested(m.group(1))
        if desc is not None:
            known = ", ".join(sorted(f.name for f in desc.fields))
            text += f"; fields of {m.group(1)}: {known}"
    return text


def _find_nested(full_name):
    for desc in pb.DESCRIPTOR.message_types_by_name.values():
        for nested in desc.nested_types:
            if nested.full_name == full_name:
                return nested
    return None


def format_text(message):
    """Protobuf text, as Caffe writes prototxt."""
    return text_format.MessageToString(message)


def parse_binary(data, message, source="<bytes>"):
    try:
        message.ParseFromString(data)
    except _message.DecodeError as e:
        raise CaffeError(
            f"{source}: not a valid binary {message.DESCRIPTOR.full_name} ({e}); "
            "the file may be truncated or corrupt") from None
    return message


def read_text(path, message_cls):
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise CaffeError(f"{path}: cannot read as text ({e})") from None
    return parse_text(text, message_cls(), path)


def read_binary(path, message_cls):
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CaffeError(f"{path}: cannot read ({e.strerror or e})") from None
    if not data:
        raise CaffeError(f"{path}: the file is empty (expected a binary {message_cls.DESCRIPTOR.full_name})")
    return parse_binary(data, message_cls(), path)


def is_text_file(path):
    """Decide text or binary by suffix; otherwise by whether the first bytes decode as text."""
    lower = os.fspath(path).lower()
    if lower.endswith(TEXT_SUFFIXES):
        return True
    if lower.endswith(BINARY_SUFFIXES):
        return False
    with open(path, "rb") as f:
        head = f.read(4096)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in head


def read_message(path, message_cls):
    """Read text or binary protobuf of `message_cls` from `path`."""
    if not os.path.exists(path):
        raise CaffeError(f"{path}: no such file")
    return read_text(path, message_cls) if is_text_file(path) else read_binary(path, message_cls)


def write_text(path, message):
    atomic_write(path, format_text(message))


def write_binary(path, message):
    atomic_write(path, message.SerializeToString())


def write_message(path, message, binary=None):
    """Write text or binary; by default the path's suffix decides (text unless a binary suffix)."""
    if binary is None:
        binary = os.fspath(path).lower().endswith(BINARY_SUFFIXES)
    (write_binary if binary else write_text)(path, message)


# ----------------------------------------------------------------------------------------------
# Nets and the V1 -> current upgrade
# ----------------------------------------------------------------------------------------------

def read_net(path):
    """Read a net (prototxt or binary caffemodel, current or V1 format) upgraded to the current format."""
    net = read_message(path, pb.NetParameter)
    return upgrade_net(net, source=path)


def read_solver(path):
    return read_message(path, pb.SolverParameter)


def needs_upgrade(net):
    return bool(len(net.layers) or len(net.input) or _has_legacy_data_fields(net))


def upgrade_net(net, source="<net>"):
    """Return `net` in the current format: V1 layers converted, net inputs as an Input layer.

    The argument is not modified. A net that needs nothing is returned as a copy all the same.
    """
    out = pb.NetParameter()
    out.CopyFrom(net)
    if len(net.layer) and len(net.layers):
        raise CaffeError(f"{source}: the net mixes `layer` (current format) and `layers` (V1); use one")
    if len(net.layers):
        del out.layers[:]
        for v1 in net.layers:
            out.layer.add().CopyFrom(_upgrade_v1_layer(v1, source))
    if len(net.input):
        _upgrade_net_inputs(out, source)
    for layer in out.layer:
        _upgrade_data_transform(layer)
    return out


def _upgrade_v1_layer(v1, source):
    layer = pb.LayerParameter()
    layer.name = v1.name
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    layer.loss_weight.extend(v1.loss_weight)
    layer.blobs.extend(v1.blobs)
    if v1.HasField("type"):
        enum_name = pb.V1LayerParameter.LayerType.Name(v1.type)
        if enum_name == "NONE":
            raise CaffeError(f"{source}: layer '{v1.name}' has type NONE")
        layer.type = V1_TYPE_NAMES[enum_name]
    # Per-blob settings were parallel lists; they become one ParamSpec per blob.
    count = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))
    for i in range(count):
        spec = layer.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    # Layer-specific parameter messages keep their names across formats.
    for field, value in v1.ListFields():
        if field.name.endswith("_param") and field.type == field.TYPE_MESSAGE:
            getattr(layer, field.name).CopyFrom(value)
    return layer


def _upgrade_net_inputs(net, source):
    """input + input_dim / input_shape -> a first layer of type Input (Caffe's UpgradeNetInput)."""
    names = list(net.input)
    if len(net.input_shape):
        shapes = [list(s.dim) for s in net.input_shape]
    elif len(net.input_dim):
        if len(net.input_dim) != 4 * len(names):
            raise CaffeError(
                f"{source}: {len(names)} input(s) need {4 * len(names)} input_dim values, "
                f"found {len(net.input_dim)}")
        dims = list(net.input_dim)
        shapes = [dims[4 * i:4 * i + 4] for i in range(len(names))]
    else:
        raise CaffeError(f"{source}: net inputs {names} have no input_dim or input_shape")
    if len(shapes) not in (1, len(names)):
        raise CaffeError(f"{source}: {len(names)} inputs but {len(shapes)} input_shape entries")
    layer = pb.LayerParameter(name="input", type="Input", top=names)
    for shape in shapes:
        layer.input_param.shape.add().dim.extend(shape)
    layers = [layer] + list(net.layer)
    del net.layer[:]
    net.layer.extend(layers)
    del net.input[:]
    del net.input_dim[:]
    del net.input_shape[:]


_LEGACY_DATA_FIELDS = ("scale", "mean_file", "crop_size", "mirror")


def _has_legacy_data_fields(net):
    return any(layer.HasField("data_param") and any(layer.data_param.HasField(f) for f in _LEGACY_DATA_FIELDS)
               for layer in net.layer)


def _upgrade_data_transform(layer):
    """Old data layers kept scale/mean_file/crop_size/mirror in data_param; Caffe moved them."""
    if not layer.HasField("data_param"):
        return
    for field in _LEGACY_DATA_FIELDS:
        if layer.data_param.HasField(field):
            setattr(layer.transform_param, field, getattr(layer.data_param, field))
            layer.data_param.ClearField(field)


__all__ = [
    "pb", "CaffeError", "parse_text", "format_text", "parse_binary", "read_text", "read_binary",
    "read_message", "write_text", "write_binary", "write_message", "read_net", "read_solver",
    "upgrade_net", "needs_upgrade", "V1_TYPE_NAMES",
]
