"""BatchNorm against Caffe's formulas written out per channel in numpy, OpenCV's importer (TEST),
float64 finite differences (TRAIN and TEST), the running statistics of two TRAIN passes, and
the blobs' round trip through a .caffemodel."""
import numpy as np
import pytest
import torch

from opencv_ref import opencv_forward
from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net


def as_nc(x):
    """x with the channel axis second (a 1-d bottom is N values of one channel)."""
    return x.reshape(-1, 1) if x.ndim == 1 else x


def per_channel(x):
    """The values of each channel (axis 1), every other axis flattened: a list of 1-d arrays."""
    x2 = as_nc(x)
    return [x2[:, c].ravel() for c in range(x2.shape[1])]


def normalise(x, means, variances, eps):
    x2 = as_nc(x)
    y = np.empty_like(x2)
    for c in range(x2.shape[1]):
        y[:, c] = (x2[:, c] - means[c]) / np.sqrt(variances[c] + eps)
    return y.reshape(x.shape)


@pytest.fixture
def bn(make_layer):
    def build(text, shape, phase):
        return make_layer(f'name: "bn" type: "BatchNorm" bottom: "x" top: "y" {text}', [shape], phase)
    return build


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (2, 3, 4, 5), (2, 2, 3, 2, 2), (6,)])
def test_train_normalises_with_the_batch_statistics(shape, bn):
    x = np.random.default_rng(0).standard_normal(shape) * 3 + 1
    layer = bn("batch_norm_param { eps: 0.01 }", shape, "TRAIN").double()
    assert not layer.use_global_stats
    means = [v.mean() for v in per_channel(x)]
    variances = [np.mean((v - v.mean()) ** 2) for v in per_channel(x)]  # biased: divided by m
    got = layer(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, normalise(x, means, variances, 0.01), rtol=1e-10, atol=1e-12)


def test_running_statistics_after_two_train_passes(bn):
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((3, 4, 2, 2)), rng.standard_normal((3, 4, 2, 2)) * 2 - 1
    layer = bn("batch_norm_param { moving_average_fraction: 0.9 }", x1.shape, "TRAIN").double()
    layer(torch.from_numpy(x1))
    layer(torch.from_numpy(x2))
    maf, m = float(np.float32(0.9)), 3 * 2 * 2  # the field is a float
    mu1, mu2 = [np.array([v.mean() for v in per_channel(x)]) for x in (x1, x2)]
    v1, v2 = [np.array([v.var() for v in per_channel(x)]) for x in (x1, x2)]
    # factor = factor * maf + 1 twice from 0; mean = batch_mean + maf * mean;
    # var = m / (m - 1) * batch_var + maf * var
    want_factor = (0 * maf + 1) * maf + 1
    want_mean = mu2 + maf * mu1
    want_var = m / (m - 1) * v2 + maf * (m / (m - 1) * v1)
    np.testing.assert_allclose(layer.blobs[2].detach().numpy(), [want_factor], rtol=1e-12)
    np.testing.assert_allclose(layer.blobs[0].detach().numpy(), want_mean, rtol=1e-12)
    np.testing.assert_allclose(layer.blobs[1].detach().numpy(), want_var, rtol=1e-12)
    # m/(m-1) * biased variance is the unbiased one
    np.testing.assert_allclose(m / (m - 1) * v1, [v.var(ddof=1) for v in per_channel(x1)], rtol=1e-12)


def test_one_value_per_channel_uses_no_bias_correction(bn):
    x = np.array([[1.0, -2.0, 3.0]])  # N=1, no spatial axes: m == 1
    layer = bn("", x.shape, "TRAIN").double()
    layer(torch.from_numpy(x))
    np.testing.assert_array_equal(layer.blobs[1].detach().numpy(), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(layer.blobs[0].detach().numpy(), x[0])


@pytest.mark.parametrize("factor", [2.5, 0.0])
def test_global_stats_divide_by_the_factor(tmp_path, factor, bn):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((2, 3, 4, 5)) * 2).astype(np.float32)
    sums = [rng.standard_normal(3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32),
            np.array([factor], np.float32)]
    layer = bn("batch_norm_param { eps: 0.001 }", x.shape, "TEST")
    assert layer.use_global_stats
    with torch.no_grad():
        for b, a in zip(layer.blobs, sums):
            b.copy_(torch.from_numpy(a))
    k = 0.0 if factor == 0 else 1.0 / factor
    want = normalise(x.astype(np.float64), sums[0] * k, sums[1] * k, 0.001)
    got = layer(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if factor:  # OpenCV reads the factor too
        ref = opencv_forward(tmp_path, 'type: "BatchNorm" batch_norm_param { eps: 0.001 }', {"x": x}, sums)
        np.testing.assert_allclose(got, ref.reshape(x.shape), rtol=1e-5, atol=1e-5)
    assert [tuple(b.shape) for b in layer.blobs] == [(3,), (3,), (1,)]
    before = [b.detach().clone() for b in layer.blobs]
    layer(torch.from_numpy(x))
    assert all(torch.equal(a, b) for a, b in zip(before, layer.blobs))  # TEST leaves them alone


def test_use_global_stats_overrides_the_phase(bn):
    x = torch.randn(2, 3, 2, 2)
    assert bn("batch_norm_param { use_global_stats: true }", x.shape, "TRAIN").use_global_stats
    layer = bn("batch_norm_param { use_global_stats: false }", x.shape, "TEST")
    assert not layer.use_global_stats
    layer(x)
    assert layer.blobs[2].item() == 1.0


def test_train_gradient_is_caffes_and_finite_differences(bn):
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((3, 2, 2, 3))).requires_grad_()
    layer = bn("batch_norm_param { eps: 0.1 }", x.shape, "TRAIN").double()
    assert torch.autograd.gradcheck(layer, (x,))
    g = rng.standard_normal(x.shape)
    y = layer(x)
    y.backward(torch.from_numpy(g))
    # Caffe's Backward_cpu: (dy - mean(dy) - mean(dy * y) * y) / sqrt(var + eps), per channel
    yn, xn = y.detach().numpy(), x.detach().numpy()
    want = np.empty_like(g)
    for c in range(2):
        gc, yc = g[:, c], yn[:, c]
        std = np.sqrt(xn[:, c].var() + float(np.float32(0.1)))
        want[:, c] = (gc - gc.mean() - (gc * yc).mean() * yc) / std
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-10, atol=1e-12)
    assert all(b.grad is None and not b.requires_grad for b in layer.blobs)


