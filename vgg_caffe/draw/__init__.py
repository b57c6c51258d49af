"""Pictures of nets (tools/draw_net.py, caffe.draw): graph.py says what is drawn (Caffe's
layers-and-blobs graph, or the compact one), layout.py where (layered, wrapped into columns),
render.py how (matplotlib), dot.py the same graph as Graphviz text.

    picture(net_param, "png")                  the compact, wrapped picture (bytes)
    picture(net_param, "svg", style="caffe")   Caffe's graph, drawn the same way
    dot_text(net_param)                        Caffe's graph as Graphviz text
"""
from ..proto import pb
from . import dot, graph, render

STYLES = ("compact", "caffe")
BLOCK_ENDS = ("Pooling", "Concat", "Eltwise")   # a picture's blocks end after these layers


def nodes_and_edges(net_param, style="compact", phase=None, source=None):
    """(nodes, edges, title) of `net_param` drawn in `style`; phase None draws every layer."""
    if style == "caffe":
        nodes, edges = graph.caffe_graph(net_param, phase)
        return nodes, edges, net_param.name
    shapes = {}
    # A Python layer with bottoms would have to be imported to be shaped; a picture need not.
    if not any(lp.type == "Python" and len(lp.bottom) for lp in net_param.layer):
        for ph in (pb.TEST, pb.TRAIN) if phase is None else (phase,):
            shapes[ph] = graph.blob_shapes(net_param, ph, source)
    nodes, edges = graph.compact_graph(net_param, phase, shapes)
    batches = {pb.Phase.Name(ph): b for ph, (_, b) in shapes.items() if b is not None}
    if len(set(batches.values())) > 1:
        batch = ", ".join(f"{b} ({ph})" for ph, b in sorted(batches.items()))
    else:
        batch = next(iter(batches.values()), None)
    notes = ([f"{pb.Phase.Name(phase)} phase"] if phase is not None else []) + \
        ([f"blob shapes C×H×W, batch {batch}"] if batch else [])
    title = (net_param.name or "net") + (f"   ({', '.join(notes)})" if notes else "")
    return nodes, edges, title


def figure(net_param, style="compact", phase=None, rankdir="TB", source=None, aspect=1.6, dpi=100):
    """(matplotlib Figure, Layout, {node id: (box, texts)}, nodes) of the drawing."""
    nodes, edges, title = nodes_and_edges(net_param, style, phase, source)
    ends = {n.id for n in nodes if n.type in BLOCK_ENDS}
    blobs = {n.id for n in nodes if n.kind == "blob"}
    ends |= {e[1] for e in edges if e[0] in ends and e[1] in blobs}   # Caffe's graph: the layer's top
    fig, layout, artists = render.figure(nodes, edges, title, rankdir, aspect, dpi, ends)
    return fig, layout, artists, nodes


def picture(net_param, fmt="png", style="compact", phase=None, rankdir="TB", source=None, aspect=1.6, dpi=100):
    """The drawing as png, svg or pdf bytes, laid out by layout.py and drawn by matplotlib."""
    fig = figure(net_param, style, phase, rankdir, source, aspect, dpi)[0]
    return render.save(fig, fmt, dpi)


def dot_text(net_param, style="caffe", phase=None, rankdir="LR", source=None):
    nodes, edges, _ = nodes_and_edges(net_param, style, phase, source)
    return dot.to_dot(nodes, edges, net_param.name, rankdir)
