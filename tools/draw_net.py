"""Draw a net's graph, like Caffe's python/draw_net.py.

    python tools/draw_net.py NET.prototxt OUT.png [--rankdir LR|TB|BT|RL] [--phase TRAIN|TEST|ALL]

OUT.dot gets Graphviz text written directly; .png, .svg and .pdf are rendered by Graphviz's `dot`
when it is installed (apt-get install graphviz), else drawn with matplotlib in the same layered
layout. As in Caffe's drawing, layers are boxes coloured by type, labelled with their name, type
and geometry (kernel, stride, pad, outputs), and blobs are octagons; an edge runs from each bottom
blob to its layer and from the layer to each top. A layer working in place (top == bottom) gets
a new node for the blob it rewrites, so the picture stays acyclic. Any prototxt, V1 included;
--phase ALL (the default, as Caffe) draws every layer.
"""
import argparse
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vgg_caffe.errors import CaffeError, run_cli  # noqa: E402
from vgg_caffe.fileio import atomic_write  # noqa: E402
from vgg_caffe.proto import pb, read_net  # noqa: E402

COLOURS = {"Convolution": "#FF5050", "Deconvolution": "#FF5050", "Pooling": "#FF9900",
           "InnerProduct": "#CC33FF", "LRN": "#66CC66", "Dropout": "#AAAAAA"}
DEFAULT_COLOUR = "#6495ED"
BLOB_COLOUR = "#E0E0E0"


def layer_label(lp):
    """'conv1_1\\n(Convolution)\\nkernel 3 stride 1 pad 1\\n64 outputs' style text."""
    lines = [lp.name, f"({lp.type})"]
    if lp.type in ("Convolution", "Deconvolution"):
        p = lp.convolution_param
        k = p.kernel_h if p.HasField("kernel_h") else (p.kernel_size[0] if p.kernel_size else 0)
        s = p.stride_h if p.HasField("stride_h") else (p.stride[0] if p.stride else 1)
        pad = p.pad_h if p.HasField("pad_h") else (p.pad[0] if p.pad else 0)
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


def graph(net_param, phase=None):
    """(nodes, edges): nodes are (id, kind 'layer'|'blob', label, colour) in order, edges (from, to)."""
    from vgg_caffe.net import filter_net

    layers = list(net_param.layer) if phase is None else filter_net(net_param, phase)
    nodes, edges, current, versions = [], [], {}, {}

    def blob_node(name):
        versions[name] = versions.get(name, 0) + 1
        node = f"blob_{_ident(name)}_{versions[name]}"
        nodes.append((node, "blob", name, BLOB_COLOUR))
        current[name] = node
        return node

    for i, lp in enumerate(layers):
        node = f"layer_{i}_{_ident(lp.name)}"
        nodes.append((node, "layer", layer_label(lp), COLOURS.get(lp.type, DEFAULT_COLOUR)))
        for b in lp.bottom:
            edges.append((current[b] if b in current else blob_node(b), node))
        for t in lp.top:
            # In place: a new node for the rewritten blob. A top another layer already made (the
            # TRAIN and TEST data layers of one file) is the same blob, drawn once.
            same = t in current and t not in lp.bottom
            edges.append((node, current[t] if same else blob_node(t)))
    return nodes, edges


def _ident(name):
    return "".join(c if c.isalnum() else "_" for c in name)


def _quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(net_param, rankdir="LR", phase=None):
    nodes, edges = graph(net_param, phase)
    out = [f"digraph {_quote(net_param.name or 'net')} {{", f"  rankdir={rankdir};",
           '  node [fontname="Helvetica", fontsize=10];']
    for node, kind, label, colour in nodes:
        shape = "box" if kind == "layer" else "octagon"
        out.append(f"  {node} [label={_quote(label)}, shape={shape}, style=filled, fillcolor={_quote(colour)}];")
    for a, b in edges:
        out.append(f"  {a} -> {b};")
    out.append("}")
    return "\n".join(out) + "\n"


