"""The layer-by-layer executor behind pycaffe's Net: Caffe's ForwardFromTo / BackwardFromTo.

A vgg_caffe.Net runs as one torch.fx graph; pycaffe needs what Caffe's Net does instead: every
layer reads its bottoms from persistent blobs and writes its tops into them, so a pass can start
or stop at any layer (net.forward(start=..., end=...)), the blobs hold what the layers last wrote
(in-place layers overwrite their bottom, as in Caffe), and backward fills the blobs' diffs.

Plan reproduces Caffe's Net::Init analysis of which layers and bottoms need backward:
- a bottom needs backward if its blob does (and its propagate_down entry, when given, is true);
  a parameter does when its lr_mult is not 0; a layer does when a bottom or a parameter does,
  and then its tops' blobs do;
- walking back from the last layer, a layer that neither produces a loss (loss_weight != 0) nor
  feeds a blob under a loss needs no backward, and neither do its bottoms;
- force_backward makes every layer need backward and every bottom whose layer allows it (not a
  loss layer's label, bottom 1).
Runner keeps, for each layer that needs backward, the autograd graph of its last forward (its
bottoms as fresh leaves, copied where a later layer rewrites the blob in place); backward feeds
the top diffs through it with torch.autograd.grad. Bottom diffs overwrite, except that the
consumers of one blob (Caffe would insert a Split layer) sum: the first writer in a backward pass
overwrites and later ones add. Parameter diffs (.grad) accumulate across passes, as Caffe's do
until the solver clears them. pycaffe-style Python layers run directly on the net's Blobs.
"""
import torch

from ..errors import CaffeError
from .pylayer import PyCaffeDataLayer, PyCaffeLayer

_FORCE_BOTH_BOTTOMS = ("EuclideanLoss",)   # loss layers whose second bottom Caffe lets backward reach


