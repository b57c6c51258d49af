"""One GPU's inputs to the scaling prediction, and the plain-torch baseline.

`python -m bench.gpu_scaling --profile` runs run_profile: Solver.step on synthetic inputs at the
per-GPU batches that 1, 2, 4 and 8 GPUs would run for a global batch of 256 (256, 128, 64, 32),
timing each step and, through a GradientReducer whose all-reduce only records the moment
(vgg_caffe.train.overlap: the same buckets and hooks a multi-GPU run launches from), when each
bucket of gradients becomes ready during backward. MEASURED: those times; PREDICTED from them by
bench/scaling_model.py: the 4- and 8-GPU efficiency over NVLink and PCIe.

`python -m bench.gpu_profile --baseline` times torchvision's VGG-16 (or, without torchvision,
the same layers written out: 13 3x3 convolutions with ReLU, 5 max-pools, 3 fully connected layers
with ReLU and dropout) in a plain torch loop (autocast, channels_last, torch.optim.SGD with
momentum) against Solver.step with the same batch, precision and layout.
Results: bench/results/gpu_profile.json, gpu_scaling_model.json, gpu_baseline.json (--out DIR:
in DIR instead).
"""
import os
import statistics
import sys
import time

import torch

from bench import scaling_model
from bench._report import result_path, write


class Clock:
    """Marks on the device's timeline (CUDA events), or host times on a CPU."""

    def __init__(self, device):
        self.cuda = str(device).startswith("cuda")
        self.marks = []

    def mark(self, what):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append((what, event))
        else:
            self.marks.append((what, time.perf_counter()))

    def seconds(self):
        """[(what, seconds since the first mark)] (after a synchronisation)."""
        if not self.marks:
            return []
        if self.cuda:
            torch.cuda.synchronize()
            first = self.marks[0][1]
            return [(w, first.elapsed_time(e) / 1e3) for w, e in self.marks]
        first = self.marks[0][1]
        return [(w, t - first) for w, t in self.marks]


class _Done:
    def wait(self):
        pass


def instrument(solver):
    """A recording GradientReducer on a one-process solver, plus marks at the start of the
    iteration, the end of forward and the end of backward; returns the Clock."""
    from vgg_caffe.train.overlap import GradientReducer

    clock = Clock(solver.device)
    params = [solver.params[k] for k in solver.updated]

    class Recording(GradientReducer):
        def prepare(self):
            clock.marks.clear()
            clock.mark("start")
            super().prepare()

        def finish(self):
            clock.mark("backward_end")
            return super().finish()

    def launch(flat):
        clock.mark(("bucket", flat.numel() * flat.element_size()))
        return _Done()

    solver.reducer = Recording(params, 1, launch)
    solver.net.register_forward_hook(lambda *a: clock.mark("forward_end"))
    return clock


def profile_batch(args, batch, device):
    from bench.gpu_scaling import build_solver, time_steps

    solver = build_solver(args, 0, 1, None, device, batch, None)
    try:
        clock = instrument(solver)
        times = time_steps(solver, args.warmup, args.iters)
        marks = clock.seconds()
    finally:
        solver.close()
    named = {w: t for w, t in marks if isinstance(w, str)}
    buckets = [[w[1], t] for w, t in marks if not isinstance(w, str)]
    return {"step_s": statistics.median(times), "backward_start_s": named["forward_end"],
            "backward_end_s": named["backward_end"], "buckets": buckets,
            "ready_before_backward_end": sum(b for b, t in buckets if t < named["backward_end"]) /
            max(1, sum(b for b, _ in buckets))}


