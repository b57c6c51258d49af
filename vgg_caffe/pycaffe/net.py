"""caffe.Net: pycaffe's Net (_caffe.cpp's Net plus pycaffe.py's methods) over a vgg_caffe.Net.

    net = caffe.Net("deploy.prototxt", caffe.TEST, weights="w.caffemodel")
    net.blobs["data"].data[...] = batch
    out = net.forward()                   # {output blob: ndarray view of its data}
    net.forward(start="fc6", end="fc7")   # a partial pass over the current blob contents
    net.backward()                        # diffs of the inputs (where force_backward asks)

The constructor takes Caffe's two forms: Net(network_file, phase, level=0, stages=None,
weights=None) and the legacy Net(network_file, weights, phase); anything else is an
ArgumentError naming the types it got, as Boost.Python raises. The net is built by
vgg_caffe.net.Net (the runtime, `net.runtime`, an ordinary torch module) and run layer by layer
(engine.py) over persistent blobs, so numpy views stay valid across passes. What pycaffe returns
as views is returned as views: forward() and backward() give the blobs' own arrays, which the
next pass overwrites; forward_all and forward_backward_all give copies.
Beyond pycaffe: a NetParameter (NetSpec's to_proto()) is accepted as the model; unknown blob or
layer names, and inputs that do not fit, are CaffeErrors listing what the net has.
"""
import os
from collections import OrderedDict

import numpy as np
import torch

from .. import net as runtime_net
from ..errors import CaffeError
from ..proto import pb
from . import batching
from .args import ArgumentError, check_file, parse_net_args  # noqa: F401  (ArgumentError: caffe.ArgumentError)
from .blob import Blob, BlobShapeError, BlobVec
from .engine import Plan, Runner
from .views import NetViews

TRAIN, TEST = pb.TRAIN, pb.TEST


class LayerView:
    """net.layers[i] for a built-in layer: its type string, learnable blobs, and the torch module."""

    def __init__(self, name, type_name, blobs, module):
        self.name, self.type, self.blobs, self.module = name, type_name, blobs, module

    def __repr__(self):
        return f"<Layer {self.name!r} ({self.type})>"


