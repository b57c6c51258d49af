"""Data-parallel scaling on GPUs: images/s and scaling efficiency on 1, 2, 4, 8 GPUs.

What it measures: the paper's scheme as vgg_caffe.train.parallel runs it -- VGG-16 (configuration D)
at 224x224, a global batch of 256 split over W GPUs (or, with --per-gpu-batch, Caffe's
semantics: every GPU runs the whole batch, effective batch W*256); per iteration forward,
backward, the coalesced gradient all-reduce (NCCL) and a momentum SGD update. Inputs are
synthetic tensors already on the GPU, so data loading is not part of the figure.
Scaling efficiency at W GPUs = images/s(W) / (W * images/s(1)).

    python -m bench.gpu_scaling                      # every count in 1,2,4,8 that fits the machine
    python -m bench.gpu_scaling --gpus 1,2 --iters 30 --per-gpu-batch
    python -m bench.gpu_scaling --dry-run            # CPU, gloo, tiny VGG: checks the whole path

Results: bench/results/gpu_scaling.json (dry runs: bench/results/gpu_scaling_dryrun.json).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

from bench._report import result_path, write
from vgg_caffe.vgg import netgen
from vgg_caffe.train import parallel
from vgg_caffe.errors import CaffeError, run_cli
from vgg_caffe.proto import pb
from vgg_caffe.rng import SampleWindow



def bench_net(config, crop, width_div, num_classes, batch):
    """The training net of `config` with its data layer replaced by an Input of `batch` images."""
    opts = netgen.Options(width_div=width_div, crop=crop, num_classes=num_classes)
    net = netgen.train_val_net(config, "S256", opts)
    out = pb.NetParameter(name=net.name)
    for layer in net.layer:
        if any(r.HasField("phase") and r.phase == pb.TEST for r in layer.include):
            continue
        if layer.type == "Python":                     # the VGG data layer -> synthetic input
            data = out.layer.add(name="data", type="Input", top=["data", "label"])
            data.input_param.shape.add().dim.extend([batch, 3, crop, crop])
            data.input_param.shape.add().dim.extend([batch])
            continue
        out.layer.add().CopyFrom(layer)
    return out


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_worker(args, rank, world_size, allreduce, device, seed, batch_scale):
    """One worker of one measurement: warm up, time `iters` iterations, rank 0 writes the figures."""
    from vgg_caffe.net import Net

    total = args.batch * (world_size if args.per_gpu_batch else 1)
    start, stop = parallel.sample_slice(total, rank, world_size)
    share = stop - start
    if args.tf32 and device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    net = Net(bench_net(args.config, args.crop, args.width_div, args.classes, share), phase="TRAIN", seed=1)
    net.to(device)
    params = [p for _, _, p, _ in net.learnable()]
    history = [torch.zeros_like(p) for p in params]
    gen = torch.Generator(device="cpu").manual_seed(1000 + rank)
    data = (torch.rand(share, 3, args.crop, args.crop, generator=gen) * 255 - 128).to(device)
    label = torch.randint(0, args.classes, (share,), generator=gen).float().to(device)

    step_times, reduce_times = [], []
    for it in range(args.warmup + args.iters):
        _sync(device)
        t0 = time.perf_counter()
        for p in params:
            p.grad = None
        net.set_sample_window(SampleWindow(1, it, start, stop, total))
        net(data=data, label=label)
        net.backward()
        _sync(device)
        t1 = time.perf_counter()
        grads = [p.grad for p in params]
        allreduce(grads)
        _sync(device)
        t2 = time.perf_counter()
        with torch.no_grad():  # Caffe's momentum form: v = m*v + lr*g; w -= v
            torch._foreach_mul_(history, 0.9)
            torch._foreach_add_(history, grads, alpha=1e-3)
            torch._foreach_sub_(params, history)
        _sync(device)
        t3 = time.perf_counter()
        if it >= args.warmup:
            step_times.append(t3 - t0)
            reduce_times.append(t2 - t1)
    if rank == 0:
        med = statistics.median(step_times)
        result = dict(workers=world_size, global_batch=total, per_worker_batch=share,
                      median_iter_s=med, images_per_s=total / med,
                      mean_images_per_s=total * len(step_times) / sum(step_times),
                      median_allreduce_s=statistics.median(reduce_times),
                      params=sum(p.numel() for p in params), device=device,
                      device_name=torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor(),
                      threads=torch.get_num_threads())
        with open(args.result_file, "w") as f:
            json.dump(result, f)


def measure(args, count, workers):
    """Run one measurement with `workers` (parallel.Worker list); return rank 0's figures."""
    fd, path = tempfile.mkstemp(suffix=".json", prefix=f"gpu_scaling_{count}_")
    os.close(fd)
    run_args = argparse.Namespace(**vars(args), result_file=path)
    try:
        parallel.launch(bench_worker, run_args, workers)
        with open(path) as f:
            return json.load(f)
    finally:
        os.remove(path)