class Plan:
    """What Caffe's Net::Init knows about a built net: blob order, inputs, need-backward flags."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.params = list(runtime.layer_params)
        self.modules = list(runtime.layers.values())
        self.names = list(runtime.layer_names)
        self.blob_names = []
        for lp in self.params:
            for t in lp.top:
                if t not in self.blob_names:
                    self.blob_names.append(t)
        # Caffe: the tops of Input layers are the net inputs; the outputs, blobs no layer consumes,
        # come out of a std::set, so sorted by name.
        self.inputs = [t for lp in self.params if lp.type == "Input" for t in lp.top]
        self.outputs = sorted(runtime.output_names)
        self.loss_weights = dict(runtime.loss_weights)
        self.producer = []   # per layer, per bottom: the index of the layer that wrote that version
        self.rewritten = []  # per layer, per bottom: whether this or a later layer writes the blob again
        last = {}
        for l, lp in enumerate(self.params):
            self.producer.append([last.get(b, -1) for b in lp.bottom])
            self.rewritten.append([any(b in self.params[k].top for k in range(l, len(self.params)))
                                   for b in lp.bottom])
            for t in lp.top:
                last[t] = l
        self._need_backward(runtime.net_param.force_backward)

    def _param_needs(self, l):
        specs = list(self.params[l].param)
        return [(specs[j].lr_mult if j < len(specs) else 1.0) != 0 for j in range(len(self.modules[l].blobs))]

    def _need_backward(self, force):
        blob_need = {}
        self.layer_need, self.bottom_need, self.param_need = [], [], []
        for l, lp in enumerate(self.params):
            down = list(lp.propagate_down)
            bottoms = [blob_need.get(b, False) and (down[i] if i < len(down) else True)
                       for i, b in enumerate(lp.bottom)]
            params = self._param_needs(l)
            need = any(bottoms) or any(params)
            for t in lp.top:
                blob_need[t] = need
            self.layer_need.append(need)
            self.bottom_need.append(bottoms)
            self.param_need.append(params)
        under_loss, skip = set(), set()
        for l in reversed(range(len(self.params))):
            lp = self.params[l]
            contributes = any(self.loss_weights.get(t, 0) != 0 or t in under_loss for t in lp.top)
            skip_down = all(t in skip for t in lp.top)
            if self.layer_need[l] and skip_down:
                self.layer_need[l] = False
                self.bottom_need[l] = [False] * len(lp.bottom)
            if not contributes:
                self.layer_need[l] = False
            for i, b in enumerate(lp.bottom):
                if contributes:
                    under_loss.add(b)
                else:
                    self.bottom_need[l][i] = False
                if not self.bottom_need[l][i]:
                    skip.add(b)
        if force:
            for l, lp in enumerate(self.params):
                self.layer_need[l] = True
                loss_label = type(self.modules[l]).is_loss and lp.type not in _FORCE_BOTH_BOTTOMS
                self.bottom_need[l] = [need or not (loss_label and i == 1)
                                       for i, need in enumerate(self.bottom_need[l])]
                self.param_need[l] = [True] * len(self.param_need[l])


class Runner:
    """Runs layers [start, end] forward or backward over the Blobs of a pycaffe Net."""

    def __init__(self, plan, blobs, param_blobs, callbacks):
        self.plan, self.blobs, self.param_blobs, self.callbacks = plan, blobs, param_blobs, callbacks
        self.graphs = {}
        self.iteration = 0

    # -- forward --------------------------------------------------------------------------------

    def forward(self, start, end, data=None):
        plan = self.plan
        produced = False
        for l in range(start, end + 1):
            for fn in self.callbacks["before_forward"]:
                fn(l)
            module, lp = plan.modules[l], plan.params[l]
            if isinstance(module, PyCaffeDataLayer):
                self.run_python(module, lp, forward=True)
                produced = True
            elif module.is_data:
                if any(data and t in data for t in lp.top):
                    self._store(lp.top, [data[t] for t in lp.top])
                elif hasattr(module, "batch"):
                    self._store(lp.top, module.batch(self.iteration))
                    produced = True
            elif isinstance(module, PyCaffeLayer):
                self.run_python(module, lp, forward=True)
            else:
                self._forward_module(l, module, lp)
            for fn in self.callbacks["after_forward"]:
                fn(l)
        if end < len(plan.params) - 1:
            # later layers' graphs may now hold inputs a partial pass overwrote: recompute on need
            for l in [k for k in self.graphs if k > end]:
                del self.graphs[l]
        if produced:
            self.iteration += 1

    def run_python(self, module, lp, forward):
        """Caffe's PythonLayer::Reshape (+ Forward) on the net's blobs. A loss top the layer
        reshaped gets its loss weight back as its diff (Caffe sets it once, on a fixed shape)."""
        bottoms, tops = [self.blobs[b] for b in lp.bottom], [self.blobs[t] for t in lp.top]
        before = [t.diff_tensor for t in tops]
        module.obj.reshape(bottoms, tops)
        if forward:
            module.obj.forward(bottoms, tops)
        for name, blob, old in zip(lp.top, tops, before):
            weight = self.plan.loss_weights.get(name)
            if weight and blob.diff_tensor is not old:
                blob.diff_tensor.fill_(weight)

    def _forward_module(self, l, module, lp):
        plan = self.plan
        shapes = [self.blobs[b].shape for b in lp.bottom]
        if shapes != [tuple(s) for s in module.bottom_shapes]:
            # Caffe's Layer::Forward reshapes first, so a bottom of a new shape just flows through
            tops = module.reshape(shapes)
            module.bottom_shapes = shapes
            module.top_shapes = [tuple(int(d) for d in s) for s in tops]
        record = plan.layer_need[l]
        with torch.set_grad_enabled(record):
            leaves = []
            for i, b in enumerate(lp.bottom):
                t = self.blobs[b].data_tensor
                t = t.clone() if record and plan.rewritten[l][i] else t.detach()
                if record and plan.bottom_need[l][i]:
                    t.requires_grad_(True)
                leaves.append(t)
            outs = _call(module, leaves)
        with torch.no_grad():
            self._store(lp.top, outs)
        if record:
            self.graphs[l] = (leaves, outs)
        else:
            self.graphs.pop(l, None)

    def _store(self, names, values):
        if len(values) != len(names):
            raise CaffeError(f"{len(values)} values for the {len(names)} tops {list(names)}")
        for name, value in zip(names, values):
            blob = self.blobs[name]
            value = torch.as_tensor(value).detach()
            if blob.shape != tuple(value.shape):
                blob.set_shape(tuple(value.shape))
                weight = self.plan.loss_weights.get(name)
                if weight:
                    blob.diff_tensor.fill_(weight)
            blob.data_tensor.copy_(value)

    # -- backward -------------------------------------------------------------------------------

    def backward(self, start, end):
        plan = self.plan
        written = set()   # blob versions whose diff this pass has written: later writers add
        for l in range(start, end - 1, -1):
            if not plan.layer_need[l] or plan.modules[l].is_data:
                continue   # data layers have nothing below them (Caffe's are no-ops)
            for fn in self.callbacks["before_backward"]:
                fn(l)
            module, lp = plan.modules[l], plan.params[l]
            if isinstance(module, PyCaffeLayer):
                self._backward_python(l, module, lp, written)
            else:
                self._backward_module(l, module, lp, written)
            for fn in self.callbacks["after_backward"]:
                fn(l)

    def _backward_module(self, l, module, lp, written):
        try:
            grads = self._grads(l, module, lp, self.graphs.get(l))
        except RuntimeError as e:
            if "modified by an inplace operation" not in str(e):
                raise
            grads = self._grads(l, module, lp, None)   # inputs changed since: Caffe reads them now
        bottom_grads, param_grads = grads
        for i, g in bottom_grads.items():
            self._write_diff(l, i, lp.bottom[i], g, written)
        with torch.no_grad():
            for j, g in param_grads.items():
                if g is not None:
                    self.param_blobs(module.blobs[j]).diff_tensor.add_(g)

    def _grads(self, l, module, lp, graph):
        plan = self.plan
        if graph is None:
            with torch.enable_grad():
                leaves = [self.blobs[b].data_tensor.clone().requires_grad_(plan.bottom_need[l][i])
                          for i, b in enumerate(lp.bottom)]
                graph = (leaves, _call(module, leaves))
        leaves, outs = graph
        wanted = [i for i, need in enumerate(plan.bottom_need[l]) if need and leaves[i].requires_grad]
        params = [j for j, need in enumerate(plan.param_need[l]) if need and module.blobs[j].requires_grad]
        live = [(out, self.blobs[t].diff_tensor) for out, t in zip(outs, lp.top)
                if out.requires_grad]
        inputs = [leaves[i] for i in wanted] + [module.blobs[j] for j in params]
        if not live or not inputs:
            return {i: None for i in wanted}, {}
        for (out, diff), t in zip(live, [t for out, t in zip(outs, lp.top) if out.requires_grad]):
            if tuple(out.shape) != tuple(diff.shape):
                raise CaffeError(f"layer '{lp.name}': the diff of top '{t}' has shape {tuple(diff.shape)}, "
                                 f"its data {tuple(out.shape)}")
        got = torch.autograd.grad([o for o, _ in live], inputs, [d for _, d in live],
                                  retain_graph=True, allow_unused=True)
        return dict(zip(wanted, got[:len(wanted)])), dict(zip(params, got[len(wanted):]))

    def _write_diff(self, l, i, name, grad, written):
        key = (name, self.plan.producer[l][i])
        diff = self.blobs[name].diff_tensor
        with torch.no_grad():
            if key not in written:
                written.add(key)
                if grad is None:
                    diff.zero_()
                else:
                    diff.copy_(grad.reshape(diff.shape))
            elif grad is not None:
                diff.add_(grad.reshape(diff.shape))

    def _backward_python(self, l, module, lp, written):
        """Caffe's PythonLayer::Backward on the net's blobs; a bottom whose diff another consumer
        already wrote gets a scratch diff that is then added."""
        from .blob import Blob

        plan = self.plan
        tops = [self.blobs[t] for t in lp.top]
        bottoms, pending = [], []
        for i, b in enumerate(lp.bottom):
            blob = self.blobs[b]
            key = (b, plan.producer[l][i])
            if plan.bottom_need[l][i] and key in written and b not in lp.top:
                scratch = Blob.__new__(Blob)
                scratch.name, scratch._param, scratch._views = b, None, {}
                scratch._tensors = {"data": blob.data_tensor, "diff": torch.zeros_like(blob.diff_tensor)}
                pending.append((blob, scratch))
                blob = scratch
            elif plan.bottom_need[l][i]:
                written.add(key)
            bottoms.append(blob)
        module.obj.backward(tops, list(plan.bottom_need[l]), bottoms)
        for blob, scratch in pending:
            blob.diff_tensor.add_(scratch.diff_tensor)


def _call(module, bottoms):
    """One layer on a list of bottoms -> a list of tops (the runtime's calling convention)."""
    out = module(list(bottoms)) if module.takes_list else module(*bottoms)
    return [out] if isinstance(out, torch.Tensor) else list(out)
