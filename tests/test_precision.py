"""The speed options of vgg_caffe.precision: bf16 / tf32 / fp32 against a float64 twin written
with torch.nn.functional, float32 losses and probabilities under bf16, the channels-last default
against an NCHW run, the torch.compile fallback, and the solver's float32 master weights and
history under bf16 (its update checked against Caffe's formula written out here)."""
import math
import time

import pytest
import torch
import torch.nn.functional as F

from vgg_caffe import compiled as compiled_mod, precision as speed
from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net
from vgg_caffe.proto import parse_text, pb
from vgg_caffe.train.log import TrainingLog
from vgg_caffe.train.solver import Solver

N, C, H, W, K = 4, 3, 12, 10, 5

LAYERS = f"""
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param {{ num_output: 16 kernel_size: 3 pad: 1 weight_filler {{ type: "gaussian" std: 0.2 }}
                            bias_filler {{ type: "constant" value: 0.05 }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc"
        inner_product_param {{ num_output: {K} weight_filler {{ type: "xavier" }} }} }}
"""
NET = f"""
name: "speed"
layer {{ name: "data" type: "Input" top: "data" top: "label"
        input_param {{ shape {{ dim: {N} dim: {C} dim: {H} dim: {W} }} shape {{ dim: {N} }} }} }}
{LAYERS}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" include {{ phase: TRAIN }} }}
layer {{ name: "prob" type: "Softmax" bottom: "fc" top: "prob" include {{ phase: TEST }} }}
layer {{ name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc" include {{ phase: TEST }} }}
"""


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, C, H, W, generator=g) * 2, torch.randint(0, K, (N,), generator=g).float()


def twin_logits(net, x):
    """conv -> relu -> max pool -> inner product in float64, from the net's weights."""
    w = {k: [b.detach().double() for b in v] for k, v in net.params.items()}
    y = F.relu(F.conv2d(x.double(), *w["conv1"], padding=1))
    y = F.max_pool2d(y, 2, 2, ceil_mode=True)
    return F.linear(y.flatten(1), *w["fc"])


@pytest.fixture(autouse=True)
def restore_defaults():
    saved = speed.defaults()
    yield
    speed.set_defaults(**saved)


def test_modes_against_float64_twin():
    net = Net(NET, "TEST", seed=1)
    x, label = inputs()
    ref = twin_logits(net, x)
    scale = float(ref.abs().max())
    assert net.precision == "fp32"
    net(data=x, label=label)
    fp32 = net.blobs["fc"].clone()
    torch.testing.assert_close(fp32.double(), ref, rtol=0, atol=1e-5 * scale)
    net.precision = "tf32"           # no TF32 on a CPU: exactly the float32 computation
    net(data=x, label=label)
    assert torch.equal(net.blobs["fc"], fp32)
    net.precision = "bf16"
    with torch.no_grad():            # inference: the inner product in bfloat16 too
        out = net(data=x, label=label)
    bf16 = net.blobs["fc"]
    assert bf16.dtype == torch.bfloat16 and net.blobs["conv1"].dtype == torch.bfloat16
    # Stated tolerance: bfloat16 operands (8-bit mantissa, relative rounding 2^-9 each) with
    # float32 accumulation and a bfloat16 result: within 2% of the largest logit.
    err = float((bf16.detach().double() - ref).abs().max())
    assert 1e-4 * scale < err <= 2e-2 * scale   # really rounded, and within the tolerance
    assert out["prob"].dtype == torch.float32 and out["acc"].dtype == torch.float32
    # A pass that builds a graph computes the N=4-row inner product in float32 from the
    # bfloat16 pooled map (vgg_caffe.islands): F.linear of exactly that bottom, in float32.
    net(data=x, label=label)
    pooled = net.blobs["pool1"]
    assert pooled.dtype == torch.bfloat16 and net.blobs["fc"].dtype == torch.float32
    assert torch.equal(net.blobs["fc"], F.linear(pooled.float().flatten(1), *net.params["fc"]))
    err = float((net.blobs["fc"].detach().double() - ref).abs().max())
    assert 1e-4 * scale < err <= 2e-2 * scale   # the convolution's rounding, carried on
    torch.testing.assert_close(out["prob"].double(), torch.softmax(ref, 1), rtol=0, atol=2e-2)
    with pytest.raises(CaffeError, match=r"unknown precision 'fp16'; allowed: fp32, tf32, bf16"):
        net.precision = "fp16"
    with pytest.raises(CaffeError, match="unknown precision"):
        Net(NET, "TEST", precision="half")


