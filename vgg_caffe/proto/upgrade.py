"""Upgrading old nets and solvers to the current format, as Caffe's upgrade_proto.cpp does.

Nets go through Caffe's steps in Caffe's order (UpgradeNetAsNeeded):
  V0 -> V1   `layers { layer { type: "conv" num_output: 96 ... } }`, every setting flat in one
             V0LayerParameter, "padding" layers folded into the conv / pool they feed;
  data       the old data layers' scale / mean_file / crop_size / mirror move to transform_param;
  V1 -> now  `layers { type: CONVOLUTION blobs_lr: 1 }` -> `layer { type: "Convolution"
             param { lr_mult: 1 } }`, every per-type *_param carried over;
  inputs     the net's input / input_dim / input_shape become a first layer of type "Input";
  BatchNorm  old BatchNorm layers that declare their three statistics blobs get lr_mult and
             decay_mult 0, since the statistics are not learned.
Solvers: the legacy enum solver_type becomes the type string (UpgradeSolverType).

Where Caffe only logs a field it cannot place and carries on, we warn (warnings.warn) naming the
file, layer and field; where Caffe aborts, we raise CaffeError.
"""
import warnings

from ..errors import CaffeError
from . import caffe_pb2 as pb

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

# V0 type string -> V1 enum name (Caffe's UpgradeV0LayerType; "padding" is folded away first).
V0_TYPE_NAMES = {
    "accuracy": "ACCURACY", "bnll": "BNLL", "concat": "CONCAT", "conv": "CONVOLUTION",
    "data": "DATA", "dropout": "DROPOUT", "euclidean_loss": "EUCLIDEAN_LOSS", "flatten": "FLATTEN",
    "hdf5_data": "HDF5_DATA", "hdf5_output": "HDF5_OUTPUT", "im2col": "IM2COL",
    "images": "IMAGE_DATA", "infogain_loss": "INFOGAIN_LOSS", "innerproduct": "INNER_PRODUCT",
    "lrn": "LRN", "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS", "pool": "POOLING",
    "relu": "RELU", "sigmoid": "SIGMOID", "softmax": "SOFTMAX", "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT", "tanh": "TANH", "window_data": "WINDOW_DATA",
}

# V0 field -> {V0 type: (V1 *_param message, its field)}. A V0 field set on a type not listed is
# one Caffe drops with an error line. Repeated targets (conv pad / kernel_size / stride) get the
# value appended. Fields mapped under None go to transform_param whatever the type.
_DATA_TYPES = ("data", "hdf5_data", "images", "window_data")
_V0_FIELDS = {
    "num_output": {"conv": "convolution_param", "innerproduct": "inner_product_param"},
    "biasterm": {"conv": ("convolution_param", "bias_term"), "innerproduct": ("inner_product_param", "bias_term")},
    "weight_filler": {"conv": "convolution_param", "innerproduct": "inner_product_param"},
    "bias_filler": {"conv": "convolution_param", "innerproduct": "inner_product_param"},
    "pad": {"conv": "convolution_param", "pool": "pooling_param"},
    "kernelsize": {"conv": ("convolution_param", "kernel_size"), "pool": ("pooling_param", "kernel_size")},
    "group": {"conv": "convolution_param"},
    "stride": {"conv": "convolution_param", "pool": "pooling_param"},
    "pool": {"pool": "pooling_param"},  # the enums agree value for value (MAX 0, AVE 1, STOCHASTIC 2)
    "dropout_ratio": {"dropout": "dropout_param"},
    "local_size": {"lrn": "lrn_param"}, "alpha": {"lrn": "lrn_param"},
    "beta": {"lrn": "lrn_param"}, "k": {"lrn": "lrn_param"},
    "source": {"data": "data_param", "hdf5_data": "hdf5_data_param", "images": "image_data_param",
               "window_data": "window_data_param", "infogain_loss": "infogain_loss_param"},
    "batchsize": {t: (p, "batch_size") for t, p in zip(_DATA_TYPES, (
        "data_param", "hdf5_data_param", "image_data_param", "window_data_param"))},
    "rand_skip": {"data": "data_param", "images": "image_data_param"},
    "shuffle_images": {"images": ("image_data_param", "shuffle")},
    "new_height": {"images": "image_data_param"}, "new_width": {"images": "image_data_param"},
    "concat_dim": {"concat": "concat_param"},
    "det_fg_threshold": {"window_data": ("window_data_param", "fg_threshold")},
    "det_bg_threshold": {"window_data": ("window_data_param", "bg_threshold")},
    "det_fg_fraction": {"window_data": ("window_data_param", "fg_fraction")},
    "det_context_pad": {"window_data": ("window_data_param", "context_pad")},
    "det_crop_mode": {"window_data": ("window_data_param", "crop_mode")},
    "hdf5_output_param": {"hdf5_output": None},  # the whole message, same name on V1
    "scale": {None: "scale"}, "meanfile": {None: "mean_file"},
    "cropsize": {None: "crop_size"}, "mirror": {None: "mirror"},
}
# V0 fields handled outside the table (identity and learning settings), or never upgraded by
# Caffe (new_num .. new_width were for a Reshape layer V1 never had).
_V0_COPIED = {"name", "type", "blobs", "blobs_lr", "weight_decay"}


