"""Draw a net's graph with matplotlib alone: boxes sized to their text, the wrapped layout of
layout.py, lines with arrowheads. Text is 9 pt (8 pt for shapes), so at the default 100 dpi a
name is 12 px high: readable at 100% zoom. Works without Graphviz and without a display (Agg).
"""
import functools
import io

from . import layout as lay

FONT = "DejaVu Sans"   # matplotlib's own font: present wherever matplotlib is
NAME_PT, SHAPE_PT, NOTE_PT = 9.0, 8.0, 7.5
PAD_X, PAD_Y, LEADING = 6.0, 4.0, 1.3
ONE_LINE = 160.0       # name and operation share a line when that fits in this many points
EDGE, WRAP = "#555555", "#9A9A9A"


def _props(weight="normal", style="normal", size=NAME_PT):
    from matplotlib.font_manager import FontProperties
    return FontProperties(family=FONT, weight=weight, style=style, size=size)


@functools.lru_cache(maxsize=4096)
def text_width(text, size, weight="normal", style="normal"):
    """Advance width of `text` in points (spaces included), as matplotlib lays it out."""
    from matplotlib.textpath import text_to_path
    if not text:
        return 0.0
    return text_to_path.get_text_width_height_descent(text, _props(weight, style, size), ismath=False)[0]


def node_lines(node):
    """[(text, size, weight, style, colour), ...] per line; a line may hold [name, op] pairs."""
    name_w = text_width(node.name, NAME_PT, "bold")
    op_lines = node.op.split("\n") if node.op else []
    lines = []
    if op_lines and "\n" not in node.op and name_w + text_width("  " + node.op, NAME_PT) <= ONE_LINE:
        lines.append([(node.name, NAME_PT, "bold", "normal", "black"), ("  " + node.op, NAME_PT, "normal", "normal", "black")])
    else:
        lines.append([(node.name, NAME_PT, "bold", "normal", "black")])
        lines += [[(t, NAME_PT, "normal", "normal", "black")] for t in op_lines]
    if node.shape:
        lines.append([(node.shape, SHAPE_PT, "normal", "normal", "#333333")])
    lines += [[(n, NOTE_PT, "normal", "italic", "#555555")] for n in node.notes]
    return lines


def measure(node):
    lines = node_lines(node)
    widths = [sum(text_width(t, s, w, st) for t, s, w, st, _ in line) for line in lines]
    height = sum(max(s for _, s, *_ in line) * LEADING for line in lines)
    return max(widths) + 2 * PAD_X, height + 2 * PAD_Y, lines


def arrange(nodes, edges, rankdir="TB", aspect=1.6, block_ends=()):
    """(Layout in the picture's orientation, measured lines per node). The layout is computed
    top to bottom; LR/RL transpose it (ranks then run left to right, columns become rows) and
    BT/RL mirror it."""
    ids = [n.id for n in nodes]
    by_id = {n.id: n for n in nodes}
    pairs = [(e[0], e[1]) for e in edges]
    rank = lay.ranks(ids, pairs)
    drawn, noted = lay.split_long(pairs, rank)
    blob_of = {(e[0], e[1]): (e[2] if len(e) > 2 else "") for e in edges}
    for a, b in dict.fromkeys(noted):   # a line across the whole net would cross everything: say it
        blob, src = blob_of[(a, b)], by_id[a].name
        note = f"{blob} ← {src}" if blob and blob != src else f"← {src}"
        if note not in by_id[b].notes:   # the TRAIN and TEST data layers share a name
            by_id[b].notes.append(note)
    measured = {n.id: measure(n) for n in nodes}
    across = rankdir in ("LR", "RL")
    size = {i: (m[1], m[0]) if across else m[:2] for i, m in measured.items()}
    out = lay.arrange(ids, list(dict.fromkeys(drawn)), size, rank, block_ends, 1 / aspect if across else aspect)
    if across:
        swap = lambda p: (p[1], p[0])  # noqa: E731
        out.pos = {i: swap(p) for i, p in out.pos.items()}
        out.size = {i: swap(s) for i, s in out.size.items()}
        out.lines = [([swap(p) for p in pts], kind, ends) for pts, kind, ends in out.lines]
        out.blocks = [(y0, x0, y1, x1) for x0, y0, x1, y1 in out.blocks]
        out.width, out.height = out.height, out.width
    if rankdir in ("BT", "RL"):
        axis = 1 if rankdir == "BT" else 0
        extent = out.height if axis else out.width
        flip = lambda p: (p[0], extent - p[1]) if axis else (extent - p[0], p[1])  # noqa: E731
        out.pos = {i: flip(p) for i, p in out.pos.items()}
        out.lines = [([flip(p) for p in pts], kind, ends) for pts, kind, ends in out.lines]
        out.blocks = [(*flip((x0, y1)), *flip((x1, y0))) if axis else (*flip((x1, y0)), *flip((x0, y1)))
                      for x0, y0, x1, y1 in out.blocks]
    return out, {i: m[2] for i, m in measured.items()}