def test_losses_softmax_accuracy_stay_fp32_under_bf16(monkeypatch):
    seen = {}

    def record(name):
        def hook(module, args):
            flat = [a for arg in args for a in (arg if isinstance(arg, list) else [arg])]
            seen[name] = (torch.is_autocast_enabled("cpu"), [a.dtype for a in flat])
        return hook

    from vgg_caffe.layers.relu import ReLU
    monkeypatch.setattr(ReLU, "fp32_only", True)   # any layer class may ask for float32
    train = Net(NET, "TRAIN", seed=2, precision="bf16")
    test = Net(NET, "TEST", seed=2, precision="bf16")
    for net in (train, test):
        for name in net.layer_names[1:]:
            net.layer(name).register_forward_pre_hook(record(name))
    x, label = inputs(1)
    train(data=x, label=label)
    assert seen["conv1"][0]                                          # autocast over the graph
    assert seen["loss"] == (False, [torch.float32, torch.float32])   # outside it, float32 bottoms
    assert seen["relu1"] == (False, [torch.float32])
    assert seen["fc"] == (False, [torch.float32])                    # a few-row product (islands)
    assert train.blobs["fc"].dtype == torch.float32 and train.blobs["loss"].dtype == torch.float32
    # The loss is the float32 softmax loss of the logits: -mean log p[label].
    logits = train.blobs["fc"].double()
    want = -torch.log_softmax(logits, 1).gather(1, label.long()[:, None]).mean()
    assert abs(train.loss.item() - want.item()) < 1e-6
    train.backward()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in train.parameters())
    with torch.no_grad():
        out = test(data=x, label=label)
    assert seen["fc"][0] and test.blobs["fc"].dtype == torch.bfloat16
    assert seen["prob"] == (False, [torch.float32]) and seen["acc"][0] is False
    assert torch.equal(out["prob"], torch.softmax(test.blobs["fc"].float(), 1))
    hits = (test.blobs["fc"].float().argmax(1) == label.long()).float().mean()
    assert out["acc"].dtype == torch.float32 and out["acc"].item() == pytest.approx(hits.item())


def test_channels_last_default_is_a_memory_format_only(tmp_path):
    net = Net(NET, "TRAIN", seed=3)
    assert net.channels_last == "auto" and speed.uses_channels_last(net)
    x, label = inputs(2)
    net.train(False)                 # no dropout here anyway; TRAIN keeps the loss
    net(data=x, label=label)
    cl = {k: v.detach().clone() for k, v in net.blobs.items()}
    assert net.blobs["conv1"].is_contiguous(memory_format=torch.channels_last)
    assert net.blobs["conv1"].shape == (N, 16, H, W) and net.blobs["pool1"].shape == (N, 16, H // 2, W // 2)
    loss = net.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    # The convolution weight is stored channels-last too (its logical shape Caffe's), its .grad alike.
    w = net.params["conv1"][0]
    assert w.shape == (16, C, 3, 3) and w.is_contiguous(memory_format=torch.channels_last)
    assert w.grad.shape == w.shape and not w.is_contiguous()
    assert all(p.is_contiguous() for n, p in net.named_parameters() if p is not w)
    net.zero_grad(set_to_none=True)
    net.channels_last = False
    net(data=x, label=label)
    assert net.blobs["conv1"].is_contiguous() and w.is_contiguous()
    for k, v in net.blobs.items():
        torch.testing.assert_close(cl[k], v.detach(), rtol=1e-5, atol=1e-6)
    assert abs(net.backward().item() - loss.item()) < 1e-6
    for n, p in net.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-6)
    # Weight I/O keeps Caffe's layout: a round trip through a .caffemodel or .h5 is exact, from
    # channels-last weights into a fresh net, and into channels-last weights.
    net.channels_last = "auto"
    net(data=x, label=label)
    assert w.is_contiguous(memory_format=torch.channels_last)
    for name in ("w.caffemodel", "w.h5"):
        net.save(str(tmp_path / name))
        back = Net(NET, "TRAIN", fill=False, weights=str(tmp_path / name))
        for a, b in zip(net.parameters(), back.parameters()):
            assert torch.equal(a, b) and b.is_contiguous()
        back(data=x, label=label)
        back.copy_from(str(tmp_path / name))
        assert back.params["conv1"][0].is_contiguous(memory_format=torch.channels_last)
        assert all(torch.equal(a, b) for a, b in zip(net.parameters(), back.parameters()))
    # A net without a convolution keeps its inputs as they come.
    fc_only = Net(NET.replace(LAYERS, f"""
        layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param {{ num_output: {K} }} }}"""),
        "TEST")
    assert not speed.uses_channels_last(fc_only)
    fc_only(data=x.contiguous(memory_format=torch.channels_last), label=label)
    assert fc_only.blobs["data"].is_contiguous()
    with pytest.raises(CaffeError, match="channels_last: 'yes'; allowed: 'auto', True, False"):
        Net(NET, "TEST", channels_last="yes")


