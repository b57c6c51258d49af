"""Net behaviour: state filtering, in-place layers, loss weights, blob/param access, errors by
layer name, sample windows, and the result being an ordinary torch module (autograd training,
TorchScript, ONNX)."""
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net
from vgg_caffe.rng import SampleWindow

SMALL = '''
name: "small"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 4 dim: 3 dim: 9 dim: 11 } shape { dim: 4 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 5 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 }
                            bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc"
        inner_product_param { num_output: 6 weight_filler { type: "xavier" } } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" dropout_param { dropout_ratio: 0.5 } }
layer { name: "fc2" type: "InnerProduct" bottom: "fc" top: "fc2"
        inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc2" bottom: "label" top: "loss" include { phase: TRAIN } }
layer { name: "prob" type: "Softmax" bottom: "fc2" top: "prob" include { phase: TEST } }
layer { name: "acc" type: "Accuracy" bottom: "fc2" bottom: "label" top: "acc" include { phase: TEST } }
'''


def twin(net, x, label=None, drop_mask=None):
    """The same computation written by hand with torch.nn.functional and the net's weights."""
    w = net.params
    y = F.relu(F.conv2d(x, w["conv1"][0], w["conv1"][1], padding=1))
    y = F.max_pool2d(y, 2, 2, ceil_mode=True)
    y = F.linear(y.flatten(1), *w["fc"])
    if drop_mask is not None:
        y = y * drop_mask
    y = F.linear(y, *w["fc2"])
    return y if label is None else F.cross_entropy(y, label.long())


def _inputs(seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 9, 11, generator=g), torch.randint(0, 4, (n,), generator=g).float()


def test_phase_filtering_outputs_and_access():
    train, test = Net(SMALL, "TRAIN").fill(0), Net(SMALL, "TEST").fill(0)
    assert "loss" in train.layer_names and "prob" not in train.layer_names
    assert "prob" in test.layer_names and "loss" not in test.layer_names
    assert train.output_names == ["loss"] and test.output_names == ["acc", "prob"]  # by name, as Caffe
    assert train.training and not test.training
    assert list(test.params) == ["conv1", "fc", "fc2"]
    assert [tuple(b.shape) for b in test.params["fc"]] == [(6, 5 * 5 * 6), (6,)]
    assert test.blob_shapes["pool1"] == (4, 5, 5, 6)  # ceil pooling: 9 -> 5, 11 -> 6
    assert torch.all(test.params["conv1"][1] == 0.1)
    x, label = _inputs()
    out = test(data=x, label=label)
    torch.testing.assert_close(out["prob"], torch.softmax(twin(test, x), 1))
    assert float(out["acc"]) == pytest.approx(float((twin(test, x).argmax(1) == label).float().mean()))
    # In place: "conv1" holds the ReLU's output, as in Caffe.
    assert torch.all(test.blobs["conv1"] >= 0)
    assert set(test.blobs) >= {"data", "label", "conv1", "pool1", "fc", "fc2", "prob", "acc"}


def test_stage_and_level_rules():
    text = '''
    layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }
    layer { name: "a" type: "ReLU" bottom: "x" top: "a" include { stage: "deploy" } }
    layer { name: "b" type: "ReLU" bottom: "x" top: "b" exclude { stage: "deploy" } }
    layer { name: "c" type: "ReLU" bottom: "x" top: "c" include { min_level: 2 } }
    layer { name: "d" type: "ReLU" bottom: "x" top: "d" include { phase: TEST not_stage: "quick" } }
    '''
    assert Net(text).layer_names == ["data", "b", "d"]
    assert Net(text, stages=["deploy"]).layer_names == ["data", "a", "d"]
    assert Net(text, level=2, stages=["quick"]).layer_names == ["data", "b", "c"]
    assert Net(text, "TRAIN").layer_names == ["data", "b"]


def test_loss_weights_and_backward_match_twin():
    net = Net(SMALL, "TRAIN").fill(1)
    net.eval()  # dropout off so the twin needs no mask
    x, label = _inputs(1)
    net(data=x, label=label)
    loss = net.backward()
    ref = twin(net, x, label)
    torch.testing.assert_close(loss, ref)
    grads = torch.autograd.grad(ref, [b for blobs in net.params.values() for b in blobs])
    for g, b in zip(grads, [b for blobs in net.params.values() for b in blobs]):
        torch.testing.assert_close(b.grad, g)
    # loss_weight scales the objective; a non-loss top with a loss_weight joins it.
    weighted = SMALL.replace('top: "loss" include', 'top: "loss" loss_weight: 0.5 include')
    weighted = weighted.replace('top: "fc2"\n', 'top: "fc2" loss_weight: 0.25\n', 1)
    net2 = Net(weighted, "TRAIN").fill(1).eval()
    net2(data=x, label=label)
    assert net2.loss_weights == {"fc2": 0.25, "loss": 0.5}
    torch.testing.assert_close(net2.loss, 0.5 * ref + 0.25 * twin(net2, x).sum())


