"""PReLU against max(x, 0) + a_c * min(x, 0) in numpy, OpenCV's importer, float64 finite
differences with respect to the input and the slopes, and Caffe's gradient at x == 0."""
import numpy as np
import pytest
import torch

from opencv_ref import opencv_forward
from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net


def prelu_ref(x, a):
    """a: one slope per channel (axis 1), or a scalar."""
    a = np.asarray(a)
    a = a.reshape((1, -1) + (1,) * (x.ndim - 2)) if a.ndim else a
    return np.maximum(x, 0) + a * np.minimum(x, 0)


def load(layer, a):
    layer.double()
    with torch.no_grad():
        layer.blobs[0].copy_(torch.as_tensor(a))
    return layer


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("shared", [False, True])
def test_forward(make_layer, shape, shared):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    layer = make_layer(f'name: "p" type: "PReLU" prelu_param {{ channel_shared: {str(shared).lower()} }}', [shape])
    assert layer.blob_shapes() == [() if shared else (3,)]
    a = np.float64(0.3) if shared else rng.standard_normal(3)
    load(layer, a)
    got = layer(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, prelu_ref(x, a), rtol=1e-12)
    np.testing.assert_array_equal(torch.jit.script(layer)(torch.from_numpy(x)).detach().numpy(), got)


def test_matches_opencv(tmp_path, make_layer):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    a = rng.uniform(-0.5, 1.5, 3).astype(np.float32)
    ref = opencv_forward(tmp_path, 'type: "PReLU"', {"x": x}, [a])
    layer = make_layer('name: "p" type: "PReLU"', [x.shape])
    with torch.no_grad():
        layer.blobs[0].copy_(torch.from_numpy(a))
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(), ref.reshape(x.shape), rtol=1e-6)


@pytest.mark.parametrize("shared", [False, True])
def test_gradcheck_input_and_slope(make_layer, shared):
    layer = make_layer(f'name: "p" type: "PReLU" prelu_param {{ channel_shared: {str(shared).lower()} }}',
                       [(2, 3, 2, 2)])
    load(layer, 0.3 if shared else [0.1, -0.4, 0.7])
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    x = torch.where(x.abs() < 0.05, torch.full_like(x, 0.5), x).requires_grad_()  # away from the kink
    assert torch.autograd.gradcheck(lambda x, a: torch.func.functional_call(layer, {"blobs.0": a}, (x,)),
                                    (x, layer.blobs[0]))


def test_caffe_gradient_at_zero_and_slope_gradient(make_layer):
    layer = load(make_layer('name: "p" type: "PReLU"', [(1, 2, 3)]), [0.25, -0.5])
    x = torch.tensor([[[0.0, 1.0, -2.0], [0.0, -3.0, 4.0]]], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]], dtype=torch.float64)
    layer(x).backward(g)
    # Caffe: dx = dy * ((x > 0) + a_c * (x <= 0)); da_c = sum dy * x * (x <= 0)
    np.testing.assert_allclose(x.grad.numpy(), [[[0.25, 2.0, 0.75], [-2.0, -2.5, 6.0]]])
    np.testing.assert_allclose(layer.blobs[0].grad.numpy(), [3.0 * -2.0, 5.0 * -3.0])


def test_fillers(make_layer):
    default = make_layer('name: "p" type: "PReLU"', [(2, 4, 3)])
    default.fill()
    assert torch.all(default.blobs[0] == 0.25)
    given = make_layer('name: "p" type: "PReLU" prelu_param { filler { type: "constant" value: 0.1 } }', [(2, 4)])
    given.fill()
    np.testing.assert_allclose(given.blobs[0].detach().numpy(), np.full(4, 0.1, np.float32))


def test_bad_shapes(make_layer):
    with pytest.raises(CaffeError, match=r"layer 'p' \(PReLU\): bottom shape \(5,\): .*at least 2 axes"):
        make_layer('name: "p" type: "PReLU"', [(5,)])
    layer = make_layer('name: "p" type: "PReLU"', [(2, 3, 4)])
    with pytest.raises(CaffeError, match=r"bottom shape \(2, 6, 4\) has 6 channels; the slope blob has 3"):
        layer.reshape([(2, 6, 4)])
    make_layer('name: "p" type: "PReLU" prelu_param { channel_shared: true }', [(2, 3)]).reshape([(2, 6)])


NET = '''
name: "prelu_net"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 2 dim: 2 } } }
layer { name: "p1" type: "PReLU" bottom: "data" top: "data" }
layer { name: "p2" type: "PReLU" bottom: "data" top: "out" prelu_param { channel_shared: true } }
'''


def save_and_load(tmp_path, suffix):
    proto = tmp_path / "p.prototxt"
    proto.write_text(NET)
    net = Net(str(proto))
    with torch.no_grad():
        net.params["p1"][0].copy_(torch.tensor([0.1, 0.2, 0.3]))
        net.params["p2"][0].fill_(-0.7)
    path = str(tmp_path / f"p{suffix}")
    net.save(path)
    return net, Net(str(proto), weights=path)


@pytest.mark.parametrize("suffix", [".caffemodel", ".h5"])
def test_in_place_and_saved_slopes_load_back(tmp_path, suffix):
    net, again = save_and_load(tmp_path, suffix)
    assert tuple(again.params["p2"][0].shape) == ()  # Caffe's channel_shared blob has no axes
    assert again.params["p2"][0].item() == pytest.approx(-0.7)
    torch.testing.assert_close(again.params["p1"][0], net.params["p1"][0])
    x = np.random.default_rng(2).standard_normal((2, 3, 2, 2)).astype(np.float32)
    want = prelu_ref(prelu_ref(x, [0.1, 0.2, 0.3]), np.float32(-0.7))
    np.testing.assert_allclose(again(data=torch.from_numpy(x))["out"].detach().numpy(), want, rtol=1e-6)