def test_compile_falls_back_with_one_line_notice(monkeypatch, capsys):
    x, label = inputs(3)
    eager = Net(NET, "TRAIN", seed=4)
    want = eager(data=x, label=label)["loss"]

    def refuse(*a, **k):
        raise RuntimeError("compiler backend missing\nsecond line of the traceback")

    monkeypatch.setattr(compiled_mod, "compiler_unavailable", lambda: None)
    monkeypatch.setattr(torch, "compile", refuse)
    net = Net(NET, "TRAIN", seed=4, torch_compile=True)
    for _ in range(2):
        assert torch.equal(net(data=x, label=label)["loss"], want)
    net.backward()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torch.compile unavailable (torch.compile raised RuntimeError: compiler " \
                              "backend missing); running uncompiled" in err[0]

    # Compiling lazily, on the first call, and failing there.
    def fails_on_call(module, **k):
        def call(*a):
            raise RuntimeError("inductor: C++ compile failed")
        return call

    monkeypatch.setattr(torch, "compile", fails_on_call)
    net = Net(NET, "TRAIN", seed=4, torch_compile=True)
    assert torch.equal(net(data=x, label=label)["loss"], want)
    assert torch.equal(net(data=x, label=label)["loss"], want)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RuntimeError when compiling: inductor: C++ compile failed" in err[0]

    # No C++ compiler: torch.compile is not even tried.
    monkeypatch.setattr(compiled_mod, "compiler_unavailable", lambda: "no C++ compiler (g++, c++ or clang++) on PATH")
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("torch.compile called"))
    speed.set_defaults(torch_compile=True)   # what --compile does: every net follows
    net = Net(NET, "TRAIN", seed=4)
    assert net.torch_compile is True
    assert torch.equal(net(data=x, label=label)["loss"], want)
    assert "no C++ compiler (g++, c++ or clang++) on PATH" in capsys.readouterr().err


class SlowBackward(torch.autograd.Function):
    """Identity whose backward takes `delay` seconds (a compiled backward slower than eager's)."""

    @staticmethod
    def forward(ctx, x, delay):
        ctx.delay = delay
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        time.sleep(ctx.delay)
        return g, None


def fake_compiler(forward_delay=0.0, backward_delay=0.0, calls=None):
    """A torch.compile stand-in: the module itself, slowed in its forward and/or backward."""
    def compile_(module, **kw):
        def run(*feeds):
            if calls is not None:
                calls.append("compiled")
            time.sleep(forward_delay)
            blobs = module(*feeds)
            if backward_delay and torch.is_grad_enabled():
                blobs = {k: SlowBackward.apply(v, backward_delay) if v.requires_grad else v for k, v in blobs.items()}
            return blobs
        return run
    return compile_


def test_compile_trial_keeps_compiled_only_by_a_margin():
    def decide(eager, compiled):
        trial = compiled_mod.Trial()
        trial.times = {"eager": list(eager), "compiled": list(compiled)}
        way, decided = trial.next_way()
        assert decided and way == trial.choice
        return trial.choice

    n = compiled_mod.TRIAL
    assert compiled_mod.KEEP_MARGIN == 0.03
    assert decide([1.0] * n, [0.99] * n) == "eager"        # 1 % ahead: within the noise
    assert decide([1.0] * n, [0.975] * n) == "eager"       # 2.5 %
    assert decide([1.0] * n, [0.96] * n) == "compiled"     # 4 %
    assert decide([1.2, 1.0, 1.1], [0.9, 1.3, 1.3]) == "compiled"   # by the best times
    assert decide([0.5] * n, [0.6] * n) == "eager"
    unfinished = compiled_mod.Trial()
    unfinished.times = {"eager": [1.0] * n, "compiled": [0.5] * (n - 1)}
    assert unfinished.next_way() == ("compiled", False) and unfinished.choice is None


