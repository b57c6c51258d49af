"""Weights between Caffe's files and PyTorch's: state_dicts, torchvision's VGG naming, and the
input convention change (Caffe's BGR 0..255 minus the mean pixel -> torchvision's RGB
(x/255 - mean)/std) folded into the first convolution.

Formats, by suffix: .caffemodel (binary NetParameter), .h5/.hdf5 (Caffe's HDF5 layout),
.safetensors, .pt/.pth/.bin (a torch file of tensors, loaded with weights_only=True). A plain
state_dict has keys "<layer>.<blob index>" ("conv1_1.0" the weight, "conv1_1.1" the bias) with
Caffe's shapes; safetensors files also keep each layer's type in their metadata.

torchvision's vgg11/13/16/19 (configurations A, B, D, E; no batch norm) number `features` by
module, counting every Conv2d, ReLU and MaxPool2d: in vgg16 conv1_1 is features.0, conv1_2
features.2, pool1 is 4, conv2_1 features.5 ... ; fc6, fc7, fc8 are classifier.0, .3, .6. The
weights keep Caffe's layouts (conv (O, I, kh, kw); fc (out, in) flattening C, H, W), so only the
names change. C (1x1 convolutions) and A-LRN have no torchvision model.

Folding the input convention. Caffe's first layer sees x = 255 u - m (u in [0, 1], BGR, m the mean
pixel); torchvision's sees t = (u - mu) / sigma (RGB). So x = 255 sigma t + (255 mu - m), and
    conv(x) = sum W x + b = sum (255 sigma_c W) t + (b + sum W (255 mu_c - m_c)) = conv'(t).
The identity holds wherever the kernel lies inside the image. At padded borders Caffe pads x with
0 (u = m / 255, the mean colour) while torchvision pads t with 0 (u = mu), so the first layer's
border outputs differ slightly; no per-channel affine change of the weights can fix that.
"""
import os
import re
import sys
from collections import OrderedDict

import numpy as np
import torch

from . import caffemodel as weights
from ..vgg.configs import get_config
from ..errors import CaffeError
from ..fileio import atomic_open, atomic_write

STATE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
CAFFE_SUFFIXES = (".caffemodel",) + weights.HDF5_SUFFIXES
TORCHVISION = {"A": "vgg11", "B": "vgg13", "D": "vgg16", "E": "vgg19"}
VGG_MEAN_BGR = (103.939, 116.779, 123.68)
TV_MEAN_RGB = (0.485, 0.456, 0.406)
TV_STD_RGB = (0.229, 0.224, 0.225)


def kind_of(path):
    lower = os.fspath(path).lower()
    if lower.endswith(STATE_SUFFIXES):
        return "state_dict"
    if lower.endswith(CAFFE_SUFFIXES):
        return "caffe"
    raise CaffeError(f"{path}: unknown suffix; use .caffemodel, .h5/.hdf5, .safetensors or .pt/.pth")


# ----------------------------------------------------------------------------------------------
# State dicts
# ----------------------------------------------------------------------------------------------

def read_state_dict(path):
    """name -> np.ndarray from .safetensors or a torch file (weights_only), plus safetensors metadata."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CaffeError(f"{path}: no such file")
    try:
        if path.lower().endswith(".safetensors"):
            from safetensors import safe_open
            with safe_open(path, "np") as f:
                meta = f.metadata() or {}
                return OrderedDict((k, f.get_tensor(k)) for k in f.keys()), meta
        data = torch.load(path, map_location="cpu", weights_only=True)
    except CaffeError:
        raise
    except Exception as e:
        raise CaffeError(f"{path}: cannot read as a state_dict ({type(e).__name__}: {e})") from None
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CaffeError(f"{path}: expected a dict of tensors (a state_dict)")
    return OrderedDict((k, v.detach().cpu().numpy()) for k, v in data.items()), {}


def write_state_dict(path, tensors, metadata=None):
    path = os.fspath(path)
    arrays = OrderedDict((k, np.ascontiguousarray(v)) for k, v in tensors.items())
    if path.lower().endswith(".safetensors"):
        from safetensors.numpy import save
        atomic_write(path, save(arrays, metadata=metadata or None))
        return
    with atomic_open(path) as f:
        torch.save(OrderedDict((k, torch.from_numpy(v)) for k, v in arrays.items()), f)


def layers_to_state_dict(layers):
    """{"<layer>.<index>": array} and the metadata {layer: type} from read_weights' layers."""
    out, meta = OrderedDict(), {}
    for name, (type_name, arrays) in layers.items():
        for j, a in enumerate(arrays):
            if a is not None:
                out[f"{name}.{j}"] = a
        if arrays and type_name:
            meta[name] = type_name
    return out, meta


