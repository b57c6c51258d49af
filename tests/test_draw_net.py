"""tools/draw_net.py: the Graphviz text it writes, and images by Graphviz or the matplotlib fallback."""
import importlib.util
import re
import shutil
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "draw_net.py"
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