def save(fig, fmt="png", dpi=100):
    """The figure as png (palette, see _small_png), svg or pdf bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    return _small_png(buf.getvalue()) if fmt == "png" else buf.getvalue()


def figure(nodes, edges, title=None, rankdir="TB", aspect=1.6, dpi=100, block_ends=()):
    """(matplotlib Figure, Layout, {node id: (box patch, [text artists])})."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle
    from matplotlib.path import Path

    out, text = arrange(nodes, edges, rankdir, aspect, block_ends)
    margin, top = 22.0, 44.0 if title else 22.0   # the wrapping lines run in the margins
    width, height = out.width + 2 * margin, out.height + top + margin
    fig = Figure(figsize=(width / 72, height / 72), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(-margin, out.width + margin)
    ax.set_ylim(out.height + margin, -top)
    ax.axis("off")
    if title:
        ax.text(-margin + 8, -top + 8, title, ha="left", va="top", fontproperties=_props("bold", size=11))
    for x0, y0, x1, y1 in out.blocks:
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fc="#F3F3F3", ec="#DDDDDD", lw=0.8, zorder=0))
    for points, kind, _ in out.lines:
        codes = [Path.MOVETO] + [Path.LINETO] * (len(points) - 1)
        ax.add_patch(FancyArrowPatch(path=Path(points, codes), arrowstyle="-|>,head_length=5,head_width=2.4",
                                     mutation_scale=1, color=EDGE if kind == "edge" else WRAP, lw=0.8,
                                     shrinkA=0, shrinkB=0, zorder=1))
    artists = {}
    for node in nodes:
        x, y = out.pos[node.id]
        w, h = out.size[node.id]
        rounding = h / 2 if node.kind == "blob" else 3.5
        box = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle=f"round,pad=0,rounding_size={rounding}",
                             fc=node.colour, ec="#444444", lw=0.7, zorder=2)
        ax.add_patch(box)
        artists[node.id] = (box, [])
        ty = y - h / 2 + PAD_Y
        for line in text[node.id]:
            tx = x - sum(text_width(t, s, wt, st) for t, s, wt, st, _ in line) / 2
            step = max(s for _, s, *_ in line) * LEADING
            for t, s, wt, st, colour in line:
                artists[node.id][1].append(ax.text(tx, ty + step / 2, t, ha="left", va="center", color=colour,
                                                   fontproperties=_props(wt, st, s), zorder=3))
                tx += text_width(t, s, wt, st)
            ty += step
    return fig, out, artists


def _small_png(data):
    """The PNG with a 128-colour palette: flat boxes and grey text need no more, and the file is
    a quarter the size (a README picture should not weigh 400 KB)."""
    try:
        from PIL import Image
    except ImportError:
        return data
    img = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO()
    img.save(buf, format="png", optimize=True)
    return buf.getvalue()
