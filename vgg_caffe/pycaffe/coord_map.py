"""caffe.coord_map: how coordinates of one NetSpec top map onto another's, and crop() from it.

Reproduces python/caffe/coord_map.py (used by FCN to align upsampled score maps). A spatial
layer maps its input coordinate x to its output coordinate y = a*x + b along the axes from
`axis` on: Convolution/Pooling/Im2col a = 1/stride, b = (pad - (k_eff - 1)/2)/stride with the
dilated kernel k_eff = (k - 1)*dilation + 1; Deconvolution a = stride, b = (k_eff - 1)/2 - pad;
Crop a = 1, b = -offset; element-wise layers (PASS_THROUGH_LAYERS) a = 1, b = 0. Maps compose
along a path; coord_map_from_to(top_from, top_to) walks both tops back to a common ancestor.
crop(top_from, top_to) returns an L.Crop layer cropping top_from to top_to, which needs a = 1 and
an integer, non-positive b.
"""
import numpy as np

from .net_spec import layers as L

PASS_THROUGH_LAYERS = ["AbsVal", "BatchNorm", "Bias", "BNLL", "Dropout", "Eltwise", "ELU", "Log", "LRN",
                       "Exp", "MVN", "Power", "ReLU", "PReLU", "Scale", "Sigmoid", "Split", "TanH",
                       "Threshold"]


class UndefinedMapException(Exception):
    """The layer has no coordinate map (InnerProduct, Flatten, ...)."""


class AxisMismatchException(Exception):
    """Two maps along a path act on different axes."""


def _param(fn, name):
    return fn.params.get(name, fn.params)


def conv_params(fn):
    """(axis, stride, effective kernel, pad) of a Convolution/Pooling/Deconvolution NetSpec layer."""
    p = _param(fn, "pooling_param" if fn.type_name == "Pooling" else "convolution_param")
    legacy = {"pad_h", "pad_w", "kernel_h", "kernel_w", "stride_h", "stride_w"} & set(p)
    if legacy:
        raise ValueError(f"cropping does not support the legacy _h/_w parameters ({', '.join(sorted(legacy))})")
    kernel = np.array(p["kernel_size"], ndmin=1)
    dilation = np.array(p.get("dilation", 1), ndmin=1)
    return (p.get("axis", 1), np.array(p.get("stride", 1), ndmin=1), (kernel - 1) * dilation + 1,
            np.array(p.get("pad", 0), ndmin=1))


def crop_params(fn):
    p = _param(fn, "crop_param")
    return p.get("axis", 2), np.array(p.get("offset", 0), ndmin=1)


def coord_map(fn):
    """(axis, a, b) of one layer; axis None for layers acting on every axis alike."""
    if fn.type_name in ("Convolution", "Pooling", "Im2col"):
        axis, stride, kernel, pad = conv_params(fn)
        return axis, 1 / stride, (pad - (kernel - 1) / 2) / stride
    if fn.type_name == "Deconvolution":
        axis, stride, kernel, pad = conv_params(fn)
        return axis, stride, (kernel - 1) / 2 - pad
    if fn.type_name in PASS_THROUGH_LAYERS:
        return None, 1, 0
    if fn.type_name == "Crop":
        axis, offset = crop_params(fn)
        return axis - 1, 1, -offset   # -1: the last axis not mapped
    raise UndefinedMapException(fn.type_name)


def compose(base_map, next_map):
    """y = a1*(a2*x + b2) + b1: the map `next_map` followed by `base_map`."""
    ax1, a1, b1 = base_map
    ax2, a2, b2 = next_map
    if ax1 is None:
        ax = ax2
    elif ax2 is None or ax1 == ax2:
        ax = ax1
    else:
        raise AxisMismatchException(f"axis {ax1} vs {ax2}")
    return ax, a1 * a2, a1 * b2 + b1


def inverse(coord_map):
    ax, a, b = coord_map
    return ax, 1 / a, -b / a


def _bottoms(top):
    # a Crop's second bottom only gives the size; coordinates come through the first
    return top.fn.inputs[:1] if top.fn.type_name == "Crop" else top.fn.inputs


def _walk_back(top):
    """{ancestor top: map from the ancestor's coordinates to top's}, top included."""
    maps, frontier = {top: (None, 1, 0)}, [top]
    while frontier:
        current = frontier.pop()
        try:
            step = coord_map(current.fn)
        except UndefinedMapException:
            continue
        for bottom in _bottoms(current):
            maps[bottom] = compose(maps[current], step)
            frontier.append(bottom)
    return maps


def coord_map_from_to(top_from, top_to):
    """(axis, a, b) with top_to coordinate = a * top_from coordinate + b."""
    from_maps = _walk_back(top_from)
    to_maps, frontier = {top_to: (None, 1, 0)}, [top_to]
    while frontier:
        current = frontier.pop()
        if current in from_maps:
            return compose(to_maps[current], inverse(from_maps[current]))
        try:
            step = coord_map(current.fn)
        except UndefinedMapException:
            continue
        for bottom in _bottoms(current):
            to_maps[bottom] = compose(to_maps[current], step)
            frontier.append(bottom)
    raise RuntimeError("Could not compute map between tops; are they connected by spatial layers?")


def crop(top_from, top_to):
    """An L.Crop of top_from to the size and position of top_to."""
    ax, a, b = coord_map_from_to(top_from, top_to)
    a, b = np.asarray(a), np.asarray(b)
    if not (a == 1).all():
        raise ValueError(f"scale mismatch on crop (a = {a})")
    if not (b <= 0).all():
        raise ValueError(f"cannot crop negative offset (b = {b})")
    if not (np.round(b) == b).all():
        raise ValueError(f"cannot crop noninteger offset (b = {b})")
    return L.Crop(top_from, top_to, crop_param=dict(axis=ax + 1, offset=[int(v) for v in -np.round(b)]))
