"""Our Net against OpenCV's independent Caffe importer (cv2.dnn.readNetFromCaffe).

The .caffemodel is written here with protobuf (BlobProto shape + data, SerializeToString), so
neither side's weight reader is involved in making it. Odd input sizes (25x33) make Caffe's ceil
pooling differ from floor; AVE pooling with pad checks the clipped divisor. No LRN: OpenCV drops
lrn_param.k (bench/bench_parity.py checks A-LRN against a torch twin instead).
"""
import cv2
import numpy as np
import pytest
import torch

from vgg_caffe.net import Net
from vgg_caffe.proto import parse_text, pb

NET = '''
name: "parity"
input: "data"
input_shape { dim: 2 dim: 3 dim: 25 dim: 33 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2" convolution_param { num_output: 6 kernel_size: 3 pad: 1 stride: 1 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv3" type: "Convolution" bottom: "pool2" top: "conv3" convolution_param { num_output: 6 kernel_size: 1 } }
layer { name: "pool3" type: "Pooling" bottom: "conv3" top: "pool3" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "fc6" type: "InnerProduct" bottom: "pool3" top: "fc6" inner_product_param { num_output: 16 } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7" inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "fc7" top: "prob" }
'''

SHAPES = {"conv1": [(8, 3, 3, 3), (8,)], "conv2": [(6, 8, 3, 3), (6,)], "conv3": [(6, 6, 1, 1), (6,)],
          "fc6": [(16, 6 * 4 * 5), (16,)], "fc7": [(10, 16), (10,)]}


def write_caffemodel(path, rng):
    """A current-format .caffemodel written with protobuf alone; returns the arrays written."""
    model = pb.NetParameter(name="parity")
    arrays = {}
    for name, shapes in SHAPES.items():
        layer = model.layer.add(name=name, type="InnerProduct" if name.startswith("fc") else "Convolution")
        arrays[name] = []
        for shape in shapes:
            fan_in = np.prod(shape[1:]) if len(shape) > 1 else 10
            a = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
            blob = layer.blobs.add()
            blob.shape.dim.extend(shape)
            blob.data.extend(a.ravel().tolist())
            arrays[name].append(a)
    path.write_bytes(model.SerializeToString())
    return arrays


def test_small_net_matches_opencv(tmp_path):
    proto, weights = tmp_path / "parity.prototxt", tmp_path / "parity.caffemodel"
    proto.write_text(NET)
    arrays = write_caffemodel(weights, np.random.default_rng(0))
    net = Net(str(proto))
    assert net.blob_shapes["pool1"] == (2, 8, 13, 17)  # ceil: floor would give 12x16
    assert net.blob_shapes["pool3"] == (2, 6, 4, 5)
    with torch.no_grad():
        for name, blobs in arrays.items():
            for param, a in zip(net.params[name], blobs):
                param.copy_(torch.from_numpy(a))
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 25, 33)).astype(np.float32) * 100
    ours = {b: v.detach().numpy() for b, v in net(data=torch.from_numpy(x)).items()}
    ours_fc7 = net.blobs["fc7"].detach().numpy()

    cv = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
    cv.setInput(x, "data")
    cv_fc7, cv_prob = (np.asarray(o).reshape(2, 10) for o in cv.forward(["fc7", "prob"]))
    scale = np.abs(cv_fc7).max()
    assert np.abs(ours_fc7 - cv_fc7).max() <= 1e-4 * scale
    np.testing.assert_allclose(ours["prob"], cv_prob, rtol=1e-4, atol=1e-6)


def test_weights_loader_agrees(tmp_path):
    """net.copy_from (vgg_caffe.io.caffemodel) loads the protobuf-written file to the same numbers."""
    pytest.importorskip("vgg_caffe.io.caffemodel")
    proto, weights = tmp_path / "parity.prototxt", tmp_path / "parity.caffemodel"
    proto.write_text(NET)
    arrays = write_caffemodel(weights, np.random.default_rng(2))
    net = Net(str(proto), weights=str(weights))
    for name, blobs in arrays.items():
        for param, a in zip(net.params[name], blobs):
            np.testing.assert_array_equal(param.detach().numpy(), a)
    assert parse_text(NET, pb.NetParameter()).name == "parity"
