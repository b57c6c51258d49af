"""Reshape: Caffe's shape rule (0 copies, -1 infers, axis / num_axes) against numpy.reshape, the
same prototxt through OpenCV's Caffe importer, and every CHECK of reshape_layer.cpp as an error."""
import cv2
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net


def layer_text(dims, extra=""):
    return ('name: "rs" type: "Reshape" bottom: "x" top: "y" reshape_param { shape { '
            + " ".join(f"dim: {d}" for d in dims) + f" }} {extra} }}")


@pytest.mark.parametrize("dims,extra,bottom,want", [
    ((0, -1), "", (2, 3, 4, 5), (2, 60)),
    ((-1,), "", (2, 3, 4, 5), (120,)),
    ((0, 0, 4, 5), "", (2, 3, 20), (2, 3, 4, 5)),
    ((2, -1), "axis: 1", (4, 6, 5), (4, 2, 15)),               # axes 1.. (6 * 5 values) -> (2, 15)
    ((3, 2), "axis: 1 num_axes: 1", (4, 6, 5), (4, 3, 2, 5)),  # only axis 1 replaced
    ((1,), "axis: 0 num_axes: 0", (4, 6), (1, 4, 6)),          # inserts a leading axis
    ((1,), "axis: -1 num_axes: 0", (4, 6), (4, 6, 1)),         # -1: after the last axis
    ((-1,), "axis: 1 num_axes: 2", (2, 3, 4, 5), (2, 12, 5)),
    ((0, 2, -1), "axis: 1", (2, 3, 4, 5), (2, 3, 2, 10)),      # 0 copies bottom axis 1 + 0
])
def test_reshape_shapes_and_order(make_layer, dims, extra, bottom, want):
    x = np.arange(float(np.prod(bottom))).reshape(bottom)
    layer = make_layer(layer_text(dims, extra), [bottom])
    assert layer.top_shapes[0] == want
    got = layer(torch.from_numpy(x))
    np.testing.assert_array_equal(got.numpy(), x.reshape(want))  # row-major: numpy's reshape


def test_reshape_is_a_view_and_follows_a_new_batch(make_layer):
    layer = make_layer(layer_text((0, -1)), [(2, 3, 4)])
    x = torch.randn(5, 3, 4)  # another batch size than the build shape: forward applies the rule
    y = layer(x)
    assert tuple(y.shape) == (5, 12) and y._base is x


def test_reshape_matches_opencv(tmp_path):
    proto = tmp_path / "reshape.prototxt"
    proto.write_text('name: "r"\n'
                     'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 6 } } }\n'
                     'layer { name: "r1" type: "Reshape" bottom: "data" top: "r1" reshape_param { shape { dim: 0 dim: -1 dim: 8 } } }\n'
                     'layer { name: "r2" type: "Reshape" bottom: "data" top: "r2" reshape_param { shape { dim: 12 dim: 2 } axis: 2 } }\n'
                     'layer { name: "r3" type: "Reshape" bottom: "data" top: "r3" reshape_param { shape { dim: 2 dim: 2 } axis: 2 num_axes: 1 } }\n')
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 6)).astype(np.float32)
    net = Net(str(proto))
    ours = net(data=torch.from_numpy(x))
    cv = cv2.dnn.readNetFromCaffe(str(proto))
    cv.setInput(x, "data")
    theirs = cv.forwardAndRetrieve(["r1", "r2", "r3"])
    for name, outs in zip(["r1", "r2", "r3"], theirs):
        assert net.blob_shapes[name] == tuple(outs[0].shape)
        np.testing.assert_array_equal(ours[name].numpy(), outs[0])


@pytest.mark.parametrize("dims,extra,bottom,match", [
    ((-1, -1), "", (2, 3), "more than one -1"),
    ((5, 5), "", (2, 3), r"layer 'rs'.*bottom 'x' has shape \(2, 3\) \(6 values\).*gives \(5, 5\) \(25 values\)"),
    ((4, -1), "", (2, 3), "cannot infer the -1.*6 values.*4"),
    ((0, 0, 0), "", (2, 3), "0 at position 2.*no axis 2"),
    ((2, 3), "axis: 3", (2, 3), "axis 3 is out of range"),
    ((2, 3), "axis: -4", (2, 3), "axis -4 is out of range"),
    ((6,), "num_axes: 3", (2, 3), "beyond the 2 axes"),
    ((6,), "num_axes: -2", (2, 3), "num_axes must be >= 0"),
    ((-2, 3), "", (2, 3), "dims must be positive"),
])
def test_reshape_errors(make_layer, dims, extra, bottom, match):
    with pytest.raises(CaffeError, match=match):
        make_layer(layer_text(dims, extra), [bottom])


def test_reshape_mismatch_on_net_reshape_names_the_layer():
    net = Net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 6 } } }\n'
              f'layer {{ {layer_text((3, 4))} }}')
    with pytest.raises(CaffeError, match=r"layer 'rs' \(Reshape\).*\(3, 5\)"):
        net.reshape({"x": (3, 5)})


def test_reshape_wrong_bottom_count():
    with pytest.raises(CaffeError, match=r"layer 'rs' \(Reshape\) takes exactly 1 bottom"):
        Net('layer { name: "in" type: "Input" top: "x" top: "z" input_param { shape { dim: 6 } } }\n'
            'layer { name: "rs" type: "Reshape" bottom: "x" bottom: "z" top: "y" '
            'reshape_param { shape { dim: 2 dim: 3 } } }')


def test_reshape_gradcheck(make_layer):
    layer = make_layer(layer_text((0, 2, -1)), [(2, 4, 3)])
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
