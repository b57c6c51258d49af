"""pycaffe-style Python layers (tests/pycaffe/pycaffe_test_layers.py) in a pycaffe Net and in a plain
vgg_caffe.Net: gradients against float64 finite differences, learnable blobs, data layers, in-place
layers, phase and param_str, and the errors for classes that are not layers."""
import json
import subprocess
import sys

import numpy as np
import pycaffe_test_layers as pl
import pytest
import torch
from pycaffe_helpers import write

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net as RuntimeNet

PARAMS = json.dumps({"scale": 0.7, "bias": 0.3})
LOSS_NET = '''
force_backward: true
layer { name: "in" type: "Input" top: "x" top: "t" input_param { shape { dim: 3 dim: 4 } } }
layer { name: "sq" type: "Python" bottom: "x" top: "y"
        python_param { module: "pycaffe_test_layers" layer: "ScaledSquare" param_str: '%s' } }
layer { name: "loss" type: "Python" bottom: "y" bottom: "t" top: "loss" loss_weight: 1
        python_param { module: "pycaffe_test_layers" layer: "EuclideanLossLayer" } }
''' % PARAMS


class Stub:
    """A float64 stand-in for caffe.Blob, to run the layers' own numpy code as the reference."""

    def __init__(self, data=None):
        self.data = np.zeros(()) if data is None else np.array(data, np.float64)
        self.diff = np.zeros_like(self.data)

    def reshape(self, *shape):
        self.data, self.diff = np.zeros(shape), np.zeros(shape)

    @property
    def num(self):
        return self.data.shape[0]

    @property
    def count(self):
        return self.data.size


def reference_loss(x, t, scale, bias):
    """The net's loss in float64, computed by the layer classes themselves on Stub blobs."""
    sq, loss = pl.ScaledSquare(), pl.EuclideanLossLayer()
    sq.scale, sq.blobs = scale, [Stub([bias])]
    xb, yb, tb, lb = Stub(x), Stub(), Stub(t), Stub()
    sq.reshape([xb], [yb])
    sq.forward([xb], [yb])
    loss.reshape([yb, tb], [lb])
    loss.forward([yb, tb], [lb])
    return float(lb.data[0])