def render_matplotlib(net_param, path, rankdir="LR", phase=None):
    """The same graph drawn with matplotlib: nodes placed by depth (longest path from an input)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes, edges = graph(net_param, phase)
    depth = {n[0]: 0 for n in nodes}
    for a, b in edges:  # nodes and edges are in topological order, so one pass suffices
        depth[b] = max(depth[b], depth[a] + 1)
    columns = {}
    for node, *_ in nodes:
        columns.setdefault(depth[node], []).append(node)
    pos = {}
    for d, members in columns.items():
        for j, node in enumerate(members):
            along, across = d * 2.2, (j - (len(members) - 1) / 2) * 1.6
            pos[node] = (along, -across) if rankdir in ("LR", "RL") else (across, -along)
            if rankdir in ("RL", "BT"):
                pos[node] = (-pos[node][0], -pos[node][1])
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    fig, ax = plt.subplots(figsize=(max(4, (max(xs) - min(xs)) * 0.9 + 2), max(3, (max(ys) - min(ys)) * 0.9 + 2)))
    for a, b in edges:
        ax.annotate("", xy=pos[b], xytext=pos[a], arrowprops=dict(arrowstyle="->", color="#444444"))
    for node, kind, label, colour in nodes:
        ax.text(*pos[node], label, ha="center", va="center", fontsize=6,
                bbox=dict(boxstyle="round" if kind == "blob" else "square", fc=colour, ec="black"))
    ax.set_xlim(min(xs) - 1.5, max(xs) + 1.5)
    ax.set_ylim(min(ys) - 1.5, max(ys) + 1.5)
    ax.axis("off")
    fig.tight_layout()
    tmp = path + ".tmp" + os.path.splitext(path)[1]
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)


def draw(model, out, rankdir="LR", phase=None, renderer="auto"):
    """Write `out` (.dot, or an image); returns the renderer used ('dot-text', 'graphviz', 'matplotlib')."""
    net_param = read_net(model)
    fmt = os.path.splitext(out)[1].lstrip(".").lower()
    dot_text = to_dot(net_param, rankdir, phase)
    if fmt in ("dot", "gv"):
        atomic_write(out, dot_text)
        return "dot-text"
    if fmt not in ("png", "svg", "pdf"):
        raise CaffeError(f"{out}: unknown output format '.{fmt}'; expected .dot, .png, .svg or .pdf")
    if renderer in ("auto", "graphviz") and shutil.which("dot"):
        result = subprocess.run(["dot", f"-T{fmt}"], input=dot_text.encode(), capture_output=True)
        if result.returncode != 0:
            raise CaffeError(f"{out}: Graphviz dot failed: {result.stderr.decode(errors='replace').strip()}")
        atomic_write(out, result.stdout)
        return "graphviz"
    if renderer == "graphviz":
        raise CaffeError("Graphviz `dot` is not installed (apt-get install graphviz)")
    render_matplotlib(net_param, out, rankdir, phase)
    return "matplotlib"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input_net_proto_file")
    ap.add_argument("output_image_file", help=".dot, .png, .svg or .pdf")
    ap.add_argument("--rankdir", default="LR", choices=["LR", "TB", "BT", "RL"],
                    help="direction of the graph's layout (default LR)")
    ap.add_argument("--phase", default="ALL", type=str.upper, choices=["TRAIN", "TEST", "ALL"],
                    help="draw only the layers of this phase (default ALL)")
    ap.add_argument("--renderer", default="auto", choices=["auto", "graphviz", "matplotlib"],
                    help="image renderer: Graphviz when installed (auto), or force one")
    args = ap.parse_args(argv)
    phase = None if args.phase == "ALL" else pb.Phase.Value(args.phase)
    used = draw(args.input_net_proto_file, args.output_image_file, args.rankdir, phase, args.renderer)
    print(f"Drawing net to {args.output_image_file} ({used})")


if __name__ == "__main__":
    run_cli(main)