def state_dict_to_layers(tensors, metadata, source):
    """The reverse; a key must be "<layer>.<blob index>". Without a recorded type, a layer whose
    first blob is 4-d is taken for a Convolution and 2-d for an InnerProduct (copying into a net
    goes by name, so the type only matters to readers of the file)."""
    blobs = OrderedDict()
    for key, a in tensors.items():
        m = re.fullmatch(r"(.+)\.(\d+)", key)
        if not m:
            raise CaffeError(f"{source}: key '{key}' is not '<layer>.<blob index>' "
                             "(use --torchvision for torchvision's names)")
        blobs.setdefault(m.group(1), {})[int(m.group(2))] = a
    layers = OrderedDict()
    for name, by_index in blobs.items():
        if sorted(by_index) != list(range(len(by_index))):
            raise CaffeError(f"{source}: layer '{name}' has blob indices {sorted(by_index)}; expected 0..{len(by_index) - 1}")
        arrays = [by_index[j] for j in range(len(by_index))]
        guess = {4: "Convolution", 2: "InnerProduct"}.get(arrays[0].ndim, "")
        layers[name] = (metadata.get(name, guess), arrays)
    return layers


# ----------------------------------------------------------------------------------------------
# torchvision naming
# ----------------------------------------------------------------------------------------------

def torchvision_keys(config):
    """OrderedDict (caffe layer, blob index) -> torchvision key for configuration A, B, D or E."""
    cfg = get_config(config)
    if cfg.name not in TORCHVISION:
        raise CaffeError(f"configuration {cfg.name} has no torchvision model (torchvision has A, B, D, E)")
    keys, index = OrderedDict(), 0
    for stage in cfg.stages:
        for conv in stage:
            keys[(conv.name, 0)] = f"features.{index}.weight"
            keys[(conv.name, 1)] = f"features.{index}.bias"
            index += 2                  # Conv2d, ReLU
        index += 1                      # MaxPool2d
    for name, i in (("fc6", 0), ("fc7", 3), ("fc8", 6)):
        keys[(name, 0)] = f"classifier.{i}.weight"
        keys[(name, 1)] = f"classifier.{i}.bias"
    return keys


def guess_config(names, source):
    """The configuration (A, B, D, E) whose weight layers are exactly `names` (layer names or
    torchvision keys)."""
    names = set(names)
    for config in TORCHVISION:
        keys = torchvision_keys(config)
        if names == {layer for layer, _ in keys} or names == set(keys.values()):
            return config
    raise CaffeError(f"{source}: the weights are not those of VGG configuration A, B, D or E "
                     f"(torchvision's vgg11/13/16/19): {len(names)} names, e.g. {', '.join(sorted(names)[:6])}")


def check_torchvision_fit(layers, config, source, warn):
    """Refuse what torchvision's VGG cannot express, warn for what it drops. C names its layers as
    D does, but conv3_3, conv4_3 and conv5_3 are 1x1 (torchvision's vgg16 has 3x3 there); A-LRN
    is A plus an LRN layer (norm1), which torchvision's vgg11 has no module for."""
    cfg = get_config(config)
    wrong = [(c.name, tuple(layers[c.name][1][0].shape[-2:])) for c in cfg.convs()
             if c.name in layers and layers[c.name][1] and tuple(layers[c.name][1][0].shape[-2:]) != (c.kernel, c.kernel)]
    if wrong:
        kernels = ", ".join(f"{n} {h}x{w}" for n, (h, w) in wrong)
        which = "configuration C (1x1 convolutions)" if all(k == (1, 1) for _, k in wrong) else "not configuration " + config
        raise CaffeError(f"{source}: {which}: {kernels}, where torchvision's {TORCHVISION[config]} has 3x3 "
                         "convolutions; torchvision has no model for it (it has A, B, D, E: vgg11/13/16/19). "
                         "Convert without --torchvision to keep Caffe's '<layer>.<blob index>' names")
    lrn = [n for n, (t, _) in layers.items() if t == "LRN"]
    if lrn:
        warn(f"{source}: the file has LRN layer(s) {', '.join(lrn)} (configuration A-LRN); torchvision's "
             f"{TORCHVISION[config]} has no LRN, so the converted model leaves it out and computes "
             "configuration A, not A-LRN")


