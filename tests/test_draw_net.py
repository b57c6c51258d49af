"""tools/draw_net.py: the Graphviz text it writes (Caffe's graph), and pictures a person can read.

The pictures are checked as a reader would check them, on the drawn figure: no two boxes overlap,
every text lies inside its box at >= 7.5 pt (10 px at 100 dpi), no line crosses a box it does not
join, the picture wraps (VGG-16 in columns that end at pooling layers, GoogLeNet's inception
modules each whole in one shaded block) and fits a screen. Labels and shapes are compared with
the prototxt's own fields and Caffe's output-size formulas, written out here.
"""
import importlib.util
import json
import math
import re
import shutil
from pathlib import Path

import pytest

from vgg_caffe import draw as drawing
from vgg_caffe.proto import pb, read_net

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "draw_net.py"
VGG16, VGG19 = ROOT / "prototxt" / "D" / "deploy.prototxt", ROOT / "prototxt" / "E" / "deploy.prototxt"
GOOGLENET = ROOT / "tests" / "nets" / "googlenet_like.prototxt"
NET = '''
name: "tiny"
layer { name: "data" type: "Input" top: "data" top: "label" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } shape { dim: 1 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" include { phase: TRAIN } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" include { phase: TEST } }
'''


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("draw_net", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def proto(tmp_path):
    path = tmp_path / "tiny.prototxt"
    path.write_text(NET)
    return path


def _parse(dot):
    nodes = dict(re.findall(r'^\s+(\w+) \[label="((?:[^"\\]|\\.)*)"', dot, re.M))
    edges = re.findall(r"^\s+(\w+) -> (\w+);", dot, re.M)
    return nodes, edges


def test_dot_structure(tool, proto, tmp_path):
    out = tmp_path / "tiny.dot"
    tool.main([str(proto), str(out), "--rankdir", "TB"])
    dot = out.read_text()
    assert dot.startswith('digraph "tiny" {') and "rankdir=TB;" in dot
    nodes, edges = _parse(dot)
    layers = {k: v for k, v in nodes.items() if k.startswith("layer_")}
    blobs = {k: v for k, v in nodes.items() if k.startswith("blob_")}
    assert [v.split("\\n")[0] for v in layers.values()] == ["data", "conv1", "relu1", "pool1", "fc", "loss", "prob"]
    assert "conv1\\n(Convolution)\\nkernel 3 stride 1 pad 1\\n4 outputs" in layers.values()
    assert "pool1\\n(Pooling)\\nMAX kernel 2 stride 2 pad 0" in layers.values()
    # conv1 appears twice: before and after the in-place ReLU, so the drawing has no cycle.
    assert sorted(blobs.values()) == sorted(["data", "label", "conv1", "conv1", "pool1", "fc", "loss", "prob"])
    by_label = {}
    for k, v in layers.items():
        by_label[v.split("\\n")[0]] = k
    relu_in = [a for a, b in edges if b == by_label["relu1"]]
    relu_out = [b for a, b in edges if a == by_label["relu1"]]
    assert len(relu_in) == len(relu_out) == 1 and relu_in != relu_out
    assert nodes[relu_in[0]] == nodes[relu_out[0]] == "conv1"
    # each bottom and each top is one edge: 2 + 2 + 2 + 2 + 2 + 3 + 2
    assert len(edges) == 15


def test_phase_filter(tool, proto, tmp_path):
    out = tmp_path / "test.dot"
    tool.main([str(proto), str(out), "--phase", "TEST"])
    nodes, _ = _parse(out.read_text())
    labels = [v.split("\\n")[0] for k, v in nodes.items() if k.startswith("layer_")]
    assert "prob" in labels and "loss" not in labels


@pytest.mark.parametrize("renderer", ["graphviz", "matplotlib"])
def test_png_written(tool, proto, tmp_path, renderer):
    if renderer == "graphviz" and not shutil.which("dot"):
        pytest.skip("Graphviz is not installed")
    out = tmp_path / "tiny.png"
    tool.main([str(proto), str(out), "--renderer", renderer])
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_unknown_format_is_clear(tool, proto, tmp_path):
    from vgg_caffe.errors import CaffeError
    with pytest.raises(CaffeError, match=r"tiny.bmp: unknown output format '.bmp'"):
        tool.draw(str(proto), str(tmp_path / "tiny.bmp"))


def test_graphviz_renderer_needs_dot(tool, proto, tmp_path):
    if shutil.which("dot"):
        pytest.skip("Graphviz is installed")
    from vgg_caffe.errors import CaffeError
    with pytest.raises(CaffeError, match=r"--renderer graphviz: Graphviz `dot` is not installed"):
        tool.main([str(proto), str(tmp_path / "tiny.png"), "--renderer", "graphviz"])


# -- the compact picture ----------------------------------------------------------------------

def _in_place(lp):
    return len(lp.top) == 1 and list(lp.top) == list(lp.bottom)


def _caffe_shapes(net_param):
    """{top: (C, H, W) or (C,)} by Caffe's formulas: convolution floor((H + 2p - k) / s) + 1,
    pooling ceil((H + 2p - k) / s) + 1, InnerProduct num_output."""
    shape = {}
    for lp in net_param.layer:
        if lp.type == "Input":
            shape[lp.top[0]] = tuple(lp.input_param.shape[0].dim[1:])
        elif lp.type == "Convolution":
            p = lp.convolution_param
            c, h, w = shape[lp.bottom[0]]
            k, s, pad = p.kernel_size[0], (p.stride[0] if p.stride else 1), (p.pad[0] if p.pad else 0)
            shape[lp.top[0]] = (p.num_output, (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1)
        elif lp.type == "Pooling":
            p = lp.pooling_param
            c, h, w = shape[lp.bottom[0]]
            shape[lp.top[0]] = (c, math.ceil((h + 2 * p.pad - p.kernel_size) / p.stride) + 1,
                                math.ceil((w + 2 * p.pad - p.kernel_size) / p.stride) + 1)
        elif lp.type == "InnerProduct":
            shape[lp.top[0]] = (lp.inner_product_param.num_output,)
        elif lp.type == "Concat":
            parts = [shape[b] for b in lp.bottom]
            shape[lp.top[0]] = (sum(p[0] for p in parts),) + parts[0][1:]
        elif not _in_place(lp):
            shape[lp.top[0]] = shape[lp.bottom[0]]
    return shape


def _boxes(layout):
    return {i: (x - w / 2, y - h / 2, x + w / 2, y + h / 2)
            for i, ((x, y), (w, h)) in ((i, (layout.pos[i], layout.size[i])) for i in layout.pos)}


def _crosses(p, q, box):
    """Whether segment p-q passes through the inside of box (Liang-Barsky clipping)."""
    x0, y0, x1, y1 = box
    dx, dy = q[0] - p[0], q[1] - p[1]
    t0, t1 = 0.0, 1.0
    for pk, qk in ((-dx, p[0] - x0), (dx, x1 - p[0]), (-dy, p[1] - y0), (dy, y1 - p[1])):
        if pk == 0:
            if qk <= 0:
                return False
        else:
            t = qk / pk
            t0, t1 = (max(t0, t), t1) if pk < 0 else (t0, min(t1, t))
    return t1 - t0 > 1e-6


def check_legible(fig, layout, artists, max_px=2600):
    """What a reader needs; returns the picture's size in pixels."""
    boxes = _boxes(layout)
    ids = list(boxes)
    for n, a in enumerate(ids):            # no overlaps, a few points apart
        for b in ids[n + 1:]:
            A, B = boxes[a], boxes[b]
            gap = max(B[0] - A[2], A[0] - B[2], B[1] - A[3], A[1] - B[3])
            assert gap >= 4, (a, b, gap)
    inner = {i: (x0 + 1, y0 + 1, x1 - 1, y1 - 1) for i, (x0, y0, x1, y1) in boxes.items()}
    for points, _, (a, b) in layout.lines:   # lines avoid every box but their own two
        for p, q in zip(points, points[1:]):
            hit = [i for i in ids if i not in (a, b) and _crosses(p, q, inner[i])]
            assert not hit, (a, b, hit)
    renderer = fig.canvas.get_renderer()
    for i, (box, texts) in artists.items():   # text inside its box, large enough
        frame = box.get_window_extent(renderer)
        for t in texts:
            e = t.get_window_extent(renderer)
            assert t.get_fontsize() >= 7.5, (i, t.get_text())
            assert frame.x0 - 0.5 <= e.x0 and e.x1 <= frame.x1 + 0.5, (i, t.get_text(), e, frame)
            assert frame.y0 - 0.5 <= e.y0 and e.y1 <= frame.y1 + 0.5, (i, t.get_text(), e, frame)
    w, h = fig.get_size_inches() * fig.dpi
    assert w <= max_px and h <= max_px, (w, h)
    return w, h


@pytest.mark.parametrize("path, convs", [(VGG16, 13), (VGG19, 16)])
def test_vgg_picture(path, convs):
    net = read_net(str(path))
    fig, layout, artists, nodes = drawing.figure(net, source=str(path))
    # one box per layer that is not in place; ReLU and Dropout folded into the label
    assert [n.name for n in nodes] == [lp.name for lp in net.layer if not _in_place(lp)]
    shapes = _caffe_shapes(net)
    by_name = {n.name: n for n in nodes}
    for lp in net.layer:
        if lp.type == "Convolution":
            p = lp.convolution_param
            assert by_name[lp.name].op == f"{p.kernel_size[0]}×{p.kernel_size[0]}/1, {p.num_output} + ReLU"
        if not _in_place(lp) and lp.type != "Input":
            assert by_name[lp.name].shape == "×".join(map(str, shapes[lp.top[0]])), lp.name
    assert sum(n.type == "Convolution" for n in nodes) == convs
    assert by_name["fc6"].op == "fc 4096 + ReLU + Dropout 0.5"
    assert by_name["data"].shape == "10×3×224×224"
    assert layout.pos[by_name["conv1_1"].id] != layout.pos[by_name["conv1_2"].id]
    w, h = check_legible(fig, layout, artists, max_px=1400)
    # stacked blocks: several columns, each but the last ending with a pooling layer
    assert len(layout.columns) >= 2 and 0.8 <= w / h <= 3
    columns = {}
    for n in nodes:
        columns.setdefault(layout.column[n.id], []).append(n)
    for c in sorted(columns):
        lefts = [layout.pos[n.id][0] for n in columns[c]]
        if c:   # columns side by side
            assert min(lefts) > max(layout.pos[n.id][0] for n in columns[c - 1])
        if c < len(columns) - 1:
            last = max(columns[c], key=lambda n: layout.pos[n.id][1])
            assert last.type == "Pooling", (c, last.name)


@pytest.fixture(scope="module")
def googlenet():
    net = read_net(str(GOOGLENET))
    return net, drawing.figure(net, source=str(GOOGLENET))


def test_googlenet_picture(googlenet):
    net, (fig, layout, artists, nodes) = googlenet
    assert 55 <= len(nodes) <= 70   # GoogLeNet-sized
    w, h = check_legible(fig, layout, artists)
    assert 0.7 <= w / h <= 2.5
    ids = {n.name: n.id for n in nodes}
    shapes = _caffe_shapes(net)
    for n in nodes:
        if n.type not in ("Input", "Softmax"):
            assert n.shape == "×".join(map(str, shapes[n.name])), n.name
    boxes = _boxes(layout)
    for lp in net.layer:
        if lp.type != "Concat":
            continue
        module = lp.name.split("/")[0]
        # the four branches arrive side by side
        arriving = [pts[-1] for pts, _, (a, b) in layout.lines if b == ids[lp.name]]
        assert len(arriving) == 4 and len({round(p[0], 1) for p in arriving}) == 4
        # a module is one shaded block: all its boxes in one background rectangle
        members = [boxes[i] for name, i in ids.items() if name.startswith(module + "/")]
        assert len(members) == 8
        assert any(all(x0 <= m[0] and y0 <= m[1] and m[2] <= x1 and m[3] <= y1 for m in members)
                   for x0, y0, x1, y1 in layout.blocks), module


def test_googlenet_left_to_right_wraps_into_rows(googlenet):
    net, _ = googlenet
    fig, layout, artists, nodes = drawing.figure(net, rankdir="LR", source=str(GOOGLENET))
    w, h = check_legible(fig, layout, artists)
    data, prob = (layout.pos[n.id] for n in nodes if n.name in ("data", "prob"))
    assert data[1] < prob[1]   # rows go down the page
    first_row = [layout.pos[n.id] for n in nodes if abs(layout.pos[n.id][1] - data[1]) < 1]
    assert len(first_row) >= 3 and all(p[0] > data[0] for p in first_row if p != data)


def test_train_val_shapes_per_phase_and_label_notes():
    path = ROOT / "prototxt" / "D" / "train_val_S256.prototxt"
    net = read_net(str(path))
    train_batch = json.loads(net.layer[0].python_param.param_str)["batch_size"]
    test_batch = net.layer[1].data_param.batch_size
    fig, layout, artists, nodes = drawing.figure(net, source=str(path))
    data = [n for n in nodes if n.name == "data"]
    assert [n.op for n in data] == ["Python (TRAIN)", "Data (TEST)"]
    assert [n.shape for n in data] == [f"data {b}×3×224×224, label {b}" for b in (train_batch, test_batch)]
    # the label runs from the data layer to the loss: noted on the loss, not a line across the page
    loss = next(n for n in nodes if n.name == "loss")
    assert loss.notes == ["label ← data"]
    assert not [1 for _, _, (a, b) in layout.lines if b == loss.id and a in {n.id for n in data}]
    check_legible(fig, layout, artists)


def test_caffe_style_picture_is_legible_too():
    net = read_net(str(VGG16))
    fig, layout, artists, nodes = drawing.figure(net, style="caffe", rankdir="LR")
    assert sum(n.kind == "layer" for n in nodes) == len(net.layer)
    check_legible(fig, layout, artists)


def test_tool_writes_small_pngs(tool, tmp_path):
    from PIL import Image
    for path in (VGG16, GOOGLENET):
        out = tmp_path / (path.parent.name + ".png")
        tool.main([str(path), str(out)])
        assert out.stat().st_size < 500_000
        with Image.open(out) as img:
            assert max(img.size) <= 2600 and min(img.size) >= 300


def test_docs_images_are_small():
    images = sorted((ROOT / "docs" / "images").glob("*.png"))
    assert {p.name for p in images} >= {"vgg16.png", "googlenet.png", "training.png"}
    for p in images:
        assert p.stat().st_size < 500_000, p
