"""Fully-connected <-> fully-convolutional conversion of a net and its weights.

Reproduces the paper's dense evaluation set-up (Sect. 3.2) and Caffe's net_surgery recipe: an
InnerProduct layer whose bottom is a (C, h, w) feature map becomes a Convolution with an h x w
kernel, its (N, K = C*h*w) weight reshaped to (N, C, h, w) -- Caffe flattens a blob in C, H, W
order, so the reshape is exact -- and an InnerProduct whose bottom is a vector from an earlier
converted layer becomes a 1x1 Convolution. On crop-sized inputs the dense net computes exactly the
FC net's scores; on larger inputs it yields a map of them. `to_fc` is the way back.

Layer names, bottoms, tops, ParamSpecs and fillers are kept, so weights still map by name (after
the reshape this module does) and the solver's lr_mult/decay_mult carry over.
"""
import contextlib
from collections import OrderedDict, namedtuple

import numpy as np
import torch

from ..errors import CaffeError
from ..proto import pb, upgrade_net

# One converted layer: its name, the new type, the weight shape in the new layout, and whether
# the old InnerProduct weight was stored transposed (K, N).
Change = namedtuple("Change", "name new_type weight_shape transpose")


# ----------------------------------------------------------------------------------------------
# Shape inference (no weights allocated)
# ----------------------------------------------------------------------------------------------

def _copy_fillers(src, dst):
    """Carry weight_filler/bias_filler between InnerProduct and Convolution parameters (the two
    messages name them alike), so a converted layer initialises as the original would."""
    for name in ("weight_filler", "bias_filler"):
        if src.HasField(name):
            getattr(dst, name).CopyFrom(getattr(src, name))


def bottom_shapes(net_param, input_shapes=None, source=None):
    """{layer name: [bottom shapes]} at the net's declared (or given) input shapes.

    The net is built on torch's "meta" device, so a VGG-16 costs no memory here. source: the file
    errors name.
    """
    from ..net import Net

    with _meta_device():
        net = Net(net_param, phase="TEST", input_shapes=input_shapes, source=source)
    return {name: [tuple(s) for s in layer.bottom_shapes]
            for name, layer in zip(net.layer_names, net.layers.values())}, net


@contextlib.contextmanager
def _meta_device():
    with torch.device("meta"):
        yield


# ----------------------------------------------------------------------------------------------
# NetParameter conversion
# ----------------------------------------------------------------------------------------------

def to_dense(net_param, layers=None, input_shapes=None, source="<net>"):
    """(dense NetParameter, [Change]) : InnerProduct layers turned into Convolutions.

    A V1 net is upgraded first; the result is in the current format.

    layers: names to convert (default: every InnerProduct layer).
    """
    net_param = upgrade_net(net_param, source)
    shapes, _ = bottom_shapes(net_param, input_shapes, source)
    by_name = {lp.name: lp for lp in net_param.layer}
    targets = _targets(net_param, layers, "InnerProduct", source)
    out = pb.NetParameter()
    out.CopyFrom(net_param)
    changes = []
    for lp in out.layer:
        if lp.name not in targets:
            continue
        if lp.name not in shapes:
            raise CaffeError(f"{source}: layer '{lp.name}' is not in the TEST-phase net")
        ip = by_name[lp.name].inner_product_param
        if ip.axis != 1:
            raise CaffeError(f"{source}: layer '{lp.name}': only InnerProduct with axis 1 converts to a "
                             f"convolution (found axis {ip.axis})")
        bottom = shapes[lp.name][0]
        if len(bottom) == 4:
            channels, kh, kw = bottom[1:]
        elif len(bottom) == 2:
            # A vector input: it must come from a layer converted before; checked below by
            # building the dense net, where the Convolution insists on a 4-d bottom.
            channels, kh, kw = bottom[1], 1, 1
        else:
            raise CaffeError(f"{source}: layer '{lp.name}': bottom shape {bottom} is neither (N, C, H, W) "
                             "nor (N, K); cannot express it as a convolution")
        conv = pb.ConvolutionParameter(num_output=ip.num_output, bias_term=ip.bias_term)
        if kh == kw:
            conv.kernel_size.append(kh)
        else:
            conv.kernel_h, conv.kernel_w = kh, kw
        _copy_fillers(ip, conv)
        lp.type = "Convolution"
        lp.ClearField("inner_product_param")
        lp.convolution_param.CopyFrom(conv)
        change = Change(lp.name, "Convolution", (ip.num_output, channels, kh, kw), ip.transpose)
        _reshape_embedded_blobs(lp, change)
        changes.append(change)
    _check_builds(out, input_shapes, source, "dense")
    return out, changes


