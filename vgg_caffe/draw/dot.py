"""A drawn graph as Graphviz text (what Caffe's draw.py hands pydot): layers are filled boxes,
blobs octagons, each label the node's lines. Graphviz lays it out as one strip; the matplotlib
renderer (render.py) wraps it."""


def _quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def label(node):
    return "\n".join([node.name] + (node.op.split("\n") if node.op else []) + ([node.shape] if node.shape else []))


def to_dot(nodes, edges, name="net", rankdir="LR"):
    out = [f"digraph {_quote(name or 'net')} {{", f"  rankdir={rankdir};",
           '  node [fontname="Helvetica", fontsize=10];']
    for node in nodes:
        shape = "box" if node.kind == "layer" else "octagon"
        out.append(f"  {node.id} [label={_quote(label(node))}, shape={shape}, style=filled, "
                   f"fillcolor={_quote(node.colour)}];")
    for edge in edges:
        out.append(f"  {edge[0]} -> {edge[1]};")
    out.append("}")
    return "\n".join(out) + "\n"
