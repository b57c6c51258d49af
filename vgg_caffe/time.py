"""Per-layer timing of a net, like `caffe time`.

    python -m vgg_caffe.time NET.prototxt [-iterations 50] [-phase TRAIN|TEST] [-level 0]
                             [-stage a,b] [--input-shape data=8,3,224,224] [--threads N]
                             [--device cpu|cuda] [--json OUT.json] [--precision bf16] [--compile]

Any prototxt Net reads, V1 included. As `caffe time` it runs the net in TRAIN phase by default
and reports each layer's average forward and backward time, then the average forward, backward
and forward-backward pass of the whole net. Inputs are synthetic, so no database is needed:
data layers that read a source are replaced by their declared shapes (as vgg_caffe.info does),
blobs fed to a loss or accuracy layer as labels get integer classes, the rest N(0, 1) values.

Per-layer times are measured as Caffe does, one layer at a time on the bottoms of a full forward
pass: forward, then backward of that layer alone with a gradient of ones on its tops (in-place
writes are switched off while a layer runs alone, so its bottoms stay intact). The whole-net
backward starts from the loss, or from the sum of the outputs when the net has no loss (a deploy
net), so deploy nets get a backward time too.
"""
import argparse
import json
import statistics
import time
from collections import OrderedDict

import torch

from .errors import CaffeError, run_cli
from . import machine
from .fileio import atomic_write, check_writable
from . import precision as speed
from .net import Net

LABEL_CONSUMERS = ("SoftmaxWithLoss", "Accuracy")


def build(model, phase="TRAIN", level=0, stages=(), input_shapes=None, seed=None):
    """A Net of `model` whose data layers are Input layers of their declared (or given) shapes,
    filled from its fillers with `seed`."""
    from .info import shape_net
    from .net import load_net_param

    net_param, source = load_net_param(model)
    stand_in = shape_net(net_param, phase, input_shapes, level, stages, source=source)
    return Net(stand_in.net_param, phase, input_shapes=input_shapes, source=source, seed=seed)


def synthetic_inputs(net, generator=None):
    """{input blob: tensor}: labels in [0, classes) where a loss/accuracy reads them, else N(0, 1)."""
    classes = {}
    for layer in net.layers.values():
        if layer.type in LABEL_CONSUMERS and len(layer.param.bottom) > 1:
            axis = getattr(layer, "axis", 1)
            classes[layer.param.bottom[1]] = net.blob_shapes[layer.param.bottom[0]][axis]
    inputs = {}
    for name in net.input_names:
        shape = net.blob_shapes[name]
        if name in classes:
            inputs[name] = torch.randint(0, classes[name], shape, generator=generator).float()
        else:
            inputs[name] = torch.randn(shape, generator=generator)
    return inputs


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _objective(net, outputs):
    if net.loss_weights:
        return net.loss
    terms = [v.sum() for v in outputs.values() if v.requires_grad]
    return sum(terms) if terms else None


def time_net(net, inputs, iterations=50, warmup=1):
    """{"layers": [{name, type, forward_ms, backward_ms}], "forward_ms", "backward_ms", ...}
    averaged (per-layer: mean; whole passes: mean and median) over `iterations` runs."""
    if iterations < 1:
        raise CaffeError(f"iterations must be positive, got {iterations}")
    device = net._device()
    inputs = {k: v.to(device) for k, v in inputs.items()}
    forward, backward = [], []
    for i in range(warmup + iterations):
        net.zero_grad(set_to_none=True)
        _sync(device)
        t0 = time.perf_counter()
        outputs = net(**inputs)
        _sync(device)
        t1 = time.perf_counter()
        objective = _objective(net, outputs)
        if objective is not None:
            objective.backward()
        _sync(device)
        t2 = time.perf_counter()
        if i >= warmup:
            forward.append((t1 - t0) * 1e3)
            backward.append((t2 - t1) * 1e3)
    blobs = net.blobs
    layers = []
    for name, layer in zip(net.layer_names, net.layers.values()):
        if layer.is_data:
            continue
        with speed.autocast_for(net):   # each layer alone as the graph runs it (bf16: fp32 islands)
            f, b = _time_layer(layer, [blobs[n] for n in layer.param.bottom], iterations, warmup, device,
                               run=speed.island_call(net, layer))
        layers.append(OrderedDict(name=name, type=layer.type, forward_ms=f, backward_ms=b))
    return OrderedDict(
        iterations=iterations, layers=layers,
        forward_ms=statistics.mean(forward), backward_ms=statistics.mean(backward),
        forward_backward_ms=statistics.mean(f + b for f, b in zip(forward, backward)),
        forward_median_ms=statistics.median(forward), backward_median_ms=statistics.median(backward),
        total_ms=sum(forward) + sum(backward))