def test_training_step_with_autograd_lowers_loss():
    net = Net(SMALL, "TRAIN").fill(2).eval()
    x, label = _inputs(2, n=8)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        net(data=x, label=label)
        losses.append(net.backward().item())
        opt.step()
    assert losses[-1] < losses[0]


def test_sample_window_dropout_one_vs_two_processes():
    x, label = _inputs(3, n=8)
    whole = Net(SMALL, "TRAIN").fill(4)
    whole.set_sample_window(SampleWindow(seed=5, iteration=2, start=0, stop=8, total=8))
    full = whole(data=x, label=label)
    whole_fc2 = whole.blobs["fc2"]
    halves = []
    for start, stop in ((0, 4), (4, 8)):
        part = Net(SMALL, "TRAIN", input_shapes={"data": (4, 3, 9, 11), "label": (4,)}).fill(4)
        part.set_sample_window(SampleWindow(seed=5, iteration=2, start=start, stop=stop, total=8))
        part(data=x[start:stop], label=label[start:stop])
        halves.append(part.blobs["fc2"])
    torch.testing.assert_close(torch.cat(halves), whole_fc2)
    # and the masks really drop units: different from the net without dropout.
    assert not torch.allclose(whole_fc2, twin(whole, x))
    assert torch.isfinite(full["loss"])


def test_to_module_scripts_and_exports_to_onnx():
    net = Net(SMALL, "TEST").fill(3)
    x, label = _inputs(4)
    module = net.to_module(["prob"])
    want = net(data=x, label=label)["prob"]
    scripted = torch.jit.script(module)
    torch.testing.assert_close(scripted(x, label), want)
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator
    buf = io.BytesIO()
    torch.onnx.export(module, (x, label), buf, dynamo=False, input_names=["data", "label"], output_names=["prob"])
    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    got = ReferenceEvaluator(model).run(None, {"data": x.numpy(), "label": label.numpy()})[0]
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-4, atol=1e-6)


def test_v1_prototxt_runs():
    v1 = '''
    name: "old"
    input: "data"
    input_dim: 1 input_dim: 2 input_dim: 5 input_dim: 5
    layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv" blobs_lr: 1 blobs_lr: 2
             convolution_param { num_output: 3 kernel_size: 3 } }
    layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
    layers { name: "pool" type: POOLING bottom: "conv" top: "pool" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
    layers { name: "prob" type: SOFTMAX bottom: "pool" top: "prob" }
    '''
    net = Net(v1)
    assert net.layer_names == ["input", "conv", "relu", "pool", "prob"] or net.layer_names[1:] == \
        ["conv", "relu", "pool", "prob"]
    assert net.blob_shapes["prob"] == (1, 3, 2, 2)
    assert net(data=torch.randn(1, 2, 5, 5))["prob"].sum().item() == pytest.approx(4.0)


# -- errors name the file and the layer --------------------------------------------------------

def test_unknown_type_names_layer_and_known_types():
    with pytest.raises(CaffeError, match=r"layer 'mystery': unknown layer type 'Mystery'; known types: .*Pooling"):
        Net('layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n'
            'layer { name: "mystery" type: "Mystery" bottom: "x" top: "y" }')


def test_bottom_without_earlier_top():
    with pytest.raises(CaffeError, match=r"layer 'relu' \(ReLU\): bottom 'nope' is not the top of any earlier layer"):
        Net('layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n'
            'layer { name: "relu" type: "ReLU" bottom: "nope" top: "y" }')


