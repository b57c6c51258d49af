"""Weights in and out of a built Net: Caffe's Net::CopyTrainedLayersFrom and Net::ToProto/ToHDF5.

Copies by layer name from a .caffemodel or .h5 (vgg_caffe.io.caffemodel reads them), checking
blob counts and shapes (legacy 4-d dims match when the net's shape padded with 1s equals them),
reporting the file's layers the net lacks, and, with `strict`, the net's learnable layers the file
lacks; blobs shared between layers (ParamSpec names) are copied once. Saving writes every layer's
blobs in the current format, or Caffe's HDF5 layout for .h5/.hdf5.
"""
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
import torch
from . import hdf5 as hdf5_weights
from ..errors import CaffeError
from .caffemodel import HDF5_SUFFIXES, open_weights, write_weights

log = logging.getLogger(__name__)


@dataclass
class CopyReport:
    """What copy_into did: layers copied, file layers with blobs left out (not in the net, or not
    selected), and net layers with learnable blobs that got nothing."""
    path: str
    copied: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    missing: list = field(default_factory=list)

    def __str__(self):
        text = f"{self.path}: copied {len(self.copied)} layer(s)"
        if self.skipped:
            text += f"; ignored file layer(s) {', '.join(self.skipped)}"
        if self.missing:
            text += f"; net layer(s) left as they were: {', '.join(self.missing)}"
        return text


def shape_matches(net_shape, blob):
    """Caffe's Blob::ShapeEquals against a stored blob (legacy dims compare right-aligned)."""
    net_shape = tuple(net_shape)
    if blob.legacy:
        return len(net_shape) <= 4 and (1,) * (4 - len(net_shape)) + net_shape == tuple(blob.shape)
    return net_shape == tuple(blob.shape)


def _net_layers(net):
    return OrderedDict(zip(net.layer_names, net.layers.values()))


def _shared_flags(net):
    """For each layer name, per blob: True when the blob is shared from an earlier layer."""
    seen, flags = set(), {}
    for name, layer in _net_layers(net).items():
        flags[name] = [id(b) in seen for b in layer.blobs]
        seen.update(id(b) for b in layer.blobs)
    return flags


def copy_into(net, path, strict=True, layers=None):
    """Copy blobs by layer name from a .caffemodel or HDF5 file into `net`. Returns a CopyReport.

    Everything is checked before anything is copied, so a CaffeError leaves the net unchanged."""
    path = os.fspath(path)
    net_layers = _net_layers(net)
    shared = _shared_flags(net)
    # layers owning at least one blob (a layer whose blobs are all shared needs nothing)
    learnable = [n for n, l in net_layers.items() if not all(shared[n]) and len(l.blobs)]
    with open_weights(path) as f:
        stored = f.layers
        with_blobs = [n for n, l in stored.items() if l.blobs]
        if layers is not None:
            wanted = list(layers)
            for n in wanted:
                if n not in stored or not stored[n].blobs:
                    raise CaffeError(f"{path}: layer '{n}' was asked for but the file has no blobs for it"
                                     f"; layers with blobs: {', '.join(with_blobs) or 'none'}")
                if n not in net_layers:
                    raise CaffeError(f"{path}: layer '{n}' was asked for but the net has no layer of that name")
        else:
            wanted = [n for n in with_blobs if n in net_layers]
        if not wanted and with_blobs and learnable:
            raise CaffeError(
                f"{path}: no layer name matches: the file's layers with weights ({_few(with_blobs)}) "
                f"are not in the net, whose learnable layers are {_few(learnable)}; "
                "is this the weights file of another net?")
        report = CopyReport(path, skipped=[n for n in with_blobs if n not in wanted])
        if layers is None:
            report.missing = [n for n in learnable if n not in stored or not stored[n].blobs]
        if strict and report.missing:
            raise CaffeError(f"{path}: the net's layer(s) {', '.join(report.missing)} have learnable "
                             "blobs but the file has none for them (to keep them as initialised: strict=False in "
                             "Python, --no-strict on the command line)")
        plan = []
        for n in wanted:
            plan += _plan_layer(path, n, net_layers[n], stored[n], shared[n])
        with torch.no_grad():
            for param, blob in plan:
                _copy_blob(param, blob)
        report.copied = wanted
    for n in report.skipped:
        log.info("Ignoring source layer %s", n)
    return report


def _few(names, limit=8):
    names = list(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _plan_layer(path, name, layer, stored, shared):
    target = list(layer.blobs)
    source = list(stored.blobs)
    # Caffe's binary loader wants equal counts; its HDF5 loader lets a shared blob be absent.
    hdf5 = stored.param is None
    fewer_ok = hdf5 and all(shared[j] for j in range(len(source), len(target)))
    if len(source) > len(target) or (len(source) < len(target) and not fewer_ok):
        raise CaffeError(f"{path}: layer '{name}': the file has {len(source)} blob(s), the net's "
                         f"{layer.type} layer has {len(target)} (incompatible number of blobs)")
    plan = []
    for j, param in enumerate(target):
        blob = source[j] if j < len(source) else None
        if blob is None:
            if shared[j]:
                continue
            raise CaffeError(f"{path}: layer '{name}': blob {j} is missing from the file")
        if not shape_matches(param.shape, blob):
            kind = "legacy 4-d dims " if blob.legacy else ""
            raise CaffeError(
                f"{path}: layer '{name}' blob {j}: shape mismatch: the net expects "
                f"{tuple(param.shape)}, the file has {kind}{tuple(blob.shape)}. To learn this layer "
                "from scratch instead, rename it (or leave it out with layers=[...])")
        if blob.count != param.numel():
            raise CaffeError(f"{path}: layer '{name}' blob {j}: the file holds {blob.count} values "
                             f"for shape {tuple(blob.shape)} ({param.numel()} expected); it is corrupt")
        plan.append((param, blob))
    return plan


def _copy_blob(param, blob):
    data = param.data
    if data.device.type == "cpu" and data.is_contiguous() and data.dtype == torch.float32:
        blob.read(data.numpy())     # straight from the file into the parameter
    else:
        data.copy_(torch.from_numpy(blob.read()).reshape(data.shape))
    # Writes through .data / numpy are invisible to the parameter's version counter; count this
    # one, so that what keys on it (vgg_caffe.weight_casts) sees new weights.
    torch.autograd.graph.increment_version(param)


def save_net(net, path, v1=False):
    """Write `net`'s layers with their blobs, as Caffe's Net::ToProto (every layer, full
    definition) or, for .h5/.hdf5, Net::ToHDF5 (a group per layer; shared blobs only once)."""
    path = os.fspath(path)
    net_layers = _net_layers(net)
    if path.lower().endswith(HDF5_SUFFIXES):
        shared = _shared_flags(net)
        hdf5_weights.write(path, [(n, [None if shared[n][j] else b.detach().cpu().numpy()
                                       for j, b in enumerate(l.blobs)])
                                  for n, l in net_layers.items()])
        return
    items = [(l.param, [b for b in l.blobs]) for l in net_layers.values()]
    write_weights(path, items, net_name=net.net_param.name, v1=v1)
