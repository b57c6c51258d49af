"""The graph tools/draw_net.py draws: Caffe's drawing (layers and blobs) or a compact one.

Caffe's python/caffe/draw.py draws every layer as a box and every blob as an octagon, an edge from
each bottom blob to its layer and from the layer to each top; a layer working in place (top ==
bottom, ReLU, Dropout) rewrites its blob, so that drawing gets a new node for the blob it
rewrites and stays acyclic. style="caffe" is that graph.

style="compact" (the default picture) is the same net with half the nodes: layers are the
nodes, an edge is a blob passed from its producer to a consumer, in-place layers are folded
into the label of the layer whose blob they rewrite ("conv3_1  3×3/1, 256 + ReLU"), and each
node shows the shape of its top (C×H×W: the batch is said once, in the title). Shapes come from
vgg_caffe.info.shape_net (the runtime's shape inference on the meta device); when a net cannot
be shaped without its data (an undeclared image size, a Python layer) it is drawn without them.
"""
from dataclasses import dataclass, field

from ..errors import CaffeError
from ..proto import pb

# Caffe's draw.py colours, lightened so black text stays readable on them.
COLOURS = {"Convolution": "#F4A6A6", "Deconvolution": "#F4A6A6", "Pooling": "#F8CB8A",
           "InnerProduct": "#D9B3F0", "LRN": "#B5E0B5", "BatchNorm": "#B5E0B5", "Dropout": "#D0D0D0",
           "Concat": "#A9D8E8", "Eltwise": "#A9D8E8"}
DEFAULT_COLOUR = "#B7CAF0"
BLOB_COLOUR = "#EDEDED"
# Folded in-place layers are named in the label by a short word.
FOLD_NAMES = {"ReLU": "ReLU", "PReLU": "PReLU", "ELU": "ELU", "Sigmoid": "Sigmoid", "TanH": "TanH",
              "BatchNorm": "BN", "Scale": "Scale", "Bias": "Bias", "Swish": "Swish"}


@dataclass
class Node:
    id: str
    kind: str               # "layer" or "blob"
    name: str               # the layer (or blob) name, drawn in bold
    op: str = ""            # what it computes: "3×3/1, 256 + ReLU"
    shape: str = ""         # its top shape(s)
    notes: list = field(default_factory=list)   # inputs drawn as text, not lines ("label ← data")
    colour: str = DEFAULT_COLOUR
    type: str = ""


def _first(values, default):
    return values[0] if len(values) else default


def _conv_op(p):
    k = p.kernel_h if p.HasField("kernel_h") else _first(p.kernel_size, 0)
    kw = p.kernel_w if p.HasField("kernel_w") else _first(p.kernel_size[1:], k)
    s = p.stride_h if p.HasField("stride_h") else _first(p.stride, 1)
    text = f"{k}×{kw}/{s}, {p.num_output}"
    if p.group > 1:
        text += f", group {p.group}"
    if _first(p.dilation, 1) > 1:
        text += f", dilation {p.dilation[0]}"
    return text


def operation(lp):
    """A layer's parameters in a few characters; '' when the type says it all."""
    t = lp.type
    if t == "Convolution":
        return _conv_op(lp.convolution_param)
    if t == "Deconvolution":
        return "deconv " + _conv_op(lp.convolution_param)
    if t == "Pooling":
        p = lp.pooling_param
        method = pb.PoolingParameter.PoolMethod.Name(p.pool).lower()
        if p.global_pooling:
            return f"{method} pool, global"
        k = p.kernel_h if p.HasField("kernel_h") else p.kernel_size
        s = p.stride_h if p.HasField("stride_h") else p.stride
        return f"{method} pool {k}×{k}/{s}"
    if t == "InnerProduct":
        return f"fc {lp.inner_product_param.num_output}"
    if t == "LRN":
        p = lp.lrn_param
        return f"LRN {p.local_size}, α {p.alpha:g}, β {p.beta:g}"
    if t == "Dropout":
        return f"Dropout {lp.dropout_param.dropout_ratio:g}"
    return t


def caffe_label(lp):
    """The label of Caffe's drawing: name, (type), then the geometry."""
    lines = [lp.name, f"({lp.type})"]
    if lp.type in ("Convolution", "Deconvolution"):
        p = lp.convolution_param
        k = p.kernel_h if p.HasField("kernel_h") else _first(p.kernel_size, 0)
        s = p.stride_h if p.HasField("stride_h") else _first(p.stride, 1)
        pad = p.pad_h if p.HasField("pad_h") else _first(p.pad, 0)
        lines += [f"kernel {k} stride {s} pad {pad}", f"{p.num_output} outputs"]
    elif lp.type == "Pooling":
        p = lp.pooling_param
        method = pb.PoolingParameter.PoolMethod.Name(p.pool)
        if p.global_pooling:
            lines.append(f"{method} global")
        else:
            k = p.kernel_h if p.HasField("kernel_h") else p.kernel_size
            s = p.stride_h if p.HasField("stride_h") else p.stride
            pad = p.pad_h if p.HasField("pad_h") else p.pad
            lines.append(f"{method} kernel {k} stride {s} pad {pad}")
    elif lp.type == "InnerProduct":
        lines.append(f"{lp.inner_product_param.num_output} outputs")
    elif lp.type == "LRN":
        p = lp.lrn_param
        lines.append(f"size {p.local_size} alpha {p.alpha:g} beta {p.beta:g} k {p.k:g}")
    elif lp.type == "Dropout":
        lines.append(f"ratio {lp.dropout_param.dropout_ratio:g}")
    return "\n".join(lines)


