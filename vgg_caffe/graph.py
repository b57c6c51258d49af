"""Building a Net's torch.fx graph from its layers, as Caffe's Net::Init does.

Layers are built in file order from the shapes of their bottoms through the registry; a bottom must
be the top of an earlier layer; in-place layers (top == bottom) rebind the blob name; a top written
by two different layers is refused; ParamSpec names share blobs between layers (with a shape
check); loss layers weigh their first top 1 unless loss_weight says otherwise; the net's outputs
are the blobs no later layer consumes, kept by name as Caffe's std::set keeps them. Data layers
are not in the graph: their tops are its inputs.
"""
import operator
from collections import OrderedDict

from torch import fx, nn

from .errors import CaffeError
from .layers import layer_class
from .netstate import module_name


class GraphBuilder:
    """Mixin of Net: _build(input_shapes) makes self.layers, self.graph_module and the blob
    bookkeeping (layer_names, data_layers, input_names, output_names, loss_weights, blob_shapes)."""

    def _build(self, input_shapes):
        graph = fx.Graph()
        self.layers = nn.ModuleDict()       # module name -> layer, in build order
        self.layer_names = []               # Caffe names, in build order
        self.data_layers = []               # layers whose tops are graph inputs
        self.input_names = []               # graph placeholders, in order
        self.loss_weights = OrderedDict()   # blob -> weight
        self.blob_shapes = OrderedDict()
        producers = {}                      # blob -> layer that last wrote it
        nodes = {}                          # blob -> fx node of its current value
        consumed = set()
        available = []                      # Caffe's available_blobs, in order
        shared = {}                         # ParamSpec.name -> (layer, index)

        for lp in self.layer_params:
            cls = layer_class(lp.type, lp.name, self.source)
            self._check_arity(cls, lp)
            for b in lp.bottom:
                if b not in nodes:
                    raise CaffeError(f"{self.source}: layer '{lp.name}' ({lp.type}): bottom '{b}' "
                                     "is not the top of any earlier layer"
                                     + (f"; blobs so far: {', '.join(nodes)}" if nodes else ""))
            for k, t in enumerate(lp.top):  # Caffe: "Top blob 'x' produced by multiple sources."
                if (t in producers and t not in lp.bottom) or t in lp.top[:k]:
                    raise CaffeError(f"{self.source}: layer '{lp.name}' ({lp.type}): top '{t}' is already produced by "
                                     f"layer '{producers[t].name if t in producers else lp.name}'; a blob has one "
                                     "producer (an in-place layer names it as its bottom too)")
            bottom_shapes = [self.blob_shapes[b] for b in lp.bottom]
            layer = cls(lp, bottom_shapes, self.phase_name, self.source)
            if type(layer) is not cls:  # a "Python" layer hands back its target class's instance
                cls = type(layer)
                self._check_arity(cls, lp)
            if cls.is_data:
                # As Caffe, the net is built at the shapes the prototxt declares (learnable blobs
                # such as fc6's K come from them); input_shapes fills in shapes a data layer cannot
                # know, and otherwise reshapes the built net below, where what does not fit is
                # reported by layer name.
                shapes = [input_shapes.get(t, s) if not s or 0 in s else s
                          for t, s in zip(lp.top, layer.top_shapes)]
                layer.top_shapes = [tuple(s) for s in shapes]
            # Caffe allows two layers of one name (mnist_autoencoder's two "loss" layers); the
            # second gets a distinct module name, and lookups by name find the first.
            name = base = module_name(lp.name)
            while name in self.layers:
                name = f"{base}_{sum(1 for n in self.layer_names if n == lp.name)}"
                if name in self.layers:
                    name += "_"
            self.layers[name] = layer
            self.layer_names.append(lp.name)
            self._share_params(layer, lp, shared)

            if cls.is_data:
                self.data_layers.append(layer)
                outs = []
                for t in lp.top:
                    outs.append(graph.placeholder(module_name(t)))
                    self.input_names.append(t)
            else:
                in_place = [t for t in lp.top if t in lp.bottom]
                if in_place and not cls.in_place_ok:
                    raise CaffeError(f"{self.source}: layer '{lp.name}' ({lp.type}) cannot run in place "
                                     f"(top '{in_place[0]}' is also a bottom)")
                # A Caffe in-place layer overwrites its bottom; torch may do the same when the
                # value is not an input of the graph and nothing else has read it since it was made.
                if hasattr(layer, "inplace"):
                    b = lp.bottom[0]
                    layer.inplace = (lp.top[0] == b and producers.get(b) is not None
                                     and not producers[b].is_data and b not in consumed)
                args = tuple(nodes[b] for b in lp.bottom)
                # Layers taking any number of bottoms (Concat, Eltwise) take them as one list, and
                # layers whose top count varies return a list, so that every layer scripts.
                node = graph.call_module(name, (list(args),) if cls.takes_list else args)
                if cls.tops == (1, 1):
                    outs = [node]
                else:
                    outs = [graph.call_function(operator.getitem, (node, i)) for i in range(len(lp.top))]
            for b in lp.bottom:
                consumed.add(b)
                if b in available:
                    available.remove(b)
            for t, node, shape in zip(lp.top, outs, layer.top_shapes):
                nodes[t] = node
                producers[t] = layer
                consumed.discard(t)
                self.blob_shapes[t] = tuple(shape)
                if t in available:
                    available.remove(t)
                available.append(t)
            self._note_loss_weights(cls, lp)

        self.output_names = sorted(available)   # Caffe keeps its outputs in a std::set: by name
        self.sample_window = None
        graph.output({t: nodes[t] for t in nodes})
        self.graph_module = fx.GraphModule(self.layers, graph, class_name="CaffeNet")
        self._placeholders = [module_name(t) for t in self.input_names]
        wanted = {t: tuple(s) for t, s in input_shapes.items() if t in self.input_names}
        if any(self.blob_shapes[t] != s for t, s in wanted.items()):
            self.reshape(wanted)

    def _check_arity(self, cls, lp):
        for what, have, (lo, hi) in (("bottom", len(lp.bottom), cls.bottoms), ("top", len(lp.top), cls.tops)):
            if have < lo or (hi is not None and have > hi):
                want = f"exactly {lo}" if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
                raise CaffeError(f"{self.source}: layer '{lp.name}' ({lp.type}) takes {want} {what}(s), has {have}")

    def _share_params(self, layer, lp, shared):
        for i, spec in enumerate(lp.param):
            if not spec.name or i >= len(layer.blobs):
                continue
            if spec.name in shared:
                owner, j = shared[spec.name]
                if owner.blobs[j].shape != layer.blobs[i].shape:
                    raise CaffeError(f"{self.source}: layer '{lp.name}': shared param '{spec.name}' has shape "
                                     f"{tuple(layer.blobs[i].shape)}, owner '{owner.name}' has {tuple(owner.blobs[j].shape)}")
                layer.blobs[i] = owner.blobs[j]
            else:
                shared[spec.name] = (layer, i)

    def _note_loss_weights(self, cls, lp):
        weights = list(lp.loss_weight)
        if not weights and cls.is_loss:
            weights = [1.0] + [0.0] * (len(lp.top) - 1)
        if weights and len(weights) != len(lp.top):
            raise CaffeError(f"{self.source}: layer '{lp.name}': {len(weights)} loss_weight values for {len(lp.top)} tops")
        for t, w in zip(lp.top, weights):
            if w:
                self.loss_weights[t] = float(w)