def needs_upgrade(net):
    return bool(len(net.layers) or len(net.input) or _has_legacy_data_fields(net)
                or any(_is_old_batch_norm(lp) for lp in net.layer))


def upgrade_net(net, source="<net>"):
    """Return `net` in the current format (see the module docstring for the steps).

    The argument is not modified. A net that needs nothing is returned as a copy all the same.
    """
    out = pb.NetParameter()
    out.CopyFrom(net)
    if len(net.layer) and len(net.layers):
        raise CaffeError(f"{source}: the net mixes `layer` (current format) and `layers` (V1); use one")
    if any(v1.HasField("layer") for v1 in net.layers):
        out = _upgrade_v0_net(out, source)
    if len(out.layers):
        v1_layers = list(out.layers)
        del out.layers[:]
        for v1 in v1_layers:
            layer = out.layer.add()
            layer.CopyFrom(_upgrade_v1_layer(v1, source))
            # Caffe moves the old transform fields of V1 data layers only.
            _move_transform_fields(layer, ("data_param", "image_data_param", "window_data_param"))
    if len(out.input):
        _upgrade_net_inputs(out, source)
    for layer in out.layer:
        # This project also upgrades current-format Data layers (Caffe would ignore the fields).
        _move_transform_fields(layer, ("data_param",))
        if _is_old_batch_norm(layer):
            for spec in layer.param:
                spec.lr_mult = 0
                spec.decay_mult = 0
    return out


# ----------------------------------------------------------------------------------------------
# V0 -> V1
# ----------------------------------------------------------------------------------------------

def _upgrade_v0_net(net, source):
    if not all(v1.HasField("layer") for v1 in net.layers):
        plain = [v1.name or f"#{i}" for i, v1 in enumerate(net.layers) if not v1.HasField("layer")]
        raise CaffeError(f"{source}: V0 net (`layers {{ layer {{ ... }} }}`) has layers without the nested "
                         f"`layer` block: {', '.join(plain)}; Caffe would drop their settings")
    layers = _fold_padding_layers(net, source)
    # Caffe keeps only these net-level fields when it rewrites a V0 net.
    out = pb.NetParameter()
    if net.HasField("name"):
        out.name = net.name
    out.input.extend(net.input)
    out.input_dim.extend(net.input_dim)
    if net.HasField("force_backward"):
        out.force_backward = net.force_backward
    for connection in layers:
        out.layers.add().CopyFrom(_upgrade_v0_layer(connection, source))
    return out


def _fold_padding_layers(net, source):
    """Drop V0 "padding" layers, giving their pad to the conv / pool below (UpgradeV0PaddingLayers)."""
    producer = {name: None for name in net.input}   # blob -> the V1 connection that last wrote it
    kept = []
    for connection in net.layers:
        v0 = connection.layer
        copy = pb.V1LayerParameter()
        copy.CopyFrom(connection)
        for j, blob in enumerate(connection.bottom):
            if blob not in producer:
                raise CaffeError(f"{source}: layer '{v0.name}' ({v0.type}): unknown bottom blob '{blob}'")
            pad_layer = producer[blob]
            if pad_layer is None or pad_layer.layer.type != "padding":
                continue
            if v0.type not in ("conv", "pool"):
                raise CaffeError(f"{source}: padding layer '{pad_layer.layer.name}' feeds layer '{v0.name}' of "
                                 f"type {v0.type}; only conv and pool layers can take a padding layer's output")
            if len(connection.bottom) != 1 or len(pad_layer.bottom) != 1 or len(pad_layer.top) != 1:
                raise CaffeError(f"{source}: padding layer '{pad_layer.layer.name}' and layer '{v0.name}' "
                                 "must each have exactly one bottom (and the padding layer one top)")
            copy.layer.pad = pad_layer.layer.pad
            copy.bottom[j] = pad_layer.bottom[0]
        if v0.type != "padding":
            kept.append(copy)
        for blob in connection.top:
            producer[blob] = connection
    return kept


