"""Net: a Caffe NetParameter turned into an executable torch graph with Caffe's semantics.

Reproduces Caffe's Net::Init: layers are filtered by the net state (phase, level, stages) against
their include/exclude rules, built in file order from the shapes of their bottoms, in-place layers
(top == bottom) rebind the blob name, and the net's outputs are the blobs no later layer consumes.
Loss is the sum over loss tops of loss_weight * sum(top) (loss layers weigh their first top 1 by
default).

The computation is a torch.fx GraphModule with one submodule per Caffe layer: an ordinary torch
module that trains, scripts and exports. Data layers (Input, Data, Python, HDF5Data) are not in
the graph: their tops are its inputs, and `forward` either takes them as keyword arguments or asks
the data layers for the next batch. As in pycaffe, `net.blobs["fc7"]` holds the last value of a
blob and `net.params["conv1_1"]` its learnable blobs in Caffe's order.
"""
import os
from collections import OrderedDict

import torch
from torch import fx, nn

from .errors import CaffeError
from .graph import GraphBuilder
# Re-exported: the net-definition helpers live in netstate.py.
from .netstate import (TEST, TRAIN, check_state_args, filter_net, load_net_param, module_name, phase_value,  # noqa: F401
                       state_meets_rule)
from . import hostmem, precision as speed
from .proto import pb


def _fills_on_host(blob):
    """Whether a blob's fillers draw into a host copy: it lives on a device other than the CPU
    (a "meta" blob has no values to fill)."""
    return blob.device.type not in ("cpu", "meta")