class Net(NetViews):
    def __init__(self, *args, **kwargs):
        model, phase, level, stages, weights = parse_net_args(args, kwargs)
        source = None
        if not isinstance(model, pb.NetParameter):
            model = source = check_file(model)
        runtime = runtime_net.Net(model, phase=phase, level=level, stages=stages, source=source)
        if weights is not None:
            runtime.copy_from(check_file(weights), strict=False)
        self._attach(runtime)

    @classmethod
    def wrap(cls, runtime):
        """The pycaffe view of an existing vgg_caffe.Net (the solvers' nets)."""
        self = cls.__new__(cls)
        self._attach(runtime)
        return self

    def _attach(self, runtime):
        self.runtime = runtime
        self.phase = runtime.phase
        # Scripts write weights through numpy views, which torch's version counters do not see:
        # no bf16 weight copies may outlive a pass (vgg_caffe.weight_casts).
        runtime.weight_casts = False
        runtime.forget_weight_casts()
        for module in runtime.layers.values():
            if getattr(module, "inplace", False):
                module.inplace = False   # the runner keeps each bottom's value for backward
        self._plan = Plan(runtime)
        self._callbacks = {k: [] for k in ("before_forward", "after_forward", "before_backward", "after_backward")}
        self._param_blobs = {}
        blobs = OrderedDict((n, Blob(runtime.blob_shapes.get(n, ()), n)) for n in self._plan.blob_names)
        for name, weight in self._plan.loss_weights.items():
            blobs[name].diff_tensor.fill_(weight)   # Caffe's SetLossWeights: the top diff is the weight
        self._blob_map = blobs
        self._runner = Runner(self._plan, blobs, self._param_blob, self._callbacks)
        self._refresh_layers()

    def _param_blob(self, param):
        blob = self._param_blobs.get(id(param))
        if blob is None or blob._param is not param:
            blob = self._param_blobs[id(param)] = Blob.of_param(param)
        return blob

    def _refresh_layers(self):
        from .pylayer import PyCaffeLayer

        self._layers = []
        for name, lp, module in zip(self._plan.names, self._plan.params, self._plan.modules):
            blobs = BlobVec([self._param_blob(p) for p in module.blobs])
            for j, b in enumerate(blobs):
                b.name = b.name or f"{name}[{j}]"
            if isinstance(module, PyCaffeLayer):
                module.obj.blobs = BlobVec(blobs, params=module.blobs, name=name)
                self._layers.append(module.obj)
            else:
                self._layers.append(LayerView(name, lp.type, blobs, module))

    # -- what the net has -----------------------------------------------------------------------

    def _layer_index(self, name, what):
        if name not in self._plan.names:
            raise CaffeError(f"{what}: no layer named '{name}'; layers: {', '.join(self._plan.names)}")
        return self._plan.names.index(name)

    def _check_blobs(self, names, what):
        unknown = [n for n in names if n not in self._blob_map]
        if unknown:
            raise CaffeError(f"{what}: no blob named {', '.join(map(repr, unknown))}; blobs: {', '.join(self._blob_map)}")

    # -- passes ---------------------------------------------------------------------------------

    def _forward(self, start, end):
        """Caffe's ForwardFromTo (layer indices, inclusive); returns the loss."""
        self._runner.forward(int(start), int(end))
        return self._loss()

    def _backward(self, start, end):
        """Caffe's BackwardFromTo (layer indices, start >= end, inclusive)."""
        self._runner.backward(int(start), int(end))

    def _loss(self):
        return float(sum(w * float(self._blob_map[b].data_tensor.sum()) for b, w in self._plan.loss_weights.items()))

    def forward(self, blobs=None, start=None, end=None, **kwargs):
        """Run layers start..end (names; the whole net by default) after copying the keyword
        arrays into the input blobs. Returns {blob: data view} for the outputs (or the `end`
        layer's tops) and the extra `blobs`."""
        blobs = list(blobs or [])
        self._check_blobs(blobs, "forward(blobs=...)")
        start_ind = self._layer_index(start, "forward(start=...)") if start is not None else 0
        if end is not None:
            end_ind = self._layer_index(end, "forward(end=...)")
            outputs = [end] if end in self._blob_map else list(self._plan.params[end_ind].top)
        else:
            end_ind = len(self._plan.names) - 1
            outputs = self.outputs
        if kwargs:
            if set(kwargs) != set(self.inputs):
                raise CaffeError(f"forward: input blob arguments {sorted(kwargs)} do not match the net "
                                 f"inputs {self.inputs}")
            for name, value in kwargs.items():
                self._set_input(self._blob_map[name], value, "data")
        self._forward(start_ind, end_ind)
        return {out: self._blob_map[out].data for out in dict.fromkeys(outputs + blobs)}

    def backward(self, diffs=None, start=None, end=None, **kwargs):
        """Back-propagate layers start..end (names; last to first by default) after copying the
        keyword arrays into the output blobs' diffs. Returns {blob: diff view} for the inputs (or
        the `end` layer's tops) and the extra `diffs`."""
        diffs = list(diffs or [])
        self._check_blobs(diffs, "backward(diffs=...)")
        start_ind = (self._layer_index(start, "backward(start=...)") if start is not None
                     else len(self._plan.names) - 1)
        if end is not None:
            end_ind = self._layer_index(end, "backward(end=...)")
            outputs = [end] if end in self._blob_map else list(self._plan.params[end_ind].top)
        else:
            end_ind = 0
            outputs = self.inputs
        if kwargs:
            if set(kwargs) != set(self.outputs):
                raise CaffeError(f"backward: top diff arguments {sorted(kwargs)} do not match the net "
                                 f"outputs {self.outputs}")
            for name, value in kwargs.items():
                self._set_input(self._blob_map[name], value, "diff")
        self._backward(start_ind, end_ind)
        return {out: self._blob_map[out].diff for out in dict.fromkeys(outputs + diffs)}

    def _set_input(self, blob, value, kind):
        value = np.asarray(value.detach().cpu() if torch.is_tensor(value) else value)
        if value.shape != blob.shape:
            first = "" if value.shape[:1] == blob.shape[:1] else \
                f" (the batch is {blob.shape[0] if blob.shape else '?'}, not {value.shape[0] if value.ndim else '?'})"
            raise BlobShapeError(f"blob '{blob.name}' {kind}: an array of shape {value.shape} does not fit the "
                                 f"blob's shape {blob.shape}{first}; to feed another shape call "
                                 f"net.blobs['{blob.name}'].reshape(*shape) and net.reshape() first")
        getattr(blob, kind)[...] = value

    def forward_all(self, blobs=None, **kwargs):
        """forward() over inputs of any length, in batches of the net's batch size (the last one
        padded with zeros, the padding dropped); returns {blob: array} copies."""
        return batching.forward_all(self, blobs, kwargs)

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        """forward() then backward() in batches; returns ({blob: data}, {blob: diff}) copies."""
        return batching.forward_backward_all(self, blobs, diffs, kwargs)

    def _batch(self, blobs):
        return batching.batches(self, blobs)

    def reshape(self):
        """Caffe's Net::Reshape: every layer recomputes its tops' shapes from its bottoms' current
        shapes (an input blob reshaped with blob.reshape flows through)."""
        from .pylayer import PyCaffeLayer

        for lp, module in zip(self._plan.params, self._plan.modules):
            if module.is_data and not hasattr(module, "obj"):
                continue   # Caffe's data layers keep their tops until the next batch
            if isinstance(module, PyCaffeLayer):
                self._runner.run_python(module, lp, forward=False)
                continue
            shapes = [self._blob_map[b].shape for b in lp.bottom]
            tops = module.reshape(shapes)
            module.bottom_shapes = shapes
            module.top_shapes = [tuple(int(d) for d in s) for s in tops]
            for t, s in zip(lp.top, module.top_shapes):
                self._blob_map[t].set_shape(s)
                if self._plan.loss_weights.get(t):
                    self._blob_map[t].diff_tensor.fill_(self._plan.loss_weights[t])
        self.runtime.blob_shapes.update({n: b.shape for n, b in self._blob_map.items()})

    def clear_param_diffs(self):
        """Caffe's Net::ClearParamDiffs: every learnable blob's diff to zero."""
        for layer in self._layers:
            for b in layer.blobs:
                b.diff_tensor.zero_()

    # -- weights --------------------------------------------------------------------------------

    def copy_from(self, filename):
        """Caffe's CopyTrainedLayersFrom (.caffemodel or HDF5): layers by name, others kept."""
        self.runtime.copy_from(check_file(filename), strict=False)

    def load_hdf5(self, filename):
        self.copy_from(filename)

    def share_with(self, other):
        """Caffe's ShareTrainedLayersWith: layers named as one of `other`'s use its blobs."""
        self.runtime.share_trained_layers(other.runtime, where="share_with")
        self._refresh_layers()

    def save(self, filename):
        """Net::ToProto as a binary .caffemodel (the layer definitions with their blobs)."""
        self.runtime.save(os.fspath(filename))

    def save_hdf5(self, filename):
        """Net::ToHDF5: Caffe's HDF5 weights layout, whatever the file is called."""
        from ..io import hdf5

        seen, layers = set(), []
        for name, module in zip(self._plan.names, self._plan.modules):
            arrays = [None if id(b) in seen else b.detach().cpu().numpy() for b in module.blobs]
            seen.update(id(b) for b in module.blobs)
            layers.append((name, arrays))
        hdf5.write(os.fspath(filename), layers)

    def set_input_arrays(self, data, labels):
        """pycaffe's set_input_arrays for a net whose first layer is MemoryData."""
        module = self._plan.modules[0] if self._plan.modules else None
        if module is None or not hasattr(module, "set_input_arrays"):
            raise CaffeError("set_input_arrays may only be called if the first layer is a MemoryData layer")
        labels = np.asarray(labels)
        return module.set_input_arrays(data, labels.reshape(labels.shape[0]) if labels.ndim else labels)

    # -- callbacks (Net::add_before_forward and friends) ---------------------------------------

    def before_forward(self, fn):
        self._callbacks["before_forward"].append(fn)

    def after_forward(self, fn):
        self._callbacks["after_forward"].append(fn)

    def before_backward(self, fn):
        self._callbacks["before_backward"].append(fn)

    def after_backward(self, fn):
        self._callbacks["after_backward"].append(fn)

    def __repr__(self):
        return f"<caffe.Net {self.runtime.net_param.name!r} ({self.runtime.phase_name}), {len(self._layers)} layers>"