def _upgrade_v0_layer(connection, source):
    v0 = connection.layer
    v1 = pb.V1LayerParameter(bottom=connection.bottom, top=connection.top)
    if v0.HasField("name"):
        v1.name = v0.name
    if v0.HasField("type"):
        if v0.type not in V0_TYPE_NAMES:
            raise CaffeError(f"{source}: layer '{v0.name}': unknown V0 layer type '{v0.type}'; "
                             f"known types: {', '.join(sorted(V0_TYPE_NAMES))}")
        v1.type = pb.V1LayerParameter.LayerType.Value(V0_TYPE_NAMES[v0.type])
    v1.blobs.extend(v0.blobs)
    v1.blobs_lr.extend(v0.blobs_lr)
    v1.weight_decay.extend(v0.weight_decay)
    for field, value in v0.ListFields():
        if field.name in _V0_COPIED or field.name not in _V0_FIELDS:
            continue
        targets = _V0_FIELDS[field.name]
        if None in targets:
            setattr(v1.transform_param, targets[None], value)
            continue
        if v0.type not in targets:
            warnings.warn(f"{source}: layer '{v0.name}' (V0 type {v0.type}): field {field.name} does not "
                          f"apply to this type and is dropped, as Caffe does; it applies to "
                          f"{', '.join(sorted(targets))}", stacklevel=3)
            continue
        target = targets[v0.type]
        if target is None:
            getattr(v1, field.name).CopyFrom(value)
            continue
        message_name, name = target if isinstance(target, tuple) else (target, field.name)
        message = getattr(v1, message_name)
        dest = message.DESCRIPTOR.fields_by_name[name]
        if dest.is_repeated:
            getattr(message, name).append(value)
        elif dest.type == dest.TYPE_MESSAGE:
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return v1


# ----------------------------------------------------------------------------------------------
# V1 -> current
# ----------------------------------------------------------------------------------------------

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
    # Every per-type message keeps its name (and type) across the formats; the nested V0 `layer`
    # is not a *_param and was upgraded away before this point.
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


def _move_transform_fields(layer, params):
    """Old data layers kept scale/mean_file/crop_size/mirror in their own message; Caffe moved them."""
    for name in params:
        if not layer.HasField(name):
            continue
        param = getattr(layer, name)
        for field in _LEGACY_DATA_FIELDS:
            if param.HasField(field):
                setattr(layer.transform_param, field, getattr(param, field))
                param.ClearField(field)


def _is_old_batch_norm(layer):
    # Before BatchNorm fixed its own rates, nets declared its three blobs with param { lr_mult: 0 }.
    return layer.type == "BatchNorm" and len(layer.param) == 3 and any(
        p.lr_mult != 0 or p.decay_mult != 0 for p in layer.param)


# ----------------------------------------------------------------------------------------------
# Solvers
# ----------------------------------------------------------------------------------------------

SOLVER_TYPE_NAMES = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                     "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}


def upgrade_solver(solver, source="<solver>"):
    """The legacy enum solver_type becomes the type string (Caffe's UpgradeSolverType), in place.

    Returns the solver. Setting both is refused, as Caffe refuses it.
    """
    if not solver.HasField("solver_type"):
        return solver
    enum_name = pb.SolverParameter.SolverType.Name(solver.solver_type)
    if solver.HasField("type"):
        raise CaffeError(f"{source}: solver_type: {enum_name} (the old enum) and type: \"{solver.type}\" "
                         "(the new string) are both set; give only type")
    solver.type = SOLVER_TYPE_NAMES[enum_name]
    solver.ClearField("solver_type")
    return solver
