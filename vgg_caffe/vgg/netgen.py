"""Net and solver definitions for every configuration of Table 1 and each of the paper's regimes.

Builds NetParameter / SolverParameter messages (not text templates) from vgg_caffe.vgg.configs and
writes them as prototxt, into OUT/<CONFIG>/:

  train_val_S256.prototxt, train_val_S384.prototxt, train_val_multiscale.prototxt
        TRAIN: a `type: "Python"` data layer (vgg_caffe.data.vgg_layer.VGGData, options as JSON in
        param_str) doing the paper's isotropic rescaling to S (fixed, or jittered in
        [S_min, S_max]), random 224 crop, mirror and colour shift; upstream Caffe still parses it.
        TEST: Caffe's standard LMDB Data layer with a centre crop. The three files differ only in
        the scale range of the TRAIN layer.
  deploy.prototxt         Input 10x3x224x224 ... Softmax "prob" (the Model Zoo's layout).
  deploy_dense.prototxt   fc6 as a 7x7 convolution, fc7/fc8 as 1x1 ones (same names, so the
                          weights map by name after reshaping) for the paper's dense evaluation.
  solver_S256.prototxt, solver_S384.prototxt, solver_multiscale.prototxt
        The paper's three training regimes: from scratch at S = 256 (the deeper nets pre-initialised
        from net A, see the comment at the top of the file); S = 384 initialised from S = 256 with
        base_lr 1e-3; S in [256, 512] fine-tuned from S = 384.

Command line (what `make prototxt [CONFIG=E]` runs):

    python -m vgg_caffe.netgen --out prototxt [--config E] [--width-div 16 --crop 32 ...]

From Python, for small nets on the same code path (demos, tests):

    from vgg_caffe.vgg import netgen
    paths = netgen.write_all("/tmp/small", "A", width_div=16, crop=32, num_classes=10,
                             train_source="train_lmdb", test_source="val_lmdb", batch_size=32)
    # paths["solver_S256"] -> "/tmp/small/A/solver_S256.prototxt"

Options scale with the crop: the default scale ranges are the paper's (256, 384, [256, 512])
times crop/224, and the dense fc6 kernel is the last feature map's size (crop/32 under Caffe's
ceil pooling), not 7.
"""
import json
import math
import os
from collections import OrderedDict
from dataclasses import fields

from .configs import LRN, NAMES, get_config
from ..errors import CaffeError
from ..fileio import atomic_write
from ..proto import format_text, pb
from .options import DATA_CLASS, DATA_MODULE, INIT_FROM, MEAN_BGR, PAPER_SCALES, REGIMES, Options  # noqa: F401
from .solvers import _set_field, final_weights, solver  # noqa: F401

def _layer(net, name, type_, bottom=(), top=(), phase=None):
    layer = net.layer.add(name=name, type=type_)
    layer.bottom.extend(bottom)
    layer.top.extend(top)
    if phase is not None:
        layer.include.add(phase=phase)
    return layer


def _learning(layer):
    """Model Zoo convention: weights at the base rate with decay, biases at twice the rate without."""
    layer.param.add(lr_mult=1, decay_mult=1)
    layer.param.add(lr_mult=2, decay_mult=0)


def _fillers(param, opts):
    # The paper's text says "zero mean and 10^-2 variance" (std 0.1); Caffe practice for VGG and
    # AlexNet-style nets is std 0.01, which is what the deeper nets need to train at all. The
    # paper's footnote: Glorot (xavier) initialisation works without pre-training from net A.
    if opts.filler == "xavier":
        param.weight_filler.type = "xavier"
    else:
        param.weight_filler.type = "gaussian"
        param.weight_filler.std = 0.01
    param.bias_filler.type = "constant"
    param.bias_filler.value = 0


def _conv(net, name, bottom, width, kernel, pad, opts, train):
    layer = _layer(net, name, "Convolution", [bottom], [name])
    if train:
        _learning(layer)
    p = layer.convolution_param
    p.num_output = width
    if pad:
        p.pad.append(pad)
    p.kernel_size.append(kernel)
    if train:
        _fillers(p, opts)
    return layer


