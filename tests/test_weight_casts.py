"""bf16 inference passes reuse their weight casts (vgg_caffe.weight_casts): outputs bitwise equal to
casting on every pass (autocast's own arithmetic), close to a float64 twin, remade whenever torch
sees the weights change (in-place writes, new tensors, weight files, solver steps), never used when
autograd records (gradients reach the float32 weights), and off for pycaffe nets."""
import torch
import torch.nn.functional as F

from vgg_caffe.net import Net

N, C, H, W = 3, 3, 10, 9

NET = f"""
name: "casts"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: {N} dim: {C} dim: {H} dim: {W} }} }} }}
layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param {{ num_output: 8 kernel_size: 3 pad: 1 weight_filler {{ type: "gaussian" std: 0.3 }}
                            bias_filler {{ type: "gaussian" std: 0.2 }} }} }}
layer {{ name: "relu" type: "ReLU" bottom: "conv" top: "conv" }}
layer {{ name: "up" type: "Deconvolution" bottom: "conv" top: "up"
        convolution_param {{ num_output: 4 kernel_size: 2 stride: 2 weight_filler {{ type: "gaussian" std: 0.3 }}
                            bias_filler {{ type: "gaussian" std: 0.2 }} }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "up" top: "fc"
        inner_product_param {{ num_output: 7 weight_filler {{ type: "gaussian" std: 0.05 }}
                               bias_filler {{ type: "gaussian" std: 0.2 }} }} }}
layer {{ name: "fct" type: "InnerProduct" bottom: "fc" top: "fct"
        inner_product_param {{ num_output: 5 transpose: true weight_filler {{ type: "gaussian" std: 0.3 }}
                               bias_filler {{ type: "gaussian" std: 0.2 }} }} }}
layer {{ name: "scale" type: "Scale" bottom: "fct" top: "out" scale_param {{ bias_term: true
        filler {{ type: "gaussian" std: 1 }} bias_filler {{ type: "gaussian" std: 1 }} }} }}
"""


def make(seed=3, **kw):
    net = Net(NET, seed=seed, precision="bf16", **kw)
    net.eval()
    return net


def x_in(seed=0):
    return torch.randn(N, C, H, W, generator=torch.Generator().manual_seed(seed))


def run(net, x, cached=True):
    net.weight_casts = cached
    with torch.no_grad():
        out = net(data=x)["out"].clone()
    net.weight_casts = True
    return out


def twin64(net, x):
    """The net in float64 with torch.nn.functional, from its weights."""
    p = {k: [b.detach().double() for b in v] for k, v in net.params.items()}
    y = F.relu(F.conv2d(x.double(), *p["conv"], padding=1))
    y = F.conv_transpose2d(y, *p["up"], stride=2)
    y = F.linear(y.flatten(1), *p["fc"])
    y = y @ p["fct"][0] + p["fct"][1]           # transpose: the weight is (K_in, N_out)
    return y * p["scale"][0] + p["scale"][1]


def test_cached_casts_are_autocasts_values():
    net, x = make(), x_in()
    first, second = run(net, x), run(net, x)
    uncached = run(net, x, cached=False)
    assert torch.equal(first, uncached) and torch.equal(second, uncached)
    # What is cast: every conv / deconv blob, both fc blobs, only the weight of the transposed fc.
    copies = net._weight_casts.copies
    cast = {id(b) for n in ("conv", "up", "fc") for b in net.params[n]} | {id(net.params["fct"][0])}
    assert set(copies) == cast
    assert all(t.dtype == torch.bfloat16 for _, t in copies.values())
    assert first.dtype == torch.float32      # an output: float32 as in every bf16 pass
    want = twin64(net, x)
    err = float((first.double() - want).norm() / want.norm())
    assert 1e-5 < err < 3e-2                 # bf16 arithmetic: neither float32 nor broken


def test_channels_last_weight_keeps_its_layout():
    net, x = make(), x_in(1)
    run(net, x)
    w = net.params["conv"][0]
    _, copy = net._weight_casts.copies[id(w)]
    assert w.is_contiguous(memory_format=torch.channels_last)
    assert copy.is_contiguous(memory_format=torch.channels_last) and torch.equal(copy, w.detach().bfloat16())


def test_changes_torch_sees_remake_the_copies(tmp_path):
    net, x = make(), x_in(2)
    before = run(net, x)
    with torch.no_grad():
        net.params["fc"][0].mul_(-1.5)                   # in place: the version counter moves
    changed = run(net, x)
    assert not torch.equal(changed, before) and torch.equal(changed, run(net, x, cached=False))
    net.params["conv"][0].data = net.params["conv"][0].detach() * 0.5   # a new tensor
    changed = run(net, x)
    assert torch.equal(changed, run(net, x, cached=False))
    other = make(seed=11)                                 # weights from a file, read via numpy
    path = str(tmp_path / "other.caffemodel")
    other.save(path)
    net.copy_from(path)
    assert torch.equal(run(net, x), run(other, x))
    net.fill(5)                                           # fillers
    assert torch.equal(run(net, x), run(net, x, cached=False))


def test_untracked_writes_need_forget():
    net, x = make(), x_in(3)
    before = run(net, x)
    net.params["fc"][0].data.mul_(0)                      # through .data: torch does not count it
    assert torch.equal(run(net, x), before)               # the documented limit
    net.forget_weight_casts()
    assert torch.equal(run(net, x), run(net, x, cached=False))
    assert not torch.equal(run(net, x), before)


def test_grad_passes_cast_every_time_and_reach_fp32_weights():
    net, x = make(), x_in(4)
    net.train()
    out = net(data=x)["out"]
    assert not net.__dict__.get("_weight_casts") or not net._weight_casts.copies
    out.float().square().sum().backward()
    for blobs in net.params.values():
        for b in blobs:
            assert b.dtype == torch.float32 and b.grad is not None and b.grad.dtype == torch.float32


def test_solver_steps_are_seen_by_its_test_net(tmp_path):
    # A training step changes the shared weights in place; the test net's next pass must use them.
    train, test = make(), make()
    test.share_trained_layers(train)
    x = x_in(5)
    before = run(test, x)
    with torch.no_grad():
        params = [b for v in train.params.values() for b in v]
        torch._foreach_sub_(params, [torch.full_like(p, 0.01) for p in params])   # the update's form
    after = run(test, x)
    assert not torch.equal(after, before) and torch.equal(after, run(test, x, cached=False))


def test_pycaffe_nets_cast_every_pass(tmp_path):
    from vgg_caffe import pycaffe

    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    net = pycaffe.Net(str(path), pycaffe.TEST)
    assert net.runtime.weight_casts is False


def test_layers_kept_in_float32_get_no_copies(monkeypatch):
    # A convolution marked fp32_only runs in an FP32 island: it must see its float32 weights.
    net, x = make(), x_in(6)
    monkeypatch.setattr(type(net.layer("conv")), "fp32_only", True, raising=False)
    net.__dict__.pop("_speed_state", None)
    got = run(net, x)
    assert id(net.params["conv"][0]) not in net._weight_casts.copies
    assert torch.equal(got, run(net, x, cached=False))