def test_compile_trial_keeps_the_faster_way(monkeypatch, capsys):
    x, label = inputs(5)
    monkeypatch.setattr(compiled_mod, "compiler_unavailable", lambda: None)
    trials = 2 * compiled_mod.TRIAL

    # A compiled inference pass slower than eager: after the trial, eager from then on.
    calls = []
    monkeypatch.setattr(torch, "compile", fake_compiler(forward_delay=0.05, calls=calls))
    net = Net(NET, seed=4, torch_compile=True)
    with torch.no_grad():
        for _ in range(1 + trials + 3):
            net(data=x, label=label)
    assert len(calls) == 1 + compiled_mod.TRIAL          # the compiling call and its trial passes
    assert list(speed.compile_choices(net).values()) == [{"inference": "eager"}]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the compiled inference pass took" in err[0] and "running it uncompiled" in err[0]

    # A fast forward but a slow backward: the training trial times forward + backward.
    calls = []
    monkeypatch.setattr(torch, "compile", fake_compiler(backward_delay=0.05, calls=calls))
    net = Net(NET, "TRAIN", seed=4, torch_compile=True)
    for _ in range(1 + trials + 3):
        net(data=x, label=label)
        net.backward()
    assert list(speed.compile_choices(net).values()) == [{"train": "eager"}]
    assert len(calls) == 1 + compiled_mod.TRIAL
    assert "the compiled training pass (forward + backward) took" in capsys.readouterr().err

    # Compiled faster (the eager graph slowed instead): kept, silently.
    monkeypatch.setattr(torch, "compile", fake_compiler())
    net = Net(NET, seed=4, torch_compile=True)
    with torch.no_grad():
        net(data=x, label=label)                          # compiles
        runner = next(iter(net._speed_state["runners"].values()))
        eager = runner.eager

        def slowed(*feeds):
            time.sleep(0.05)
            return eager(*feeds)
        runner.eager = slowed
        for _ in range(trials + 2):
            net(data=x, label=label)
    assert list(speed.compile_choices(net).values()) == [{"inference": "compiled"}]
    assert capsys.readouterr().err == ""


# -- the solver -------------------------------------------------------------------------------

def solver_param():
    return parse_text(f"""
        net_param {{ {NET} }}
        base_lr: 0.1 lr_policy: "fixed" momentum: 0.9 weight_decay: 0.01
        max_iter: 2 display: 0 snapshot_after_train: false random_seed: 5 solver_mode: CPU
    """, pb.SolverParameter())


def feed(index, start, stop):
    x, label = inputs(10 + index)
    return {"data": x[start:stop], "label": label[start:stop]}


def test_solver_bf16_keeps_fp32_master_weights_and_history():
    speed.set_defaults(precision="bf16")            # as `solve --precision bf16`
    solver = Solver(solver_param(), log=TrainingLog(enabled=False), train_feed=feed)
    probe = Net(NET, "TRAIN", seed=solver.seed)     # the same weights: gradients by hand
    assert solver.net.precision == "bf16"
    for it in range(2):
        # Caffe's SGD written out in float64 from the solver's own weights and history:
        # v = m v + lr (g + wd w); w -= v, with g the gradient of a bf16 pass at those weights.
        w = [p.detach().double() for p in solver.params]
        v = [h.double() for h in solver.history]
        probe.zero_grad(set_to_none=True)
        with torch.no_grad():
            for p, q in zip(probe.parameters(), solver.params):
                p.copy_(q)
        probe(**feed(it, 0, N))
        assert probe.blobs["conv1"].dtype == torch.bfloat16
        probe.backward()
        g = [p.grad.double() for p in probe.parameters()]
        v = [0.9 * vk + 0.1 * (gk + 0.01 * wk) for vk, gk, wk in zip(v, g, w)]
        w = [wk - vk for wk, vk in zip(w, v)]
        solver.step(1)
        for p, h, wk, vk in zip(solver.params, solver.history, w, v):
            assert p.dtype == torch.float32 and h.dtype == torch.float32
            assert h.is_contiguous()      # the solverstate's layout, whatever the weight's memory format
            # float32 arithmetic: within a few float32 ulps (a bfloat16 step would be off by
            # ~4e-3 of the step, 1e3 times more).
            torch.testing.assert_close(h.double(), vk, rtol=0, atol=8 * 2.0 ** -24 * float(vk.abs().max()))
            torch.testing.assert_close(p.double(), wk, rtol=0, atol=8 * 2.0 ** -24 * float(wk.abs().max()))