def _fc(net, name, bottom, width, opts, train):
    layer = _layer(net, name, "InnerProduct", [bottom], [name])
    if train:
        _learning(layer)
    layer.inner_product_param.num_output = width
    if train:
        _fillers(layer.inner_product_param, opts)
    return layer


def _relu(net, name, blob):
    _layer(net, name, "ReLU", [blob], [blob])


def _dropout(net, name, blob):
    _layer(net, name, "Dropout", [blob], [blob]).dropout_param.dropout_ratio = 0.5


def final_map_size(crop):
    """Spatial size after the five 2x2/2 max-pools under Caffe's ceil rounding (224 -> 7, 32 -> 1)."""
    size = crop
    for _ in range(5):
        size = int(math.ceil((size - 2) / 2)) + 1 if size > 1 else 1
    return size


def _stack(net, cfg, opts, train, dense=False):
    """conv stages, pools, (LRN), then fc6-fc8 (as convolutions when dense). Returns the last top."""
    top = "data"
    for s, stage in enumerate(cfg.stages, start=1):
        for conv in stage:
            _conv(net, conv.name, top, opts.width(conv.width), conv.kernel, conv.pad, opts, train)
            _relu(net, conv.relu, conv.name)
            top = conv.name
        if cfg.lrn and s == 1:
            norm = _layer(net, "norm1", "LRN", [top], ["norm1"])
            for key, value in LRN.items():
                setattr(norm.lrn_param, key, value)
            top = "norm1"
        pool = _layer(net, f"pool{s}", "Pooling", [top], [f"pool{s}"])
        pool.pooling_param.pool = pb.PoolingParameter.MAX
        pool.pooling_param.kernel_size = 2
        pool.pooling_param.stride = 2
        top = f"pool{s}"
    widths = [opts.width(cfg.fc[0]), opts.width(cfg.fc[1]), opts.num_classes]
    for i, width in enumerate(widths, start=6):
        name = f"fc{i}"
        if dense:
            kernel = final_map_size(opts.crop) if i == 6 else 1
            _conv(net, name, top, width, kernel, 0, opts, train)
        else:
            _fc(net, name, top, width, opts, train)
        top = name
        if i < 8:
            _relu(net, f"relu{i}", name)
            _dropout(net, f"drop{i}", name)
    return top


def vgg_param_str(source, batch_size, scale, crop_size, mirror=True, color_shift=0.1, mean_value=MEAN_BGR):
    """The JSON the VGG training data layer reads: keys sorted, compact, exactly this schema."""
    return json.dumps({"source": source, "batch_size": batch_size, "scale": [int(scale[0]), int(scale[1])],
                       "crop_size": crop_size, "mirror": bool(mirror), "color_shift": color_shift,
                       "mean_value": list(mean_value)}, sort_keys=True, separators=(",", ":"))


def train_val_net(config, regime="S256", opts=None):
    """The training and validation net of one regime (they differ only in the scale range)."""
    cfg, opts = get_config(config), opts or Options()
    if regime not in REGIMES:
        raise CaffeError(f"netgen: unknown regime '{regime}'; regimes: {', '.join(REGIMES)}")
    net = pb.NetParameter(name=f"VGG_{cfg.name}")
    train = _layer(net, "data", "Python", top=["data", "label"], phase=pb.TRAIN)
    train.python_param.module = DATA_MODULE
    train.python_param.layer = DATA_CLASS
    train.python_param.param_str = vgg_param_str(opts.train_source, opts.batch_size, opts.scales[regime],
                                                 opts.crop, opts.mirror, opts.color_shift, opts.mean_value)
    test = _layer(net, "data", "Data", top=["data", "label"], phase=pb.TEST)
    test.data_param.source = opts.test_source
    test.data_param.backend = pb.DataParameter.LMDB
    test.data_param.batch_size = opts.test_batch_size
    test.transform_param.crop_size = opts.crop
    test.transform_param.mean_value.extend(opts.mean_value)
    top = _stack(net, cfg, opts, train=True)
    _layer(net, "loss", "SoftmaxWithLoss", [top, "label"], ["loss"])
    _layer(net, "accuracy", "Accuracy", [top, "label"], ["accuracy"], phase=pb.TEST)
    # Caffe's Accuracy refuses top_k above the class count, so small nets (< 5 classes) skip top-5.
    if opts.num_classes >= 5:
        top5 = _layer(net, "accuracy_top5", "Accuracy", [top, "label"], ["accuracy_top5"], phase=pb.TEST)
        top5.accuracy_param.top_k = 5
    return net


