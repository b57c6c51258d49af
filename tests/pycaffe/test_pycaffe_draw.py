"""caffe.draw over vgg_caffe.draw: Graphviz text with Caffe's layers-and-blobs graph, a phase filter,
image bytes of the format the file name asks for, and the errors for what it cannot draw."""
import re

import pytest

from vgg_caffe.errors import CaffeError
from vgg_caffe.proto import parse_text, pb

NET = '''
name: "drawn"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "drop" type: "Dropout" bottom: "conv1" top: "conv1" include { phase: TRAIN } }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 2 } }
'''


@pytest.fixture
def net_param():
    return parse_text(NET, pb.NetParameter())


def edges(dot):
    return re.findall(r"(\w+)\s*->\s*(\w+)", dot)


def test_dot_text_is_caffes_graph(caffe, net_param, tmp_path):
    path = tmp_path / "net.dot"
    caffe.draw.draw_net_to_file(net_param, str(path), rankdir="TB")
    text = path.read_text()
    assert text.lstrip().startswith("digraph") and "rankdir=TB" in text.replace(" ", "")
    for name in ("conv1", "relu1", "drop", "fc", "Convolution", "InnerProduct"):
        assert name in text
    # layers and blobs alternate: every edge joins a layer and a blob; in-place layers get a new blob
    assert len(edges(text)) == 2 * 5 - 1   # data layer: 1 top; the four others: 1 bottom + 1 top
    test_only = caffe.draw.draw_net(net_param, "LR", ext="dot", phase=caffe.TEST).decode()
    assert "drop" not in test_only and "relu1" in test_only
    assert len(edges(test_only)) == 2 * 4 - 1


def test_image_bytes_by_extension(caffe, net_param, tmp_path):
    png = tmp_path / "net.png"
    caffe.draw.draw_net_to_file(net_param, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = caffe.draw.draw_net(net_param, "LR", ext="svg")
    assert b"<svg" in svg[:2000]


def test_what_it_cannot_draw(caffe, net_param):
    with pytest.raises(CaffeError, match="unknown image format '.bmp'"):
        caffe.draw.draw_net(net_param, "LR", ext="bmp")
    with pytest.raises(CaffeError, match="takes a caffe_pb2.NetParameter"):
        caffe.draw.draw_net(42, "LR")
