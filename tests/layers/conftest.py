"""Helpers for the per-layer tests: build one layer from LayerParameter text and bottom shapes."""
import pytest

from vgg_caffe.layers import layer_class
from vgg_caffe.proto import parse_text, pb


def build_layer(text, bottom_shapes, phase="TEST"):
    """A layer from LayerParameter text (name, type, bottom/top, params) at these bottom shapes."""
    lp = parse_text(text, pb.LayerParameter())
    return layer_class(lp.type, lp.name)(lp, bottom_shapes, phase)


@pytest.fixture
def make_layer():
    return build_layer