def _warn(message):
    print(f"warning: {message}", file=sys.stderr)


def to_torchvision(layers, source, warn=_warn):
    with_blobs = [n for n, (_, a) in layers.items() if a]
    config = guess_config(with_blobs, source)
    check_torchvision_fit(layers, config, source, warn)
    out = OrderedDict()
    for (name, j), key in torchvision_keys(config).items():
        arrays = layers[name][1]
        if j >= len(arrays):
            raise CaffeError(f"{source}: layer '{name}' has no blob {j} (torchvision needs a bias)")
        a = arrays[j]
        # legacy (1, 1, N, K) fc weights and (1, 1, 1, N) biases in current-format shapes
        out[key] = a.reshape(a.shape[-2:]) if key.startswith("classifier") and key.endswith("weight") else (
            a.reshape(-1) if key.endswith("bias") else a)
    return out, config


def from_torchvision(tensors, source):
    config = guess_config(tensors, source)
    layers = OrderedDict()
    for (name, j), key in torchvision_keys(config).items():
        kind = "Convolution" if key.startswith("features") else "InnerProduct"
        layers.setdefault(name, (kind, []))[1].append(np.asarray(tensors[key]))
    return layers, config


def is_torchvision(tensors):
    return any(k.startswith(("features.", "classifier.")) for k in tensors)


# ----------------------------------------------------------------------------------------------
# The first convolution: channel order and input normalisation
# ----------------------------------------------------------------------------------------------

def first_conv(layers, source):
    for name, (type_name, arrays) in layers.items():
        if arrays and arrays[0] is not None and arrays[0].ndim == 4:
            if arrays[0].shape[1] != 3:
                raise CaffeError(f"{source}: the first convolution '{name}' takes {arrays[0].shape[1]} "
                                 "input channels; colour conversions need 3")
            return name
    raise CaffeError(f"{source}: no convolution layer (4-d weight) to convert")


def swap_rgb_bgr(weight):
    """Reverse the input channels of a (O, 3, kh, kw) weight: BGR <-> RGB (its own inverse)."""
    return np.ascontiguousarray(weight[:, ::-1])


def fold_normalisation(weight, bias, mean_bgr=VGG_MEAN_BGR, mean=TV_MEAN_RGB, std=TV_STD_RGB):
    """RGB-ordered Caffe weight/bias -> weight/bias taking torchvision's normalised input."""
    w = weight.astype(np.float64)
    shift = 255.0 * np.array(mean) - np.array(mean_bgr)[::-1]       # 255 mu - m, per RGB channel
    scale = 255.0 * np.array(std)
    new_bias = bias.astype(np.float64) + np.einsum("ochw,c->o", w, shift)
    new_weight = w * scale[None, :, None, None]
    return new_weight.astype(weight.dtype), new_bias.astype(bias.dtype)


def unfold_normalisation(weight, bias, mean_bgr=VGG_MEAN_BGR, mean=TV_MEAN_RGB, std=TV_STD_RGB):
    """The inverse of fold_normalisation."""
    scale = 255.0 * np.array(std)
    w = weight.astype(np.float64) / scale[None, :, None, None]
    shift = 255.0 * np.array(mean) - np.array(mean_bgr)[::-1]
    new_bias = bias.astype(np.float64) - np.einsum("ochw,c->o", w, shift)
    return w.astype(weight.dtype), new_bias.astype(bias.dtype)


def convert_first_conv(layers, source, rgb=False, normalise=False, inverse=False, mean_bgr=VGG_MEAN_BGR):
    """Apply (or with inverse=True undo) the channel swap and the normalisation fold in place."""
    if not (rgb or normalise):
        return None
    name = first_conv(layers, source)
    type_name, arrays = layers[name]
    arrays = list(arrays)
    if normalise and len(arrays) < 2:
        raise CaffeError(f"{source}: the first convolution '{name}' has no bias to fold the mean into")
    if not inverse:
        arrays[0] = swap_rgb_bgr(arrays[0])
        if normalise:
            arrays[0], arrays[1] = fold_normalisation(arrays[0], arrays[1], mean_bgr)
    else:
        if normalise:
            arrays[0], arrays[1] = unfold_normalisation(arrays[0], arrays[1], mean_bgr)
        arrays[0] = swap_rgb_bgr(arrays[0])
    layers[name] = (type_name, arrays)
    return name