def deploy_net(config, opts=None, dense=False):
    """The test-time net: Input, the stack, Softmax "prob"; `dense` turns fc6-fc8 into convolutions."""
    cfg, opts = get_config(config), opts or Options()
    net = pb.NetParameter(name=f"VGG_{cfg.name}" + ("_dense" if dense else ""))
    data = _layer(net, "data", "Input", top=["data"])
    data.input_param.shape.add().dim.extend([1 if dense else opts.deploy_batch, 3, opts.crop, opts.crop])
    top = _stack(net, cfg, opts, train=False, dense=dense)
    _layer(net, "prob", "Softmax", [top], ["prob"])
    return net


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------

from .solvers import solver  # noqa: E402  (solvers builds on Options above)


def _with_comments(comments, message):
    return "".join(f"# {line}\n" for line in comments) + format_text(message)


def render(config, net_dir="prototxt", opts=None):
    """{file name: text} of every file of one configuration. Solvers refer to their nets as
    `net_dir/<CONFIG>/<file>` (the paths written into the solver, relative to where you run)."""
    cfg, opts = get_config(config), opts or Options()
    header = [f"VGG configuration {cfg.name} of Table 1 (Simonyan & Zisserman), generated by "
              f"vgg_caffe.netgen; regenerate, do not edit: make prototxt CONFIG={cfg.name}"]
    if opts.non_defaults():
        header.append("options: " + " ".join(opts.non_defaults()))
    files = OrderedDict()
    for regime in REGIMES:
        files[f"train_val_{regime}.prototxt"] = _with_comments(header, train_val_net(cfg.name, regime, opts))
    files["deploy.prototxt"] = _with_comments(header, deploy_net(cfg.name, opts))
    files["deploy_dense.prototxt"] = _with_comments(
        header + ["Dense evaluation: fc6-fc8 as convolutions with the names of deploy.prototxt; convert "
                  "its weights with: python tools/net_surgery.py to-dense"],
        deploy_net(cfg.name, opts, dense=True))
    for regime in REGIMES:
        solver_path = os.path.join(net_dir, cfg.name, f"solver_{regime}.prototxt")
        s, comments = solver(cfg.name, regime, os.path.join(net_dir, cfg.name, f"train_val_{regime}.prototxt"), opts)
        comments = [c.replace("{solver}", solver_path) for c in comments]
        files[f"solver_{regime}.prototxt"] = _with_comments(header + comments, s)
    return files


def write_all(out_dir, config=None, net_dir=None, **options):
    """Write the files of `config` (all six when None) under out_dir/<CONFIG>/.

    Keyword options are the fields of Options (width_div, crop, num_classes, train_source,
    test_source, batch_size, test_batch_size, scales={"S256": (lo, hi), ...}, filler, solver
    settings, extra_solver={field: value}); `scale=(lo, hi)` is shorthand for the S256 regime's
    range. Solvers name their nets under `net_dir` (default out_dir).
    Returns {"<name without .prototxt>": path} for one config, {config: that dict} for all.
    """
    if "scale" in options:
        options.setdefault("scales", {})
        options["scales"] = dict(options["scales"] or {}, S256=tuple(options.pop("scale")))
    unknown = set(options) - {f.name for f in fields(Options)}
    if unknown:
        raise CaffeError(f"netgen: unknown option(s) {', '.join(sorted(unknown))}; options: "
                         + ", ".join(f.name for f in fields(Options)) + ", scale")
    opts = Options(**options)
    out_dir = os.fspath(out_dir)
    net_dir = out_dir if net_dir is None else os.fspath(net_dir)
    result = OrderedDict()
    for name in ([get_config(config).name] if config else NAMES):
        paths = OrderedDict()
        for file_name, text in render(name, net_dir, opts).items():
            path = os.path.join(out_dir, name, file_name)
            atomic_write(path, text)
            paths[file_name[:-len(".prototxt")]] = path
        result[name] = paths
    return result[get_config(config).name] if config else result