def test_solve_cli_precision_flag(tmp_path):
    from vgg_caffe import solve

    net = NET.replace(f"""layer {{ name: "data" type: "Input" top: "data" top: "label"
        input_param {{ shape {{ dim: {N} dim: {C} dim: {H} dim: {W} }} shape {{ dim: {N} }} }} }}""",
                      f"""layer {{ name: "data" type: "DummyData" top: "data" top: "label"
        dummy_data_param {{ shape {{ dim: {N} dim: {C} dim: {H} dim: {W} }} shape {{ dim: {N} }}
                            data_filler {{ type: "gaussian" std: 1 }} data_filler {{ type: "constant" value: 2 }} }} }}""")
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f"""net_param {{ {net} }} base_lr: 0.01 lr_policy: "fixed" max_iter: 3 display: 1
        snapshot_prefix: "{tmp_path}/s" random_seed: 1 solver_mode: CPU\n""")
    log = tmp_path / "train.log"
    seen = []
    real = speed.run_graph

    def spy(n, feeds):
        seen.append(n.precision)
        return real(n, feeds)

    speed.run_graph = spy
    try:
        assert solve.main([str(solver), "--precision", "bf16", "--log", str(log), "--no-progress"]) == 0
    finally:
        speed.run_graph = real
    text = log.read_text()
    assert "Precision: bf16 (autocast to bfloat16" in text and "Iteration 3, loss = " in text
    assert seen and set(seen) == {"bf16"}
    assert (tmp_path / "s_iter_3.solverstate").exists()
    assert speed.defaults()["precision"] == "fp32"    # restored after the run
    loss = [float(line.rsplit("=", 1)[1]) for line in text.splitlines() if ", loss = " in line]
    assert all(math.isfinite(v) for v in loss)


def test_time_cli_times_layers_in_the_precision(tmp_path, capsys):
    from vgg_caffe import time as caffe_time

    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    seen = []
    real = speed.island_call

    def spy(net, layer):
        run = real(net, layer)
        seen.append((layer.name, type(run).__name__, torch.is_autocast_enabled("cpu")))
        return run

    speed.island_call = spy
    try:
        report = caffe_time.main([str(path), "-iterations", "1", "--precision", "bf16"])
    finally:
        speed.island_call = real
    assert [r["name"] for r in report["layers"]] == ["conv1", "relu1", "pool1", "fc", "loss"]
    # Each layer alone as the graph runs it: under autocast, the loss as a float32 island.
    assert ("conv1", "Convolution", True) in seen and ("loss", "FP32Island", True) in seen
    assert "Precision: bf16" in capsys.readouterr().err
    assert speed.defaults()["precision"] == "fp32"


def test_keep_blobs_frees_the_rest_and_computes_the_same():
    x, label = inputs(4)
    for mode in ("fp32", "bf16"):
        full = Net(NET, "TRAIN", seed=6, precision=mode)
        lean = Net(NET, "TRAIN", seed=6, precision=mode)
        lean.keep_blobs = ["pool1"]
        want, got = full(data=x, label=label), lean(data=x, label=label)
        assert set(full.blobs) == {"data", "label", "conv1", "pool1", "fc", "loss"}
        assert set(lean.blobs) == {"data", "label", "pool1", "loss"}    # kept, inputs, outputs
        assert torch.equal(got["loss"], want["loss"]) and torch.equal(lean.blobs["pool1"], full.blobs["pool1"])
        full.backward(), lean.backward()
        for a, b in zip(full.parameters(), lean.parameters()):
            assert torch.equal(a.grad, b.grad)
    lean.keep_blobs = None                       # back to every blob
    lean(data=x, label=label)
    assert "conv1" in lean.blobs and "fc" in lean.blobs