# ----------------------------------------------------------------------------------------------
# Whole conversions
# ----------------------------------------------------------------------------------------------

def load(path):
    """(layers as read_weights gives them, a description of the file)."""
    if kind_of(path) == "caffe":
        return weights.read_weights(path), "caffe"
    tensors, meta = read_state_dict(path)
    if is_torchvision(tensors):
        layers, config = from_torchvision(tensors, path)
        return layers, f"torchvision {TORCHVISION[config]}"
    return state_dict_to_layers(tensors, meta, path), "state_dict"


def convert(src, dst, torchvision=False, rgb=False, normalise=False, mean_bgr=VGG_MEAN_BGR, v1=False):
    """Convert between any two formats; returns a one-line summary.

    rgb / normalise describe the PyTorch side: applied going to a state_dict, undone coming back
    from one. normalise implies rgb (torchvision's input is RGB)."""
    rgb = rgb or normalise
    src_kind, dst_kind = kind_of(src), kind_of(dst)
    layers, what = load(src)
    if rgb and src_kind == dst_kind:
        raise CaffeError("--rgb-first-conv / --torchvision-normalisation convert between a Caffe file and "
                         f"a state_dict; {src} and {dst} are both {'Caffe files' if src_kind == 'caffe' else 'state_dicts'}")
    touched = convert_first_conv(layers, src, rgb, normalise, inverse=src_kind == "state_dict", mean_bgr=mean_bgr)
    if dst_kind == "caffe":
        if torchvision:
            raise CaffeError("--torchvision names a state_dict's keys; the output is a Caffe file")
        weights.write_weights(dst, layers, v1=v1)
        out = "Caffe layers"
    elif torchvision:
        tensors, config = to_torchvision(layers, src)
        write_state_dict(dst, tensors)
        out = f"torchvision {TORCHVISION[config]} keys"
    else:
        tensors, meta = layers_to_state_dict(layers)
        write_state_dict(dst, tensors, meta if dst.lower().endswith(".safetensors") else None)
        out = "'<layer>.<blob index>' keys"
    count = sum(a.size for _, arrays in layers.values() for a in arrays if a is not None)
    text = f"{src} ({what}) -> {dst} ({out}): {len([l for l in layers.values() if l[1]])} layers, {count:,} parameters"
    if touched:
        text += f"; first convolution '{touched}' " + ("un" if src_kind == "state_dict" else "") + (
            "folded for torchvision's normalised RGB input" if normalise else "switched between BGR and RGB")
    return text


def describe(path):
    """Lines for --info: every layer with its type and blob shapes."""
    lines = []
    if kind_of(path) == "caffe":
        with weights.open_weights(path) as f:
            net = getattr(f, "net", None)
            fmt = "HDF5" if net is None else ("caffemodel, V1 format (legacy 4-d dims)" if f.v1 else "caffemodel, current format")
            lines.append(f"{path}: {fmt}" + (f", net '{net.name}'" if net is not None and net.name else ""))
            total = 0
            for name, layer in f.layers.items():
                shapes = []
                for b in layer.blobs:
                    if b is None:
                        shapes.append("(shared)")
                        continue
                    total += b.count
                    shapes.append(("legacy " if b.legacy else "") + "x".join(str(d) for d in b.shape)
                                  + ("" if np.dtype(b.dtype) == np.float32 else f" {np.dtype(b.dtype).name}"))
                lines.append(f"  {name:16} {layer.type or '-':14} {'  '.join(shapes)}")
    else:
        layers, what = load(path)
        lines.append(f"{path}: {what}")
        total = 0
        for name, (type_name, arrays) in layers.items():
            total += sum(a.size for a in arrays)
            lines.append(f"  {name:16} {type_name or '-':14} {'  '.join('x'.join(map(str, a.shape)) for a in arrays)}")
    lines.append(f"  {total:,} parameters")
    return lines
