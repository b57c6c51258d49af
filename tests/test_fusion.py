"""vgg_caffe.fusion: in bf16 passes without autograd on a CPU, a convolution and the in-place ReLU
after it run as one oneDNN call. Checked against a hand-written torch twin (nn.Conv2d, nn.ReLU,
nn.MaxPool2d in channels-last under torch.autocast): every blob bitwise equal, while the fused op
is seen to run. In fp32 nets, for strided convolutions, where Caffe's semantics need the
convolution's own output (not in place, a leaky ReLU), in training passes and with
net.fuse_conv_relu = False, the fused op must not run."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vgg_caffe import fusion
from vgg_caffe.net import Net

pytestmark = pytest.mark.skipif(not fusion.available("cpu"),
                                reason="this torch build or CPU has no oneDNN bf16 fused convolution")


def conv(name, bottom, top, out, kernel=3, pad=1, stride=1):
    return f"""
layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}"
        convolution_param {{ num_output: {out} kernel_size: {kernel} pad: {pad} stride: {stride}
                             weight_filler {{ type: "gaussian" std: 0.2 }}
                             bias_filler {{ type: "gaussian" std: 0.5 }} }} }}"""


def relu(name, bottom, top, slope=0.0):
    param = f" relu_param {{ negative_slope: {slope} }}" if slope else ""
    return f'\nlayer {{ name: "{name}" type: "ReLU" bottom: "{bottom}" top: "{top}"{param} }}'


def data(shape):
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}'


VGG_LIKE = (conv("conv1", "data", "conv1", 8) + relu("relu1", "conv1", "conv1")
            + '\nlayer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" '
              'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }'
            + conv("conv2", "pool1", "conv2", 16) + relu("relu2", "conv2", "conv2")
            + conv("conv3", "conv2", "conv3", 16, kernel=1, pad=0) + relu("relu3", "conv3", "conv3"))


@pytest.fixture
def calls(monkeypatch):
    """The shapes of the bottoms the fused op was called with."""
    seen = []
    real = fusion._OP

    def counting(x, *args):
        seen.append(tuple(x.shape))
        return real(x, *args)
    monkeypatch.setattr(fusion, "_OP", counting)
    return seen


def twin_of(net):
    """nn.Sequential computing VGG_LIKE with the net's weights, channels-last."""
    mods = []
    for name in ("conv1", "conv2", "conv3"):
        w, b = net.params[name]
        m = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=w.shape[2] // 2)
        with torch.no_grad():
            m.weight.copy_(w)
            m.bias.copy_(b)
        mods += [m, nn.ReLU(inplace=True)] + ([nn.MaxPool2d(2, 2, ceil_mode=True)] if name == "conv1" else [])
    return nn.Sequential(*mods).to(memory_format=torch.channels_last)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_blobs_are_bitwise_the_twins(precision, threads, calls):
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        shape = (4, 3, 20, 20)
        net = Net(data(shape) + VGG_LIKE, seed=1, precision=precision)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(2)) * 40
        twin = twin_of(net)
        with torch.no_grad():
            net(data=x)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                h = x.contiguous(memory_format=torch.channels_last)
                want = {}
                for name, mods in (("conv1", twin[:2]), ("pool1", twin[2:3]), ("conv2", twin[3:5]), ("conv3", twin[5:7])):
                    h = mods(h)
                    want[name] = h
        for name, value in want.items():
            value = value.float() if name in net.output_names else value   # outputs come back float32
            assert net.blobs[name].dtype == value.dtype
            assert torch.equal(net.blobs[name], value), name
        assert len(calls) == (3 if precision == "bf16" else 0)   # fp32 keeps its two calls
    finally:
        torch.set_num_threads(saved)


def test_caffe_semantics_that_need_the_convolution_output_are_kept(calls):
    shape = (4, 3, 12, 12)
    text = (data(shape) + conv("a", "data", "a", 8) + relu("ra", "a", "ra_top")   # not in place
            + conv("b", "data", "b", 8) + relu("rb", "b", "b", slope=0.1)          # leaky
            + conv("c", "data", "c", 8, stride=2) + relu("rc", "c", "c"))          # strided
    net = Net(text, seed=5, precision="bf16")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(6)).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        net(data=x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pre = {n: F.conv2d(x, *net.params[n], stride=s, padding=1) for n, s in (("a", 1), ("b", 1), ("c", 2))}
    assert calls == []
    assert (net.blobs["a"] < 0).any() and torch.equal(net.blobs["a"].float(), pre["a"].float())
    assert torch.equal(net.blobs["ra_top"], pre["a"].relu().float())
    assert torch.equal(net.blobs["b"], F.leaky_relu(pre["b"], 0.1).float())
    assert torch.equal(net.blobs["c"], pre["c"].relu().float())


def test_training_passes_and_the_switch_run_unfused(calls):
    shape = (4, 3, 16, 16)
    net = Net(data(shape) + VGG_LIKE, seed=7, precision="bf16")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(8))
    net(data=x)["conv3"].float().sum().backward()     # grad enabled: autograd needs the two layers
    assert calls == [] and net.params["conv1"][0].grad is not None
    with torch.no_grad():
        fused = net(data=x)["conv3"].clone()
        assert len(calls) == 3
        net.fuse_conv_relu = False
        plain = net(data=x)["conv3"]
    assert len(calls) == 3 and torch.equal(fused, plain)


def test_the_fused_graph_in_a_training_pass_runs_the_two_layers(calls):
    # A compiled net falls back to the fused graph for every pass (vgg_caffe.precision.runner),
    # training ones too: there it must run the layers autograd can differentiate.
    from vgg_caffe import precision

    shape = (4, 3, 16, 16)
    net = Net(data(shape) + VGG_LIKE, seed=9, precision="bf16")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(10)).contiguous(memory_format=torch.channels_last)
    fused = precision.rebuilt(net.graph_module, "cpu", None, True)
    assert sum(isinstance(m, fusion.FusedConvReLU) for m in fused.modules()) == 3
    grads = []
    for module in (fused, net.graph_module):
        net.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            top = module(x)["conv3"]
        top.float().sum().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    assert calls == []
    assert all(torch.equal(a, b) for a, b in zip(*grads))