def _time_layer(layer, bottoms, iterations, warmup, device, run=None):
    """Mean forward and backward milliseconds of one layer alone on these bottoms (called as
    `run`, the layer by default)."""
    run = run or layer
    label_slots = {1} if layer.type in LABEL_CONSUMERS else set()
    inplace = getattr(layer, "inplace", None)
    if inplace is not None:
        layer.inplace = False
    try:
        fwd, bwd = [], []
        for i in range(warmup + iterations):
            args = [b.detach().requires_grad_(b.is_floating_point() and k not in label_slots)
                    for k, b in enumerate(bottoms)]
            call = (args,) if getattr(layer, "takes_list", False) else tuple(args)
            _sync(device)
            t0 = time.perf_counter()
            out = run(*call)
            _sync(device)
            t1 = time.perf_counter()
            tops = [out] if isinstance(out, torch.Tensor) else list(out)
            tops = [t for t in tops if t.requires_grad]
            if tops:
                torch.autograd.backward(tops, [torch.ones_like(t) for t in tops])
            _sync(device)
            t2 = time.perf_counter()
            if i >= warmup:
                fwd.append((t1 - t0) * 1e3)
                bwd.append((t2 - t1) * 1e3)
        layer.zero_grad(set_to_none=True)
        return statistics.mean(fwd), statistics.mean(bwd)
    finally:
        if inplace is not None:
            layer.inplace = inplace


def format_report(report):
    width = max([len(r["name"]) for r in report["layers"]] + [8])
    lines = ["Average time per layer:"]
    for r in report["layers"]:
        lines.append(f"{r['name']:>{width}}\tforward: {r['forward_ms']:.4f} ms.")
        lines.append(f"{r['name']:>{width}}\tbackward: {r['backward_ms']:.4f} ms.")
    lines += [f"Average Forward pass: {report['forward_ms']:.4f} ms.",
              f"Average Backward pass: {report['backward_ms']:.4f} ms.",
              f"Average Forward-Backward: {report['forward_backward_ms']:.4f} ms.",
              f"Total Time: {report['total_ms']:.4f} ms."]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m vgg_caffe.time", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", help="the net's prototxt (or -model)")
    ap.add_argument("-model", "--model", dest="model_flag", help="the net's prototxt, as `caffe time -model`")
    ap.add_argument("-iterations", "--iterations", type=int, default=50, help="timed iterations (default 50)")
    ap.add_argument("-phase", "--phase", default="TRAIN", type=str.upper, choices=["TRAIN", "TEST"])
    ap.add_argument("-level", "--level", type=int, default=0)
    ap.add_argument("-stage", "--stage", default="", help="comma-separated stages")
    ap.add_argument("--input-shape", action="append", default=[], metavar="BLOB=N,C,H,W",
                    help="override an input's shape (repeatable)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--seed", type=int, default=0, help="seed for weights and synthetic inputs")
    ap.add_argument("--json", help="also write the report as JSON here")
    speed.add_arguments(ap)
    args = ap.parse_args(argv)
    machine.torch_device(args.device)   # --device cuda without CUDA: a clear error before any work
    if args.json:
        check_writable(args.json, "report")
    with speed.from_arguments(args, args.device):   # --precision, --compile
        return _run(ap, args)


def _run(ap, args):
    from .info import parse_shape_arg

    model = args.model_flag or args.model
    if not model:
        ap.error("give the net's prototxt (positionally or with -model)")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise CaffeError(f"--device {args.device!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CaffeError("--device cuda: no CUDA device is available")
    shapes = dict(parse_shape_arg(s) for s in args.input_shape)
    stages = [s for s in args.stage.split(",") if s]
    net = build(model, args.phase, args.level, stages, shapes, seed=args.seed).to(device)
    gen = torch.Generator().manual_seed(args.seed)
    report = time_net(net, synthetic_inputs(net, gen), args.iterations)
    report["model"], report["phase"], report["device"] = str(model), args.phase, str(device)
    report["threads"] = torch.get_num_threads()
    print(format_report(report))
    if args.json:
        atomic_write(args.json, json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    run_cli(main)
