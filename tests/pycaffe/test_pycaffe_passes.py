"""pycaffe Net passes: forward/backward over the whole net and over layer ranges, checked against a
float64 torch twin written by hand and against matrix products done in numpy; in-place blobs,
summed diffs of blobs read twice, force_backward, accumulation, batching, callbacks, reshape."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycaffe_helpers import inputs, write

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net as RuntimeNet


def twin(net, x, label=None):
    """SMALL by hand in float64 with the net's weights: (conv1 after ReLU, pool1, fc, fc2, loss|prob)."""
    w = {k: [torch.from_numpy(b.data.astype(np.float64)).requires_grad_() for b in v] for k, v in net.params.items()}
    conv = F.relu(F.conv2d(x, w["conv1"][0], w["conv1"][1], padding=1))
    pool = F.max_pool2d(conv, 2, 2, ceil_mode=True)
    fc = F.linear(pool.flatten(1), *w["fc"])
    fc2 = F.linear(fc, *w["fc2"])
    last = F.cross_entropy(fc2, label.long()) if label is not None else torch.softmax(fc2, 1)
    return conv.detach(), pool.detach(), fc.detach(), fc2.detach(), last, w


def test_forward_matches_twin_and_views_survive(caffe, small_path):
    net = caffe.Net(str(small_path), caffe.TEST)
    x, _ = inputs()
    before = net.blobs["prob"].data          # a view taken before any pass
    net.blobs["data"].data[...] = x
    out = net.forward()
    conv, pool, fc, fc2, prob, _ = twin(net, torch.from_numpy(x).double())
    prob = prob.detach()
    assert net.inputs == ["data"] and net.outputs == ["prob"] and set(out) == {"prob"}
    assert np.shares_memory(out["prob"], before)
    np.testing.assert_allclose(before, prob.numpy(), rtol=1e-5, atol=1e-6)
    # relu1 runs in place: the conv1 blob holds the rectified values, as in Caffe
    np.testing.assert_allclose(net.blobs["conv1"].data, conv.numpy(), rtol=1e-5, atol=1e-5)
    assert net.blobs["conv1"].data.min() >= 0
    # a second pass rewrites the same memory
    net.blobs["data"].data[...] = -x
    net.forward()
    np.testing.assert_allclose(before, twin(net, -torch.from_numpy(x).double())[4].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_forward_keywords_must_be_the_inputs(caffe, small_path):
    net = caffe.Net(str(small_path), caffe.TRAIN)
    x, y = inputs()
    assert net.inputs == ["data", "label"]
    with pytest.raises(CaffeError, match=r"do not match the net inputs \['data', 'label'\]"):
        net.forward(data=x)
    out = net.forward(data=x, label=y)
    loss = twin(net, torch.from_numpy(x).double(), torch.from_numpy(y))[4]
    np.testing.assert_allclose(out["loss"], loss.item(), rtol=1e-5)
    with pytest.raises(CaffeError, match=r"blob 'data' data: an array of shape \(2, 3, 9, 11\).*batch is 4"):
        net.forward(data=x[:2], label=y[:2])


def test_partial_forward_end_stops_there(caffe, small_path):
    net = caffe.Net(str(small_path), caffe.TEST)
    x, _ = inputs()
    net.blobs["data"].data[...] = x
    net.blobs["fc"].data[...] = 7.0
    out = net.forward(end="pool1")
    assert set(out) == {"pool1"}
    np.testing.assert_allclose(out["pool1"], twin(net, torch.from_numpy(x).double())[1].numpy(), rtol=1e-5, atol=1e-5)
    assert (net.blobs["fc"].data == 7.0).all() and (net.blobs["prob"].data == 0).all()


def test_partial_forward_start_reads_the_blobs(caffe, small_path):
    net = caffe.Net(str(small_path), caffe.TEST)
    pool = np.random.RandomState(3).randn(*net.blobs["pool1"].shape).astype(np.float32)
    net.blobs["pool1"].data[...] = pool
    net.blobs["conv1"].data[...] = 5.0
    out = net.forward(start="fc", blobs=["fc"])
    (w1, b1), (w2, b2) = [(b[0].data, b[1].data) for b in (net.params["fc"], net.params["fc2"])]
    fc = pool.reshape(4, -1).astype(np.float64) @ w1.T + b1
    fc2 = fc @ w2.T + b2
    prob = np.exp(fc2 - fc2.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    assert set(out) == {"prob", "fc"}
    np.testing.assert_allclose(out["fc"], fc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["prob"], prob, rtol=1e-5, atol=1e-6)
    assert (net.blobs["conv1"].data == 5.0).all()   # layers before `start` did not run


def test_backward_matches_autograd_with_force_backward(caffe, small_path):
    net = caffe.Net(str(small_path.parent / "small_fb.prototxt"), caffe.TRAIN)
    x, y = inputs(1)
    net.forward(data=x, label=y)
    diffs = net.backward()
    xt = torch.from_numpy(x).double().requires_grad_()
    *_, loss, w = twin(net, xt, torch.from_numpy(y))
    loss.backward()
    assert set(diffs) == {"data", "label"}
    np.testing.assert_allclose(net.blobs["loss"].data, loss.item(), rtol=1e-5)
    np.testing.assert_allclose(diffs["data"], xt.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert (diffs["label"] == 0).all()   # a loss layer's labels never get a diff
    for name in ("conv1", "fc", "fc2"):
        for j, blob in enumerate(net.params[name]):
            np.testing.assert_allclose(blob.diff, w[name][j].grad.numpy(), rtol=1e-4, atol=1e-6)


def test_without_force_backward_inputs_get_no_diff_but_params_do(caffe, small_path):
    net = caffe.Net(str(small_path), caffe.TRAIN)
    x, y = inputs(2)
    net.forward(data=x, label=y)
    diffs = net.backward()
    assert (diffs["data"] == 0).all()
    xt = torch.from_numpy(x).double()
    *_, loss, w = twin(net, xt, torch.from_numpy(y))
    loss.backward()
    np.testing.assert_allclose(net.params["conv1"][0].diff, w["conv1"][0].grad.numpy(), rtol=1e-4, atol=1e-6)
    # param diffs accumulate until cleared, as Caffe's
    net.backward()
    np.testing.assert_allclose(net.params["fc"][0].diff, 2 * w["fc"][0].grad.numpy(), rtol=1e-4, atol=1e-6)
    net.clear_param_diffs()
    assert all((b.diff == 0).all() for v in net.params.values() for b in v)


def test_backward_in_two_halves_equals_the_full_pass(caffe, small_path):
    net = caffe.Net(str(small_path.parent / "small_fb.prototxt"), caffe.TRAIN)
    x, y = inputs(3)
    net.forward(data=x, label=y)
    full = net.backward()["data"].copy()
    full_w = net.params["conv1"][0].diff.copy()
    net.clear_param_diffs()
    net.blobs["data"].diff[...] = 0
    assert set(net.backward(start="loss", end="fc")) == {"fc"}
    assert (net.blobs["data"].diff == 0).all() and (net.params["conv1"][0].diff == 0).all()
    net.backward(start="pool1")
    np.testing.assert_array_equal(net.blobs["data"].diff, full)
    np.testing.assert_array_equal(net.params["conv1"][0].diff, full_w)


def test_partial_backward_by_hand(caffe, small_path):
    net = caffe.Net(str(small_path.parent / "small_fb.prototxt"), caffe.TEST)
    x, _ = inputs(4)
    net.blobs["data"].data[...] = x
    net.forward()
    g = np.random.RandomState(5).randn(*net.blobs["fc2"].shape).astype(np.float32)
    net.blobs["fc2"].diff[...] = g
    net.blobs["conv1"].diff[...] = 9.0
    out = net.backward(start="fc2", end="fc")
    w1, w2 = net.params["fc"][0].data, net.params["fc2"][0].data
    fc_diff = g.astype(np.float64) @ w2
    assert set(out) == {"fc"}
    np.testing.assert_allclose(out["fc"], fc_diff, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.blobs["pool1"].diff.reshape(4, -1), fc_diff @ w1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(net.params["fc2"][0].diff, g.T.astype(np.float64) @ net.blobs["fc"].data,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.params["fc2"][1].diff, g.sum(0), rtol=1e-5, atol=1e-6)
    assert (net.blobs["conv1"].diff == 9.0).all()   # relu1 and conv1 were not run


def test_backward_from_output_diffs(caffe, small_path):
    net = caffe.Net(str(small_path.parent / "small_fb.prototxt"), caffe.TEST)
    x, _ = inputs(6)
    net.forward(data=x)
    d = np.random.RandomState(7).randn(4, 4).astype(np.float32)
    with pytest.raises(CaffeError, match="do not match the net outputs"):
        net.backward(fc=d)
    diffs = net.backward(prob=d)
    xt = torch.from_numpy(x).double().requires_grad_()
    prob = twin(net, xt)[4]
    prob.backward(torch.from_numpy(d).double())
    np.testing.assert_allclose(diffs["data"], xt.grad.numpy(), rtol=1e-4, atol=1e-6)


SHARED = '''
force_backward: true
layer { name: "in" type: "Input" top: "x" top: "y" input_param { shape { dim: 2 dim: 5 } shape { dim: 2 dim: 3 } } }
layer { name: "h" type: "InnerProduct" bottom: "x" top: "h" inner_product_param { num_output: 4 weight_filler { type: "gaussian" } } }
layer { name: "a" type: "InnerProduct" bottom: "h" top: "a" inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }
layer { name: "b" type: "InnerProduct" bottom: "h" top: "b" inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }
layer { name: "s" type: "Eltwise" bottom: "a" bottom: "b" top: "s" }
layer { name: "loss" type: "EuclideanLoss" bottom: "s" bottom: "y" top: "loss" }
'''


def test_a_blob_read_twice_gets_the_summed_diff(caffe, tmp_path):
    net = caffe.Net(write(tmp_path, "shared.prototxt", SHARED), caffe.TRAIN)
    rng = np.random.RandomState(8)
    x, y = rng.randn(2, 5).astype(np.float32), rng.randn(2, 3).astype(np.float32)
    net.forward(x=x, y=y)
    net.backward()
    p = {k: [torch.from_numpy(b.data).double().requires_grad_() for b in v] for k, v in net.params.items()}
    xt = torch.from_numpy(x).double().requires_grad_()
    h = F.linear(xt, *p["h"])
    h.retain_grad()
    s = F.linear(h, *p["a"]) + F.linear(h, *p["b"])
    loss = ((s - torch.from_numpy(y).double()) ** 2).sum() / 2 / 2   # Caffe: sum of squares / (2N)
    loss.backward()
    np.testing.assert_allclose(net.blobs["loss"].data, loss.item(), rtol=1e-5)
    np.testing.assert_allclose(net.blobs["h"].diff, h.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(net.blobs["x"].diff, xt.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(net.blobs["y"].diff, -(s - torch.from_numpy(y).double()).detach().numpy() / 2,
                               rtol=1e-4, atol=1e-6)   # EuclideanLoss lets force_backward reach both bottoms
    np.testing.assert_allclose(net.params["h"][0].diff, p["h"][0].grad.numpy(), rtol=1e-4, atol=1e-6)


DROP = '''
force_backward: true
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 50 dim: 40 } } }
layer { name: "drop" type: "Dropout" bottom: "x" top: "y" dropout_param { dropout_ratio: 0.5 } }
'''


def test_backward_uses_the_mask_of_the_forward_pass(caffe, tmp_path):
    net = caffe.Net(write(tmp_path, "drop.prototxt", DROP), caffe.TRAIN)
    x = np.random.RandomState(9).rand(50, 40).astype(np.float32) + 0.5   # no zeros of its own
    y = net.forward(x=x)["y"].copy()
    assert 0.3 < (y == 0).mean() < 0.7
    dx = net.backward(y=np.ones_like(y))["x"]
    np.testing.assert_allclose(dx, (y != 0) * 2.0)


def test_forward_all_pads_the_last_batch(caffe, small_path):
    net = caffe.Net(str(small_path), caffe.TEST)
    rng = np.random.RandomState(10)
    x = rng.randn(10, 3, 9, 11).astype(np.float32)
    out = net.forward_all(data=x)
    runtime = RuntimeNet(str(small_path), "TEST", fill=False)
    for name, blobs in net.params.items():
        for p, b in zip(runtime.params[name], blobs):
            p.data.copy_(torch.from_numpy(b.data))
    expected = runtime(data=torch.from_numpy(x))["prob"].detach().numpy()
    assert out["prob"].shape == (10, 4) and not np.shares_memory(out["prob"], net.blobs["prob"].data)
    np.testing.assert_allclose(out["prob"], expected, rtol=1e-5, atol=1e-6)


def test_forward_backward_all(caffe, small_path):
    net = caffe.Net(str(small_path.parent / "small_fb.prototxt"), caffe.TEST)
    rng = np.random.RandomState(11)
    x, d = rng.randn(6, 3, 9, 11).astype(np.float32), rng.randn(6, 4).astype(np.float32)
    outs, diffs = net.forward_backward_all(data=x, prob=d)
    assert outs["prob"].shape == (6, 4) and diffs["data"].shape == (6, 3, 9, 11)
    xt = torch.from_numpy(x).double().requires_grad_()
    prob = twin(net, xt)[4]
    prob.backward(torch.from_numpy(d).double())
    np.testing.assert_allclose(outs["prob"], prob.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(diffs["data"], xt.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_unknown_names_list_what_exists(caffe, small_path):
    net = caffe.Net(str(small_path), caffe.TEST)
    with pytest.raises(CaffeError, match="no layer named 'fc9'; layers: data, conv1, relu1, pool1, fc, fc2, prob"):
        net.forward(start="fc9")
    with pytest.raises(CaffeError, match="no layer named 'nope'"):
        net.backward(end="nope")
    with pytest.raises(CaffeError, match="no blob named 'zz'; blobs: data, conv1, pool1"):
        net.forward(blobs=["zz"])
    with pytest.raises(CaffeError, match=r"backward\(diffs=...\): no blob named 'q'"):
        net.backward(diffs=["q"])


def test_callbacks_run_around_each_layer(caffe, small_path):
    net = caffe.Net(str(small_path.parent / "small_fb.prototxt"), caffe.TEST)
    seen = []
    net.before_forward(lambda i: seen.append(("bf", i)))
    net.after_forward(lambda i: seen.append(("af", i)))
    net.before_backward(lambda i: seen.append(("bb", i)))
    net.forward(start="fc", end="fc2")
    net.backward(start="fc2", end="fc")
    assert seen == [("bf", 4), ("af", 4), ("bf", 5), ("af", 5), ("bb", 5), ("bb", 4)]


def test_reshape_flows_from_the_input(caffe, small_path):
    net = caffe.Net(str(small_path), caffe.TEST)
    net.blobs["data"].reshape(2, 3, 9, 11)
    net.reshape()
    assert net.blobs["conv1"].shape == (2, 5, 9, 11) and net.blobs["prob"].shape == (2, 4)
    x = inputs(12, n=2)[0]
    out = net.forward(data=x)
    np.testing.assert_allclose(out["prob"], twin(net, torch.from_numpy(x).double())[4].detach().numpy(), rtol=1e-5, atol=1e-6)
    # without net.reshape() the new shape flows through the pass, as Caffe's Layer::Forward reshapes
    net.blobs["data"].reshape(3, 3, 9, 11)
    x3 = inputs(13, n=3)[0]
    net.blobs["data"].data[...] = x3
    np.testing.assert_allclose(net.forward()["prob"], twin(net, torch.from_numpy(x3).double())[4].detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    net.blobs["data"].reshape(2, 3, 12, 12)
    with pytest.raises(CaffeError, match="'fc'"):
        net.reshape()
