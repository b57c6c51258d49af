"""Slice against numpy.split (slice_point and equal parts, axis and the legacy slice_dim), the same
prototxt through OpenCV's Caffe importer, and the CHECKs of slice_layer.cpp as errors.

OpenCV 4.x cannot split into equal parts without slice points and ignores slice_dim (it reads
`axis` only), so the OpenCV net uses slice points and `axis`; the rest is checked against numpy.
"""
import cv2
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net


def slice_text(n_tops, params):
    tops = "".join(f' top: "t{i}"' for i in range(n_tops))
    return f'name: "sl" type: "Slice" bottom: "x"{tops} slice_param {{ {params} }}'


@pytest.mark.parametrize("n_tops,params,axis,points", [
    (3, "slice_point: 1 slice_point: 4", 1, [1, 4]),
    (3, "", 1, [2, 4]),                                      # equal parts of 6 channels
    (2, "axis: 3 slice_point: 3", 3, [3]),
    (2, "axis: -1 slice_point: 3", 3, [3]),
    (2, "slice_dim: 0", 0, [2]),                             # legacy name of axis
    (2, "slice_dim: 2 slice_point: 1", 2, [1]),
    (2, "slice_point: 6", 1, [6]),                           # the last point may end the axis: empty top
    (1, "", 1, []),
])
def test_slice_matches_numpy_split(make_layer, n_tops, params, axis, points):
    x = np.random.default_rng(0).standard_normal((4, 6, 3, 5))
    layer = make_layer(slice_text(n_tops, params), [x.shape])
    want = np.split(x, points, axis)
    assert layer.top_shapes == [w.shape for w in want]
    got = layer(torch.from_numpy(x))
    assert len(got) == n_tops
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w)


def test_slice_equal_parts_follow_a_new_batch(make_layer):
    layer = make_layer(slice_text(2, "axis: 0"), [(4, 3)])
    assert [tuple(t.shape) for t in layer(torch.randn(6, 3))] == [(3, 3), (3, 3)]


def test_slice_matches_opencv(tmp_path):
    proto = tmp_path / "slice.prototxt"
    proto.write_text('name: "s"\n'
                     'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 6 dim: 4 dim: 7 } } }\n'
                     'layer { name: "s1" type: "Slice" bottom: "data" top: "a" top: "b" top: "c" '
                     'slice_param { axis: 3 slice_point: 2 slice_point: 5 } }\n'
                     'layer { name: "s2" type: "Slice" bottom: "data" top: "d" top: "e" top: "f" '
                     'slice_param { slice_point: 1 slice_point: 4 } }\n'
                     'layer { name: "s3" type: "Slice" bottom: "data" top: "g" top: "h" '
                     'slice_param { axis: -2 slice_point: 3 } }\n')
    x = np.random.default_rng(1).standard_normal((2, 6, 4, 7)).astype(np.float32)
    net = Net(str(proto))
    ours = net(data=torch.from_numpy(x))
    cv = cv2.dnn.readNetFromCaffe(str(proto))
    cv.setInput(x, "data")
    theirs = cv.forwardAndRetrieve(["s1", "s2", "s3"])
    for tops, outs in zip([("a", "b", "c"), ("d", "e", "f"), ("g", "h")], theirs):
        assert len(outs) == len(tops)
        for t, o in zip(tops, outs):
            np.testing.assert_array_equal(ours[t].numpy(), o)


@pytest.mark.parametrize("n_tops,params,match", [
    (2, "axis: 1 slice_dim: 1", "axis or the legacy slice_dim, not both"),
    (3, "slice_point: 2", "1 slice_point values for 3 tops"),
    (1, "slice_point: 2", "1 slice_point values for 1 tops"),
    (3, "slice_point: 3 slice_point: 2", r"slice_point \[3, 2\] must increase"),
    (2, "slice_point: 0", "must increase strictly from 1"),
    (2, "slice_point: 7", "slice_point 7 is past the end of axis 1.*size 6"),
    (4, "", r"4 tops do not divide axis 1 of bottom \(4, 6, 3, 5\)"),
    (7, "slice_point: 1 slice_point: 2 slice_point: 3 slice_point: 4 slice_point: 5 slice_point: 6",
     "7 tops are more than the 6 entries"),
    (2, "slice_dim: 4", "slice_dim 4 is out of range"),
    (2, "axis: -5", "axis -5 is out of range"),
])
def test_slice_errors(make_layer, n_tops, params, match):
    with pytest.raises(CaffeError, match="layer 'sl'.*" + match):
        make_layer(slice_text(n_tops, params), [(4, 6, 3, 5)])


def test_slice_wrong_counts():
    with pytest.raises(CaffeError, match=r"layer 'sl' \(Slice\) takes exactly 1 bottom"):
        Net('layer { name: "in" type: "Input" top: "x" top: "z" input_param { shape { dim: 6 dim: 2 } } }\n'
            'layer { name: "sl" type: "Slice" bottom: "x" bottom: "z" top: "a" }')
    with pytest.raises(CaffeError, match=r"layer 'sl' \(Slice\) takes at least 1 top"):
        Net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 6 dim: 2 } } }\n'
            'layer { name: "sl" type: "Slice" bottom: "x" }')


def test_slice_gradcheck(make_layer):
    layer = make_layer(slice_text(3, "axis: 2 slice_point: 1 slice_point: 3"), [(2, 3, 5)])
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    # Weigh the tops differently so each slice's gradient lands in its own place.
    assert torch.autograd.gradcheck(lambda x: [t * (i + 1) for i, t in enumerate(layer(x))], (x,))