def run_profile(args):
    device = "cpu" if args.dry_run else "cuda:0"
    batches = [args.batch // w for w in (1, 2, 4, 8) if args.batch % w == 0 and args.batch // w >= 1]
    per_gpu = {}
    for b in batches:
        per_gpu[str(b)] = profile_batch(args, b, device)
        print(f"per-GPU batch {b}: {per_gpu[str(b)]['step_s'] * 1e3:.1f} ms/step", flush=True)
    prof = {"benchmark": "gpu_profile", "kind": "MEASURED on one device", "device": device,
            "device_name": torch.cuda.get_device_name(0) if device != "cpu" else "cpu",
            "precision": args.precision, "config": args.config, "crop": args.crop, "per_gpu": per_gpu}
    tag = "_dryrun" if args.dry_run else ""
    where = (lambda name: os.path.join(args.out, name + ".json")) if args.out else result_path
    write(where(f"gpu_profile{tag}"), prof)
    pred = scaling_model.predict(per_gpu[str(args.batch)]["step_s"], profile=prof, batch=args.batch)
    result = {"benchmark": "gpu_scaling_model", "kind": "PREDICTED from the measured gpu_profile",
              "precision": args.precision, **pred}
    write(where(f"gpu_scaling_model{tag}"), result)
    for name, link in result["links"].items():
        for w, r in link["predicted"].items():
            print(f"PREDICTED {name}, {w} GPUs: scaling efficiency {r['scaling_efficiency']:.3f}")
    return 0


def torch_vgg16(classes):
    """torchvision's VGG-16, or the same layers written out when torchvision is not installed."""
    try:
        import torchvision
        return torchvision.models.vgg16(num_classes=classes), "torchvision.models.vgg16"
    except ImportError:
        from torch import nn
        layers, c = [], 3
        for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        head = [nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, classes)]
        return nn.Sequential(*layers, *head), "torchvision-style nn.Sequential"


def plain_loop_s(args, device):
    model, what = torch_vgg16(args.classes)
    model.to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    data = torch.randn(args.batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    label = torch.randint(0, args.classes, (args.batch,), device=device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
    torch.backends.cudnn.benchmark = True
    cast = torch.autocast("cuda", torch.bfloat16) if args.precision == "bf16" else torch.autocast("cuda", enabled=False)
    times = []
    for it in range(args.warmup + args.iters):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with cast:
            out = model(data)
        torch.nn.functional.cross_entropy(out.float(), label).backward()
        opt.step()
        torch.cuda.synchronize()
        if it >= args.warmup:
            times.append(time.perf_counter() - t0)
    del model, opt
    torch.cuda.empty_cache()
    return statistics.median(times), what


def run_baseline(args):
    from bench.gpu_scaling import build_solver, flops_per_image, peak_flops, time_steps

    device = "cuda:0"
    base_s, what = plain_loop_s(args, device)
    solver = build_solver(args, 0, 1, None, device, args.batch, None)
    try:
        ours_s = statistics.median(time_steps(solver, args.warmup, args.iters))
    finally:
        solver.close()
    flops = flops_per_image(args)
    peak, source = peak_flops(args, torch.cuda.get_device_name(0))
    rows = {"ours (Solver.step, synthetic input)": ours_s, f"baseline ({what}, plain torch loop)": base_s}
    result = {"benchmark": "gpu_baseline", "kind": "MEASURED", "device_name": torch.cuda.get_device_name(0),
              "precision": args.precision, "channels_last": True, "batch": args.batch,
              "compile": "torch.compile" if args.compile else "eager", "peak_flops": peak, "peak_source": source,
              "rows": {k: {"step_s": v, "images_per_s": args.batch / v,
                           "mfu": args.batch / v * flops / peak if peak else None} for k, v in rows.items()},
              "ours_over_baseline": base_s / ours_s, "target": ">= 1.0x the baseline and >= 45% MFU (bf16)"}
    write(os.path.join(args.out, "gpu_baseline.json") if args.out else result_path("gpu_baseline"), result)
    print(f"ours {args.batch / ours_s:.0f} images/s, baseline {args.batch / base_s:.0f} images/s: "
          f"{base_s / ours_s:.2f}x; MFU ours {result['rows']['ours (Solver.step, synthetic input)']['mfu']}")
    return 0


def main(argv=None):
    from bench.gpu_scaling import parse

    argv = list(sys.argv[1:] if argv is None else argv)
    baseline = "--baseline" in argv
    args = parse([a for a in argv if a != "--baseline"])
    if baseline:
        return run_baseline(args)
    args.dry_run = args.dry_run or False
    return run_profile(args)


if __name__ == "__main__":
    sys.exit(main())