def to_fc(net_param, layers=None, input_shapes=None, source="<net>"):
    """(FC NetParameter, [Change]) : the inverse of to_dense.

    layers: names to convert (default: every Convolution that covers its whole bottom -- kernel
    equal to the bottom's height and width, no padding, one group, no dilation -- at the net's
    declared input size, which is what to_dense produces when the input is crop-sized).
    """
    net_param = upgrade_net(net_param, source)
    shapes, _ = bottom_shapes(net_param, input_shapes, source)
    chosen = set(layers) if layers else None
    if chosen:
        _targets(net_param, layers, "Convolution", source)
    out = pb.NetParameter()
    out.CopyFrom(net_param)
    changes = []
    for lp in out.layer:
        if lp.type != "Convolution" or lp.name not in shapes:
            continue
        if chosen is not None and lp.name not in chosen:
            continue
        p = lp.convolution_param
        bottom = shapes[lp.name][0]
        kh, kw = _kernel(p)
        covers = (len(bottom) == 4 and (kh, kw) == tuple(bottom[2:]) and all(v == 0 for v in p.pad)
                  and not p.pad_h and not p.pad_w and p.group == 1 and all(d == 1 for d in p.dilation))
        if not covers:
            if chosen is not None:
                raise CaffeError(f"{source}: layer '{lp.name}': a {kh}x{kw} convolution (pad {list(p.pad)}, "
                                 f"group {p.group}) on a bottom of shape {bottom} is not an inner product; "
                                 "to_fc needs the kernel to cover the whole bottom at the declared input size")
            continue
        ip = pb.InnerProductParameter(num_output=p.num_output, bias_term=p.bias_term)
        _copy_fillers(p, ip)
        lp.type = "InnerProduct"
        lp.ClearField("convolution_param")
        lp.inner_product_param.CopyFrom(ip)
        change = Change(lp.name, "InnerProduct", (p.num_output, bottom[1] * kh * kw), False)
        _reshape_embedded_blobs(lp, change)
        changes.append(change)
    if chosen is None and not changes:
        raise CaffeError(f"{source}: no convolution covers its whole bottom at the declared input size; "
                         "nothing to convert (declare the crop size as the input shape, or name --layers)")
    _check_builds(out, input_shapes, source, "fully-connected")
    return out, changes


def _targets(net_param, layers, type_name, source):
    if layers is None:
        return {lp.name for lp in net_param.layer if lp.type == type_name}
    types = {lp.name: lp.type for lp in net_param.layer}
    for name in layers:
        if name not in types:
            raise CaffeError(f"{source}: no layer named '{name}'; layers: {', '.join(types)}")
        if types[name] != type_name:
            raise CaffeError(f"{source}: layer '{name}' is a {types[name]}, expected {type_name}")
    return set(layers)


def _kernel(p):
    if p.HasField("kernel_h") or p.HasField("kernel_w"):
        return int(p.kernel_h), int(p.kernel_w)
    k = list(p.kernel_size) or [0]
    return (int(k[0]), int(k[-1])) if len(k) <= 2 else (0, 0)


def _check_builds(net_param, input_shapes, source, what):
    try:
        bottom_shapes(net_param, input_shapes, source)
    except CaffeError as e:
        reason = str(e)
        if reason.startswith(f"{source}: "):
            reason = reason[len(source) + 2:]
        raise CaffeError(f"{source}: the {what} net does not build: {reason}") from None


