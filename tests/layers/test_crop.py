"""Crop against numpy slicing and the same prototxt through OpenCV's Caffe importer; the offset
forms (none, one for all cropped axes, one per axis), axis, bounds errors, and the gradient (to
the first bottom only)."""
import cv2
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net


def crop_text(params=""):
    return f'name: "crop" type: "Crop" bottom: "x" bottom: "ref" top: "y" crop_param {{ {params} }}'


@pytest.mark.parametrize("params,ref,index", [
    ("", (2, 3, 4, 5), np.s_[:, :, 0:4, 0:5]),                       # axis 2, offset 0
    ("offset: 1", (2, 3, 4, 5), np.s_[:, :, 1:5, 1:6]),              # one offset for every cropped axis
    ("offset: 2 offset: 1", (2, 3, 4, 5), np.s_[:, :, 2:6, 1:6]),    # one per cropped axis
    ("axis: 1 offset: 1 offset: 0 offset: 3", (2, 2, 5, 4), np.s_[:, 1:3, 0:5, 3:7]),
    ("axis: -1 offset: 2", (9, 9, 9, 3), np.s_[:, :, :, 2:5]),       # earlier axes keep the data's size
    ("axis: 0 offset: 1", (1, 2, 6, 7), np.s_[1:2, 1:3, 1:7, 1:8]),
])
def test_crop_matches_numpy(make_layer, params, ref, index):
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 8))
    layer = make_layer(crop_text(params), [x.shape, ref])
    want = x[index]
    assert layer.top_shapes[0] == want.shape
    got = layer(torch.from_numpy(x), torch.zeros(ref, dtype=torch.float64))
    np.testing.assert_array_equal(got.numpy(), want)


def test_crop_matches_opencv(tmp_path):
    proto = tmp_path / "crop.prototxt"
    proto.write_text('name: "c"\n'
                     'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 11 } } }\n'
                     'layer { name: "ref" type: "Input" top: "ref" input_param { shape { dim: 2 dim: 3 dim: 5 dim: 6 } } }\n'
                     'layer { name: "c1" type: "Crop" bottom: "data" bottom: "ref" top: "c1" crop_param { offset: 2 } }\n'
                     'layer { name: "c2" type: "Crop" bottom: "data" bottom: "ref" top: "c2" '
                     'crop_param { axis: 2 offset: 3 offset: 4 } }\n'
                     'layer { name: "c3" type: "Crop" bottom: "data" bottom: "ref" top: "c3" crop_param { axis: 3 offset: 5 } }\n')
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    r = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    net = Net(str(proto))
    ours = net(data=torch.from_numpy(x), ref=torch.from_numpy(r))
    cv = cv2.dnn.readNetFromCaffe(str(proto))
    cv.setInput(x, "data")
    cv.setInput(r, "ref")
    for name, outs in zip(["c1", "c2", "c3"], cv.forwardAndRetrieve(["c1", "c2", "c3"])):
        assert net.blob_shapes[name] == tuple(outs[0].shape)
        np.testing.assert_array_equal(ours[name].numpy(), outs[0])


@pytest.mark.parametrize("params,ref,match", [
    ("offset: 4", (2, 3, 4, 5), r"crop of axis 2 is out of bounds: size 4 at offset 4 does not fit in 7"),
    ("offset: 0 offset: 4", (2, 3, 4, 5), r"crop of axis 3 is out of bounds: size 5 at offset 4.*in 8"),
    ("", (2, 3, 8, 5), "crop of axis 2 is out of bounds"),
    ("offset: 1 offset: 1 offset: 1", (2, 3, 4, 5), "3 crop_param.offset values for axes 2..3"),
    ("axis: 4", (2, 3, 4, 5), "axis 4 is out of range"),
    ("", (2, 3, 4), r"bottom 'ref' has shape \(2, 3, 4\).*a size for each of the data's axes"),
])
def test_crop_errors(make_layer, params, ref, match):
    with pytest.raises(CaffeError, match="layer 'crop'.*" + match):
        make_layer(crop_text(params), [(2, 3, 7, 8), ref])


def test_crop_needs_two_bottoms():
    with pytest.raises(CaffeError, match=r"layer 'crop' \(Crop\) takes exactly 2 bottom"):
        Net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }\n'
            'layer { name: "crop" type: "Crop" bottom: "x" top: "y" }')


def test_crop_gradient(make_layer):
    layer = make_layer(crop_text("offset: 1 offset: 2"), [(2, 2, 5, 6), (2, 2, 3, 3)])
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x, ref))
    # Caffe's backward: the top's diff at the crop window, zero around it; nothing for the reference.
    g = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    gx, gref = torch.autograd.grad(layer(x, ref), (x, ref), g, allow_unused=True)
    want = np.zeros((2, 2, 5, 6))
    want[:, :, 1:4, 2:5] = g.numpy()
    np.testing.assert_array_equal(gx.numpy(), want)
    assert gref is None