def test_wrong_arity_and_bad_in_place():
    head = 'layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
    with pytest.raises(CaffeError, match=r"layer 'loss' \(SoftmaxWithLoss\) takes exactly 2 bottom"):
        Net(head + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" top: "l" }')
    with pytest.raises(CaffeError, match=r"layer 'r' \(ReLU\) takes exactly 1 top"):
        Net(head + 'layer { name: "r" type: "ReLU" bottom: "x" top: "a" top: "b" }')
    with pytest.raises(CaffeError, match=r"layer 'p' \(Softmax\) cannot run in place"):
        Net(head + 'layer { name: "p" type: "Softmax" bottom: "x" top: "x" }')


def test_fc6_shape_mismatch_at_build_and_forward(tmp_path):
    path = tmp_path / "vgg_tiny.prototxt"
    path.write_text('''
    name: "tiny"
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 224 dim: 224 } } }
    layer { name: "pool5" type: "Pooling" bottom: "data" top: "pool5" pooling_param { kernel_size: 32 stride: 32 } }
    layer { name: "fc6" type: "InnerProduct" bottom: "pool5" top: "fc6" inner_product_param { num_output: 2 } }
    ''')
    with pytest.raises(CaffeError, match=r"vgg_tiny.prototxt: layer 'fc6' \(InnerProduct\): expects 147 inputs.*"
                                         r"\(1, 3, 8, 8\)"):
        Net(str(path), input_shapes={"data": (1, 3, 250, 250)})
    net = Net(str(path))
    assert net(data=torch.zeros(2, 3, 224, 224))["fc6"].shape == (2, 2)  # batch size may change
    with pytest.raises(CaffeError, match=r"vgg_tiny.prototxt: layer 'fc6'"):
        net(data=torch.zeros(1, 3, 250, 250))
    with pytest.raises(CaffeError, match=r"vgg_tiny.prototxt: layer 'fc6'"):
        net.reshape({"data": (1, 3, 250, 250)})


def test_channels_last_option_same_values():
    net = Net(SMALL, "TEST").fill(5)
    x, label = _inputs(5)
    want = net(data=x, label=label)["prob"]
    net.channels_last = True
    got = net(data=x, label=label)["prob"]
    assert net.blobs["conv1"].is_contiguous(memory_format=torch.channels_last)
    assert net.blobs["conv1"].shape == (4, 5, 9, 11)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_forward_backward_matches_cpu():
    cpu = Net(SMALL, "TRAIN").fill(6).eval()
    gpu = Net(SMALL, "TRAIN").fill(6).eval().to("cuda")
    x, label = _inputs(6)
    cpu(data=x, label=label)
    gpu(data=x, label=label)
    torch.testing.assert_close(gpu.backward().cpu(), cpu.backward(), rtol=1e-4, atol=1e-5)
    for a, b in zip(gpu.parameters(), cpu.parameters()):
        torch.testing.assert_close(a.grad.cpu(), b.grad, rtol=1e-3, atol=1e-5)


# -- initialisation at build time, as Caffe's Net::Init -----------------------------------------

_FILLED = """
input: "data" input_dim: 2 input_dim: 3 input_dim: 16 input_dim: 16
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 64 kernel_size: 3
    weight_filler { type: "gaussian" std: 0.05 } bias_filler { type: "constant" value: 0.25 } } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
  inner_product_param { num_output: 10 weight_filler { type: "uniform" min: -0.5 max: 0.5 } } }
"""


def test_net_is_filled_from_its_fillers_when_built():
    net = Net(_FILLED, seed=7)
    w, b = net.params["conv"]
    # 64*3*3*3 = 1728 draws of N(0, 0.05): the sample std is within a few percent of 0.05.
    assert abs(w.std().item() - 0.05) < 0.005 and abs(w.mean().item()) < 0.005
    assert torch.all(b == 0.25)
    fc = net.params["fc"][0]
    assert fc.min().item() >= -0.5 and fc.max().item() <= 0.5 and fc.std().item() > 0.25
    # Caffe's default bias filler is constant 0.
    assert torch.all(net.params["fc"][1] == 0)
    # The same seed gives the same weights; fill=False leaves zeros.
    assert torch.equal(Net(_FILLED, seed=7).params["conv"][0], w)
    assert not torch.equal(Net(_FILLED, seed=8).params["conv"][0], w)
    assert torch.count_nonzero(Net(_FILLED, fill=False).params["conv"][0]) == 0


def test_caffemodel_given_as_the_model_brings_its_blobs(tmp_path):
    # A caffemodel holds the whole net definition and its blobs; Caffe's layers take stored blobs
    # over their fillers. The blobs here are written with protobuf directly (independent writer).
    from vgg_caffe.proto import parse_text, pb

    param = parse_text(_FILLED, pb.NetParameter())
    values = {}
    for layer in param.layer:
        shapes = {"conv": [(64, 3, 3, 3), (64,)], "fc": [(10, 64 * 14 * 14), (10,)]}[layer.name]
        for i, shape in enumerate(shapes):
            data = np.random.default_rng(i).standard_normal(shape).astype(np.float32)
            values[(layer.name, i)] = data
            blob = layer.blobs.add()
            blob.shape.dim.extend(shape)
            blob.data.extend(data.ravel().tolist())
    path = tmp_path / "model.caffemodel"
    path.write_bytes(param.SerializeToString())
    net = Net(str(path), seed=1)
    for (name, i), data in values.items():
        np.testing.assert_array_equal(net.params[name][i].detach().numpy(), data)