def test_test_gradient_finite_differences(bn):
    layer = bn("", (2, 3, 2, 2), "TEST").double()
    with torch.no_grad():
        layer.blobs[0].copy_(torch.tensor([0.5, -1.0, 2.0]))
        layer.blobs[1].copy_(torch.tensor([1.0, 4.0, 0.25]))
        layer.blobs[2].fill_(2.0)
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    layer(x).sum().backward()
    want = 1 / np.sqrt(np.array([1.0, 4.0, 0.25]) / 2 + 1e-5)
    np.testing.assert_allclose(x.grad.numpy(), np.broadcast_to(want[None, :, None, None], x.shape), rtol=1e-9)


def test_statistics_are_not_learned(bn):
    layer = bn("", (2, 3, 4, 4), "TRAIN")
    assert [tuple(b.shape) for b in layer.blobs] == [(3,), (3,), (1,)]
    assert not any(b.requires_grad for b in layer.blobs)
    assert [s.lr_mult for s in layer.param.param] == [0, 0, 0]
    partial = bn("param { lr_mult: 0 }", (2, 3, 4, 4), "TRAIN")
    assert [s.lr_mult for s in partial.param.param] == [0, 0, 0]
    with pytest.raises(CaffeError, match=r"layer 'bn' \(BatchNorm\): param\[1\]\.lr_mult is 1.*lr_mult 0"):
        bn("param { lr_mult: 0 } param { lr_mult: 1 }", (2, 3, 4, 4), "TRAIN")


def test_scripted_train_layer_updates_the_statistics_like_eager(bn):
    x = torch.randn(4, 3, 2, 2)
    eager, scripted = bn("", x.shape, "TRAIN"), bn("", x.shape, "TRAIN")
    script = torch.jit.script(scripted)
    torch.testing.assert_close(script(x), eager(x))
    for a, b in zip(eager.blobs, scripted.blobs):
        torch.testing.assert_close(a, b)
    assert scripted.blobs[2].item() == 1.0


def test_bad_parameters_and_shapes(bn):
    with pytest.raises(CaffeError, match=r"batch_norm_param\.eps is -0\.1.*>= 0"):
        bn("batch_norm_param { eps: -0.1 }", (2, 3), "TEST")
    layer = bn("", (2, 3, 4, 4), "TEST")
    with pytest.raises(CaffeError, match=r"layer 'bn'.*bottom 'x' has shape \(2, 5, 4, 4\), 5 channels.*3"):
        layer.reshape([(2, 5, 4, 4)])


NET = '''
name: "bn_net"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 dim: 3 dim: 3 } } }
layer { name: "bn1" type: "BatchNorm" bottom: "data" top: "data" }
layer { name: "sc1" type: "Scale" bottom: "data" top: "data" scale_param { bias_term: true } }
'''


def test_in_place_in_a_net_and_caffemodel_round_trip(tmp_path):
    proto = tmp_path / "bn.prototxt"
    proto.write_text(NET)
    train = Net(str(proto), phase="TRAIN")
    x = torch.randn(4, 3, 3, 3) * 2 + 3
    train(data=x)
    learnable = {(layer.name, i): spec.lr_mult for layer, i, _, spec in train.learnable()}
    assert learnable[("bn1", 0)] == learnable[("bn1", 1)] == learnable[("bn1", 2)] == 0
    assert learnable[("sc1", 0)] == 1
    stats = [b.detach().clone() for b in train.params["bn1"]]
    assert stats[2].item() == 1.0
    weights = tmp_path / "bn.caffemodel"
    train.save(str(weights))
    test = Net(str(proto), phase="TEST", weights=str(weights))
    for a, b in zip(test.params["bn1"], stats):
        torch.testing.assert_close(a.detach(), b)
    out = test(data=x)["data"].detach().numpy()
    xn = x.numpy().astype(np.float64)
    m = 4 * 9
    means = [v.mean() for v in per_channel(xn)]
    variances = [v.var() * m / (m - 1) for v in per_channel(xn)]  # the stored, corrected variance
    np.testing.assert_allclose(out, normalise(xn, means, variances, 1e-5), rtol=1e-4, atol=1e-5)