def _reshape_embedded_blobs(lp, change):
    """Blobs stored inside the NetParameter itself (a binary net) follow the new layout too."""
    for i, blob in enumerate(lp.blobs):
        shape = change.weight_shape if i == 0 else (change.weight_shape[0],)
        values = blob_array(blob)
        new = pb.BlobProto()
        new.shape.dim.extend(shape)
        new.data.extend(convert_blob(values, i, change).ravel().tolist())
        blob.CopyFrom(new)


def blob_array(blob):
    data = np.asarray(blob.double_data if len(blob.double_data) else blob.data, dtype=np.float32)
    return data


# ----------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------

def convert_blob(array, index, change):
    """One learnable blob in the new layout: weight (index 0) reshaped, bias (index 1) flattened.

    Accepts Caffe's legacy right-aligned 4-d shapes ((1, 1, N, K) weights, (1, 1, 1, N) biases).
    """
    array = np.asarray(array)
    shape = change.weight_shape if index == 0 else (change.weight_shape[0],)
    count = int(np.prod(shape))
    if array.size != count:
        raise CaffeError(f"layer '{change.name}': blob {index} has {array.size} values (shape "
                         f"{tuple(array.shape)}), the {change.new_type} needs {count} (shape {tuple(shape)})")
    if index == 0 and change.transpose:
        # A transposed InnerProduct stores (K, N): bring it to (N, K) before reshaping.
        n, k = change.weight_shape[0], count // change.weight_shape[0]
        array = array.reshape(k, n).T
    return np.ascontiguousarray(array.reshape(shape))


def convert_weights(weights, changes, source=None):
    """Apply `changes` to weights read by vgg_caffe.io.caffemodel.read_weights:
    OrderedDict[layer, (type, [arrays])] -> the same with the converted layers reshaped and retyped.
    Layers of the file the net does not have pass through untouched (Caffe ignores them).
    source: the weights file errors name."""
    where = f"{source}: " if source else ""
    by_name = {c.name: c for c in changes}
    missing = [c.name for c in changes if c.name not in weights]
    if missing:
        raise CaffeError(f"{where}the weights have no layer {', '.join(repr(m) for m in missing)} "
                         "(is this the weights file of this net?)")
    out = OrderedDict()
    for name, (type_name, blobs) in weights.items():
        change = by_name.get(name)
        if change is None:
            out[name] = (type_name, list(blobs))
            continue
        try:
            # None: a blob an HDF5 file leaves out (shared with another layer); nothing to reshape.
            out[name] = (change.new_type, [None if b is None else convert_blob(b, i, change)
                                           for i, b in enumerate(blobs)])
        except CaffeError as e:
            raise CaffeError(f"{where}{e}") from None
    return out


def dense_net(net, layers=None):
    """A dense Net sharing `net`'s weights (no copy): the evaluator's fully-convolutional twin."""
    from ..net import Net

    dense_param, changes = to_dense(net.net_param, layers, source=net.source)
    by_name = {c.name: c for c in changes}
    dense = Net(dense_param, phase=net.phase, source=net.source, fill=False)  # blobs shared below
    for name, layer in zip(dense.layer_names, dense.layers.values()):
        if not len(layer.blobs):
            continue
        src = net.layer(name).blobs
        change = by_name.get(name)
        for i, dst in enumerate(layer.blobs):
            value = src[i].detach()
            if change is not None:
                if change.transpose and i == 0:
                    value = value.t()
                value = value.reshape(dst.shape)
            dst.data = value
    dense.to(net._device())
    return dense


def convert_files(direction, model, weights, out_model, out_weights=None, layers=None):
    """net_surgery's job: read a prototxt (V1 or current) and optionally its caffemodel, write the
    converted pair. Returns the list of Changes."""
    from ..proto import read_net, write_message

    if weights and not out_weights:   # before anything is read or written
        raise CaffeError("--out-weights is required with --weights")
    net_param = read_net(model)
    convert = to_dense if direction == "to-dense" else to_fc
    new_param, changes = convert(net_param, layers, source=model)
    write_message(out_model, new_param, binary=False)
    if weights:
        from ..io import caffemodel as weights_io

        converted = convert_weights(weights_io.read_weights(weights), changes, source=weights)
        weights_io.write_weights(out_weights, converted, net_name=new_param.name)
    return changes