def with_efficiency(rows):
    base = next((r for r in rows if r["workers"] == 1), None)
    for r in rows:
        if base:
            r["speedup"] = r["images_per_s"] / base["images_per_s"]
            r["scaling_efficiency"] = r["speedup"] / r["workers"]
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpus", default="1,2,4,8", help="worker counts to measure (those above the GPU count are skipped)")
    p.add_argument("--config", default="D")
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--width-div", type=int, default=1)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--batch", type=int, default=256, help="global batch (per GPU with --per-gpu-batch)")
    p.add_argument("--per-gpu-batch", action="store_true", help="Caffe's semantics: --batch per GPU")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls/convolutions (not the faithful fp32 path)")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--dry-run", action="store_true",
                   help="CPU gloo workers on a tiny VGG-A (crop 32, widths/16, batch 8, 1 and 2 workers)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    counts = [int(c) for c in args.gpus.split(",")]
    if args.dry_run:
        args.config, args.crop, args.width_div, args.classes, args.batch = "A", 32, 16, 10, 8
        args.iters, args.warmup = min(args.iters, 3), 1
        counts = [1, 2]
        available = None
    else:
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if available == 0:
            raise CaffeError("no CUDA GPU visible: run with --dry-run to check the path on CPU")
    out = args.out or result_path("gpu_scaling_dryrun" if args.dry_run else "gpu_scaling")
    rows, skipped = [], []
    for n in counts:
        if available is not None and n > available:
            skipped.append(n)
            continue
        if args.dry_run:
            workers = [parallel.Worker(r, n, r, "cpu", "gloo", args.timeout, args.per_gpu_batch, threads=1)
                       for r in range(n)]
        else:
            workers = [parallel.Worker(r, n, r, f"cuda:{r}", "nccl", args.timeout, args.per_gpu_batch)
                       for r in range(n)]
        row = measure(args, n, workers)
        rows.append(row)
        print(f"{n} worker(s): {row['images_per_s']:.1f} images/s (batch {row['global_batch']}, "
              f"{row['per_worker_batch']} per worker, all-reduce {row['median_allreduce_s'] * 1e3:.1f} ms)",
              flush=True)
    result = dict(benchmark="gpu_scaling", dry_run=args.dry_run, config=args.config, crop=args.crop,
                  width_div=args.width_div, semantics="caffe per-GPU batch" if args.per_gpu_batch else "paper split batch",
                  iters=args.iters, warmup=args.warmup, tf32=args.tf32,
                  skipped_counts=skipped, rows=with_efficiency(rows))
    result = write(out, result)
    for r in result["rows"]:
        if "scaling_efficiency" in r:
            print(f"{r['workers']} worker(s): speedup {r['speedup']:.2f}x, efficiency {r['scaling_efficiency']:.0%}")
    if skipped:
        print(f"skipped (not enough GPUs): {skipped}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