def finite_difference(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        grad[i] = (f(up) - f(down)) / (2 * eps)
    return grad


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    return rng.randn(3, 4), rng.randn(3, 4)


def test_gradients_match_finite_differences(caffe, tmp_path, data):
    x, t = data
    net = caffe.Net(write(tmp_path, "py.prototxt", LOSS_NET), caffe.TRAIN)
    out = net.forward(x=x.astype(np.float32), t=t.astype(np.float32))
    np.testing.assert_allclose(out["loss"], reference_loss(x, t, 0.7, 0.3), rtol=1e-5)
    net.backward()
    expected_x = finite_difference(lambda v: reference_loss(v, t, 0.7, 0.3), x)
    np.testing.assert_allclose(net.blobs["x"].diff, expected_x, rtol=1e-4, atol=1e-6)
    expected_t = finite_difference(lambda v: reference_loss(x, v, 0.7, 0.3), t)
    np.testing.assert_allclose(net.blobs["t"].diff, expected_t, rtol=1e-4, atol=1e-6)
    # the layer's own learnable blob: a net parameter with its diff
    bias = net.params["sq"][0]
    expected_b = finite_difference(lambda v: reference_loss(x, t, 0.7, v[0]), np.array([0.3]))
    np.testing.assert_allclose(bias.diff, expected_b, rtol=1e-4)
    bias.data[...] = -1.0
    np.testing.assert_allclose(net.forward()["loss"], reference_loss(x, t, 0.7, -1.0), rtol=1e-5)


def test_the_same_layers_in_a_plain_vgg_caffe_net(caffe, tmp_path, data):
    x, t = data
    path = write(tmp_path, "py.prototxt", LOSS_NET)
    pynet = caffe.Net(path, caffe.TRAIN)
    pynet.forward(x=x.astype(np.float32), t=t.astype(np.float32))
    pynet.backward()
    runtime = RuntimeNet(path, "TRAIN")
    assert type(runtime.layer("sq")).__name__ == "PyCaffeLayer"
    xt = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    out = runtime(x=xt, t=torch.tensor(t, dtype=torch.float32))
    np.testing.assert_allclose(out["loss"].item(), reference_loss(x, t, 0.7, 0.3), rtol=1e-5)
    runtime.backward()
    np.testing.assert_allclose(xt.grad.numpy(), pynet.blobs["x"].diff, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(runtime.params["sq"][0].grad.numpy(), pynet.params["sq"][0].diff, rtol=1e-5)


def test_layer_objects_phase_and_param_str(caffe, tmp_path):
    net = caffe.Net(write(tmp_path, "py.prototxt", LOSS_NET), caffe.TRAIN)
    layer = net.layer_dict["sq"]
    assert isinstance(layer, pl.ScaledSquare) and layer.type == "Python"
    assert layer.seen_phase == caffe.TRAIN and json.loads(layer.param_str) == {"scale": 0.7, "bias": 0.3}
    assert caffe.Net(write(tmp_path, "py2.prototxt", LOSS_NET), caffe.TEST).layer_dict["sq"].seen_phase == caffe.TEST


DATA_NET = '''
layer { name: "count" type: "Python" top: "c" python_param { module: "pycaffe_test_layers" layer: "Counter"
        param_str: '{"start": 10}' } }
layer { name: "neg" type: "Python" bottom: "c" top: "c" python_param { module: "pycaffe_test_layers" layer: "Negate" } }
layer { name: "ip" type: "InnerProduct" bottom: "c" top: "ip"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }
'''


def test_python_data_layer_and_in_place_python_layer(caffe, tmp_path):
    path = write(tmp_path, "data.prototxt", DATA_NET.replace("layer {", "force_backward: true\nlayer {", 1))
    net = caffe.Net(path, caffe.TEST)
    assert net.inputs == []   # only Input layers make net inputs, as in Caffe
    w = net.params["ip"][0].data.astype(np.float64)
    for k in range(3):
        out = net.forward()
        c = -(10 + k + np.arange(6).reshape(2, 3))
        np.testing.assert_array_equal(net.blobs["c"].data, c)   # negated in place
        np.testing.assert_allclose(out["ip"], c @ w.T, rtol=1e-5, atol=1e-5)
    g = np.random.RandomState(1).randn(2, 2).astype(np.float32)
    net.backward(ip=g)
    np.testing.assert_allclose(net.blobs["c"].diff, -(g.astype(np.float64) @ w), rtol=1e-5, atol=1e-6)
    runtime = RuntimeNet(path, "TEST")
    first = runtime()["ip"]
    assert first.shape == (2, 2) and runtime.blobs["c"].tolist() == (-(10 + np.arange(6).reshape(2, 3))).tolist()


def test_forward_only_layer_refuses_a_gradient(caffe, tmp_path):
    text = LOSS_NET.replace('layer: "ScaledSquare" param_str: \'%s\'' % PARAMS, 'layer: "ForwardOnly"')
    net = caffe.Net(write(tmp_path, "fo.prototxt", text), caffe.TRAIN)
    net.forward(x=np.ones((3, 4), np.float32), t=np.zeros((3, 4), np.float32))
    with pytest.raises(NotImplementedError, match="ForwardOnly defines no backward"):
        net.backward()


def test_a_class_that_is_not_a_layer(caffe, tmp_path):
    text = LOSS_NET.replace('layer: "ScaledSquare"', 'layer: "NotALayer"')
    with pytest.raises(CaffeError, match=r"layer 'sq' \(Python\): pycaffe_test_layers.NotALayer is not a layer "
                                         r"class; only Layer subclasses are supported as Python layers: caffe.Layer"):
        caffe.Net(write(tmp_path, "bad.prototxt", text), caffe.TEST)
    text = LOSS_NET.replace('layer: "ScaledSquare"', 'layer: "Missing"')
    with pytest.raises(CaffeError, match="module 'pycaffe_test_layers' has no 'Missing'"):
        caffe.Net(write(tmp_path, "bad2.prototxt", text), caffe.TEST)


MODULE = '''
import caffe


class Twice(caffe.Layer):
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = 2 * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = 2 * top[0].diff
'''

SCRIPT = '''
import sys, numpy as np, torch
sys.path.insert(0, %r)
from vgg_caffe.net import Net
net = Net(%r, "TEST")
x = torch.ones(2, 3, requires_grad=True)
y = net(x=x)["y"]
y.sum().backward()
import caffe
print(caffe.__name__, y.tolist(), x.grad.tolist())
'''


def test_a_module_importing_caffe_gets_the_alias(tmp_path):
    (tmp_path / "twice_layer.py").write_text(MODULE)
    proto = write(tmp_path, "twice.prototxt", '''
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "t" type: "Python" bottom: "x" top: "y" python_param { module: "twice_layer" layer: "Twice" } }
''')
    result = subprocess.run([sys.executable, "-c", SCRIPT % (str(tmp_path), proto)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() [0] == "vgg_caffe.pycaffe"
    assert "[[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]] [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]" in result.stdout