class Net(GraphBuilder, nn.Module):
    """A Caffe net as a torch module.

    Net(model, phase="TEST", *, level=0, stages=(), weights=None, input_shapes=None)  (keywords after phase)

    model: a prototxt or caffemodel path, prototxt text, or a NetParameter.
    weights: a .caffemodel / .h5 path (or a list) copied in by layer name; without it the
        learnable blobs are filled from the layers' fillers (seeded with `seed`), as in Caffe.
        fill=False leaves them at zero.
    input_shapes: {top: shape} overriding the shapes that data/Input layers declare. The net is
        built at the declared shapes and then reshaped, so a shape that does not fit (fc6 of a
        224 net fed 250x250) is a CaffeError naming the layer, as in Caffe.
    source: the file name errors should give when `model` is a NetParameter.
    precision ("fp32", "tf32", "bf16"), channels_last ("auto", True, False) and torch_compile
        are the speed options of vgg_caffe.precision (None: the process default, fp32 and no
        compile unless a tool's --precision / --compile set it); fp32 is Caffe's arithmetic.
    """

    precision = speed.Setting("precision", speed.check_precision)
    torch_compile = speed.Setting("torch_compile", bool)

    def __init__(self, model, phase=TEST, *extra, level=0, stages=(), weights=None, input_shapes=None, source=None,
                 seed=None, fill=True, precision=None, channels_last="auto", torch_compile=None):
        check_state_args(extra, level, stages)
        super().__init__()
        hostmem.reuse_freed_memory()   # later passes reuse the pages of earlier ones, as Caffe's blobs
        self.net_param, self.source = load_net_param(model)
        self.source = source or self.source  # the file to name in errors when given a NetParameter
        self.phase = phase_value(phase)
        self.phase_name = pb.Phase.Name(self.phase)
        self.level, self.stages = level, tuple(stages)
        self.layer_params = filter_net(self.net_param, self.phase, level, self.stages, self.source)
        self._build(input_shapes or {})
        self.train(self.phase == TRAIN)
        self.blobs = OrderedDict()
        self.iteration = 0
        # Speed options (vgg_caffe.precision): "auto" lays the inputs of a convolutional net out
        # channels-last (NHWC memory, NCHW shapes; parameters keep Caffe's layout).
        self.channels_last = speed.check_layout(channels_last)
        self.precision, self.torch_compile = precision, torch_compile
        # None: net.blobs holds every blob after a pass (pycaffe); a list of names: only those,
        # the outputs and the losses, the others freed as soon as the pass is done with them.
        self.keep_blobs = None
        # bf16 passes without autograd reuse their weight casts (vgg_caffe.weight_casts).
        self.weight_casts = True
        # As Caffe's Net::Init: learnable blobs start from the layers' fillers (seeded by `seed`,
        # else torch's global generator), or from blobs embedded in the net definition (a
        # .caffemodel given as the model). Filling is skipped when weights files are given.
        if weights:
            for w in [weights] if isinstance(weights, (str, os.PathLike)) else weights:
                self.copy_from(w)
        elif fill:
            self.fill(seed)
        self._load_embedded_blobs()

    def forget_weight_casts(self):
        """Drop the bf16 weight copies kept between inference passes (needed only after writing
        weights in ways torch does not count: through `p.data` or a numpy view)."""
        held = self.__dict__.get("_weight_casts")
        if held is not None:
            held.forget()

    def set_sample_window(self, window):
        """Key the net's randomness (dropout masks) by a vgg_caffe.rng.SampleWindow: this process's
        rows [start, stop) of a global batch of `total` at `iteration`; None returns to torch's
        global generator. Layers that draw random numbers get a reference to the window."""
        self.sample_window = window
        for layer in self.layers.values():
            if hasattr(layer, "set_sample_window"):
                layer.set_sample_window(window)

    # -- running -------------------------------------------------------------------------------

    def forward(self, **inputs):
        """Run the net. Inputs are tensors (or arrays) keyed by data top name; missing ones come
        from the net's data layers. Returns the output blobs as a dict; all blobs stay in `net.blobs`.
        """
        feeds = self._gather_inputs(inputs)
        self.reshape({n: tuple(t.shape) for n, t in zip(self.input_names, feeds)})
        blobs = speed.run_graph(self, feeds)
        for n, t in zip(self.input_names, feeds):
            blobs.setdefault(n, t)
        # As Caffe's blobs, blob_shapes follow the last pass: a layer whose top size depends on the
        # data (Filter) changes the shapes below it while the inputs stay the same.
        for t, v in blobs.items():
            if isinstance(v, torch.Tensor) and self.blob_shapes.get(t, tuple(v.shape)) != tuple(v.shape):
                self.blob_shapes[t] = tuple(v.shape)
        self.blobs = blobs
        self.iteration += 1
        return OrderedDict((t, blobs[t]) for t in self.output_names)

    __call__ = nn.Module.__call__

    def _gather_inputs(self, inputs):
        unknown = set(inputs) - set(self.input_names)
        if unknown:
            raise CaffeError(f"{self.source}: no input blob named {sorted(unknown)}; inputs are {self.input_names}")
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            inputs = dict(inputs)
            for layer in self.data_layers:
                tops = list(layer.param.top)
                if any(t in missing for t in tops):
                    if not hasattr(layer, "batch"):
                        raise CaffeError(f"{self.source}: input '{tops[0]}' of layer '{layer.name}' "
                                         f"({layer.type}) must be passed to forward()")
                    for t, v in zip(tops, layer.batch(self.iteration)):
                        inputs.setdefault(t, v)
        device = self._device()
        # Host-to-GPU copies do not wait (pinned batches overlap; pageable ones are staged first).
        feeds = [torch.as_tensor(inputs[n]).to(device, non_blocking=device.type == "cuda")
                 for n in self.input_names]
        feeds = speed.lay_out(self, feeds)
        return feeds

    def _device(self):
        """Where the net computes: the device of the last .to() / .cuda() / .cpu() (recorded by
        _apply, so a net without learnable blobs moves too), else that of its parameters."""
        moved = self.__dict__.get("_moved_to")
        if moved is not None:
            return moved
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def _apply(self, fn, *args, **kwargs):
        # The conversion applied to an empty tensor says where it sends tensors (one on the CPU
        # when the current device cannot be read back from, as "meta").
        for probe in (self._device(), "cpu"):
            try:
                self.__dict__["_moved_to"] = fn(torch.empty(0, device=probe)).device
                break
            except Exception:  # a conversion that needs a real tensor: keep what was recorded
                continue
        return super()._apply(fn, *args, **kwargs)

    def reshape(self, input_shapes):
        """Re-run shape inference for new input shapes (Caffe's Net::Reshape); cheap, and the
        place where shapes that do not fit are reported by layer name."""
        changed = any(self.blob_shapes.get(n) != tuple(s) for n, s in input_shapes.items())
        if not changed:
            return
        shapes = dict(self.blob_shapes)
        shapes.update({n: tuple(s) for n, s in input_shapes.items()})
        for layer in self.layers.values():
            if layer.is_data:
                continue
            lp = layer.param
            tops = layer.reshape([shapes[b] for b in lp.bottom])
            layer.bottom_shapes = [shapes[b] for b in lp.bottom]
            layer.top_shapes = [tuple(int(d) for d in s) for s in tops]
            layer.check_tops()   # a bigger input may need more memory than there is: refused by layer
            for t, s in zip(lp.top, layer.top_shapes):
                shapes[t] = s
        self.blob_shapes = OrderedDict(shapes)

    @property
    def loss(self):
        """loss_weight-weighted sum of the loss tops of the last forward pass."""
        total = None
        for blob, w in self.loss_weights.items():
            term = w * self.blobs[blob].sum()
            total = term if total is None else total + term
        return total

    def backward(self):
        """Back-propagate the last forward pass's loss into the params' .grad (summed, as Caffe's diffs)."""
        loss = self.loss
        if loss is None:
            raise CaffeError(f"{self.source}: the net has no loss (no layer with a loss_weight)")
        loss.backward()
        return loss

    # -- pycaffe-style access ------------------------------------------------------------------

    def layer(self, name):
        try:
            return self.layers[module_name(name)]
        except KeyError:
            raise CaffeError(f"{self.source}: no layer named '{name}'") from None

    @property
    def params(self):
        """Layer name -> list of learnable blobs (nn.Parameter) in Caffe's order."""
        return OrderedDict((n, list(l.blobs)) for n, l in zip(self.layer_names, self.layers.values()) if len(l.blobs))

    def learnable(self):
        """(layer, index, parameter, ParamSpec) for every learnable blob once, in net order."""
        seen = set()
        for layer in self.layers.values():
            specs = list(layer.param.param)
            for i, blob in enumerate(layer.blobs):
                if id(blob) in seen:
                    continue
                seen.add(id(blob))
                yield layer, i, blob, specs[i] if i < len(specs) else pb.ParamSpec()

    def share_trained_layers(self, other, where=None):
        """Caffe's Net::ShareTrainedLayersWith: each of this net's layers named as one of `other`'s
        uses that layer's blobs (the same tensors); blob counts and shapes must agree."""
        where = where or self.source
        theirs = dict(zip(other.layer_names, other.layers.values()))
        for name, mine in zip(self.layer_names, self.layers.values()):
            source = theirs.get(name)
            if source is None or not len(mine.blobs):
                continue
            if len(source.blobs) != len(mine.blobs):
                raise CaffeError(f"{where}: layer '{name}' has {len(mine.blobs)} blobs here but "
                                 f"{len(source.blobs)} in the net it shares with ({other.source})")
            for j, blob in enumerate(source.blobs):
                if blob.shape != mine.blobs[j].shape:
                    raise CaffeError(f"{where}: cannot share param {j} of layer '{name}': shape "
                                     f"{tuple(mine.blobs[j].shape)} here, {tuple(blob.shape)} in {other.source}")
                mine.blobs[j] = blob

    def fill(self, seed=None):
        """Initialise every learnable blob from its layer's fillers. The fillers draw on the CPU
        with the seeded generator and the values are copied to the net's device, so a net filled
        on a GPU starts from exactly the weights it would have on the CPU."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        for layer in self.layers.values():
            if not any(_fills_on_host(b) for b in layer.blobs):
                layer.fill(gen)
                continue
            with torch.no_grad():
                placed = [b.data for b in layer.blobs]
                for b in layer.blobs:
                    b.data = torch.empty_like(b.data, device="cpu")
                layer.fill(gen)
                for b, there in zip(layer.blobs, placed):
                    b.data = there.copy_(b.data)
                    torch.autograd.graph.increment_version(b)   # new values in the same memory
        return self

    def _load_embedded_blobs(self):
        """Blobs stored in the LayerParameters themselves (a caffemodel used as the model) win over
        fillers, as in Caffe, whose layers skip parameter initialisation when they have blobs."""
        for lp, layer in zip(self.layer_params, self.layers.values()):
            if not len(lp.blobs):
                continue
            if len(lp.blobs) != len(layer.blobs):
                raise CaffeError(f"{self.source}: layer '{lp.name}': {len(lp.blobs)} stored blob(s), "
                                 f"the {layer.type} layer has {len(layer.blobs)}")
            with torch.no_grad():
                for i, (stored, param) in enumerate(zip(lp.blobs, layer.blobs)):
                    values = stored.double_data if len(stored.double_data) else stored.data
                    if len(values) != param.numel():
                        raise CaffeError(f"{self.source}: layer '{lp.name}' blob {i}: {len(values)} stored "
                                         f"values, the net expects shape {tuple(param.shape)}")
                    param.copy_(torch.tensor(values, dtype=param.dtype).reshape(param.shape))

    def copy_from(self, path, strict=True, layers=None):
        """Copy weights by layer name from a .caffemodel or .h5 (see vgg_caffe.io.caffemodel)."""
        from .io import net_weights as weights
        return weights.copy_into(self, path, strict=strict, layers=layers)

    def save(self, path):
        """Write the weights as a .caffemodel (or Caffe's HDF5 layout for .h5)."""
        from .io import net_weights as weights
        return weights.save_net(self, path)

    def to_module(self, outputs=None):
        """A plain GraphModule taking the inputs positionally and returning the named outputs
        (one tensor, or a tuple) for torch.jit.script, torch.export and ONNX."""
        outputs = list(outputs or self.output_names)
        graph = fx.Graph()
        env = {}
        for old in self.graph_module.graph.nodes:
            if old.op == "output":
                values = old.args[0]
                result = [env[values[o].name] for o in outputs]
                graph.output(result[0] if len(result) == 1 else tuple(result))
            else:
                env[old.name] = graph.node_copy(old, lambda n: env[n.name])
        module = fx.GraphModule(self.layers, graph, class_name="CaffeNetExport")
        module.train(self.training)
        return module