def _ident(name):
    return "".join(c if c.isalnum() else "_" for c in name)


def layers_of(net_param, phase=None):
    from ..net import filter_net
    return list(net_param.layer) if phase is None else filter_net(net_param, phase)


def caffe_graph(net_param, phase=None):
    """(nodes, edges) of Caffe's drawing: layers and blobs; edges (from id, to id) in order."""
    nodes, edges, current, versions = [], [], {}, {}

    def blob_node(name):
        versions[name] = versions.get(name, 0) + 1
        node = Node(f"blob_{_ident(name)}_{versions[name]}", "blob", name, colour=BLOB_COLOUR)
        nodes.append(node)
        current[name] = node.id
        return node.id

    for i, lp in enumerate(layers_of(net_param, phase)):
        lines = caffe_label(lp).split("\n")
        node = Node(f"layer_{i}_{_ident(lp.name)}", "layer", lines[0], "\n".join(lines[1:]),
                    colour=COLOURS.get(lp.type, DEFAULT_COLOUR), type=lp.type)
        nodes.append(node)
        for b in lp.bottom:
            edges.append((current[b] if b in current else blob_node(b), node.id))
        for t in lp.top:
            # A top another layer already made (the TRAIN and TEST data layers of one file) is
            # the same blob, drawn once; an in-place top is a new version.
            same = t in current and t not in lp.bottom
            edges.append((node.id, current[t] if same else blob_node(t)))
    return nodes, edges


def format_shape(shape, batch=None):
    dims = list(shape)
    if batch is not None and dims and dims[0] == batch:
        dims = dims[1:]
    return "×".join(str(d) for d in dims) if dims else "scalar"


def blob_shapes(net_param, phase, source=None):
    """({blob: shape}, batch) of the `phase` net from the runtime's shape inference, or ({}, None)
    when that net cannot be shaped from the prototxt alone (an undeclared image size)."""
    from ..info import shape_net
    try:
        net = shape_net(net_param, pb.Phase.Name(phase), source=source)
    except CaffeError:
        return {}, None
    shapes, batch = {}, None
    for layer in net.layers.values():
        for t, s in zip(layer.param.top, layer.top_shapes):
            shapes[t] = tuple(s)
        if batch is None and layer.is_data and layer.top_shapes and len(layer.top_shapes[0]):
            batch = int(layer.top_shapes[0][0])
    return shapes, batch


def layer_phase(lp):
    """The phase a layer's rules tie it to (include/exclude { phase }), or None."""
    for rule in lp.include:
        if rule.HasField("phase"):
            return rule.phase
    for rule in lp.exclude:
        if rule.HasField("phase"):
            return pb.TEST if rule.phase == pb.TRAIN else pb.TRAIN
    return None


def compact_graph(net_param, phase=None, shapes=None):
    """(nodes, edges): layers as nodes, in-place layers folded into their producer, and an edge
    (producer id, consumer id, blob) per bottom; a bottom nobody produces gets an input node.

    shapes: {phase: ({blob: shape}, batch)}; a layer takes those of its own phase (TEST for
    layers of both, then TRAIN). With phase None, a layer of one phase says which."""
    shapes = shapes or {}
    nodes, edges, producers = [], [], {}   # blob -> ids of the nodes that make it
    by_id = {}

    def shape_of(blob, own, strip):
        for ph in ([own] if own is not None else []) + [pb.TEST, pb.TRAIN]:
            found, batch = shapes.get(ph, ({}, None))
            if blob in found:
                return format_shape(found[blob], batch if strip else None)
        return None

    for i, lp in enumerate(layers_of(net_param, phase)):
        tops, bottoms = list(lp.top), list(lp.bottom)
        if len(tops) == 1 and tops == bottoms and tops[0] in producers:
            word = FOLD_NAMES.get(lp.type, operation(lp))
            for host in (by_id[h] for h in producers[tops[0]]):   # "+ ReLU" on the rewritten blob's maker
                host.op = f"{host.op} + {word}" if host.op else word
            continue
        node = Node(f"layer_{i}_{_ident(lp.name)}", "layer", lp.name, "" if lp.type == "Input" else operation(lp),
                    colour=COLOURS.get(lp.type, DEFAULT_COLOUR), type=lp.type)
        own = layer_phase(lp)
        if phase is None and own is not None:
            node.op = f"{node.op} ({pb.Phase.Name(own)})".strip()
        known = [(t, shape_of(t, own, strip=bool(bottoms))) for t in tops]
        known = [(t, s) for t, s in known if s is not None]
        if len(known) == 1 and len(tops) == 1:
            node.shape = known[0][1]
        elif known:
            node.shape = ", ".join(f"{t} {s}" for t, s in known)
        for b in bottoms:
            if b not in producers:   # a net input declared outside any layer (old `input:` fields)
                src = Node(f"input_{_ident(b)}", "layer", b, "input", type="Input")
                src.shape = shape_of(b, None, strip=False) or ""
                nodes.append(src)
                by_id[src.id] = src
                producers[b] = [src.id]
            edges.extend((p, node.id, b) for p in producers[b])
        nodes.append(node)
        by_id[node.id] = node
        for t in tops:
            if t in producers and t not in bottoms:
                producers[t].append(node.id)   # the TRAIN and TEST data layers both make "data"
            else:
                producers[t] = [node.id]
    return nodes, edges
