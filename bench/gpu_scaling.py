"""Training throughput on GPUs as the solver runs it: images/s, scaling efficiency, MFU.

What it measures: `Solver.step` (vgg_caffe.train.solver) -- forward, backward, the gradient
all-reduce overlapped with backward (NCCL, vgg_caffe.train.overlap), Caffe's SGD update and the
iteration's one host synchronisation -- on VGG (configuration D, 224x224 crops, the paper's
split of a global batch of 256 over W GPUs; --per-gpu-batch for Caffe's semantics), with
  input "real data layer": the VGG data layer over an LMDB of JPEG photos (decoding, scale
        jitter, crops, flips, colour shift in worker processes: the cores shared among the ranks,
        pinned batches, asynchronous copies), what training gets;
  input "synthetic (upper bound)": tensors already on the GPU, no data loading at all.
Blobs are released after every pass (the solver's own loop), each worker gets cores/W threads.
Reported per row: images/s, scaling efficiency (images/s(W) / (W * images/s(1)), same input),
precision (vgg_caffe.precision: fp32 is Caffe's float32 with TF32 off), compile mode, and model
FLOP utilisation: 6 * forward multiply-adds per image (vgg_caffe.info; backward counted as twice
the forward) * images/s / the GPU's peak for that precision (--peak-tflops, else a table).

    python -m bench.gpu_scaling                      # 1,2,4,8 GPUs where present, both inputs
    python -m bench.gpu_scaling --gpus 1 --precision bf16 --inputs synthetic
    python -m bench.gpu_scaling --profile            # 1 GPU: per-GPU batches 256/128/64/32 and
                                                     # gradient readiness -> bench.scaling_model
    python -m bench.gpu_scaling --dry-run            # CPU, gloo, tiny VGG-A: checks the whole path

Results: bench/results/gpu_scaling.json (dry runs: gpu_scaling_dryrun.json), --profile adds
gpu_profile.json and gpu_scaling_model.json (4 and 8 GPUs PREDICTED from the profile).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

from bench._report import result_path, write
from vgg_caffe.errors import CaffeError, run_cli
from vgg_caffe.proto import pb
from vgg_caffe.train import parallel
from vgg_caffe.vgg import netgen

PEAK_TFLOPS = {  # dense tensor-core / FMA peaks by the vendors' datasheets (leads, not readings)
    "H200": {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0},
    "H100": {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
}
INPUTS = {"real": "real data layer", "synthetic": "synthetic (upper bound)"}


def photo_lmdb(path, records=512, longest=500):
    """An LMDB of encoded JPEG Datums (quality 95): the scikit-image photos of bench/_photos that
    load without a download, at ~`longest` px, repeated to `records` (the data layer jitters each
    one differently), labels = photo index."""
    import cv2
    import numpy as np
    import skimage.data

    from bench._photos import NAMES
    from vgg_caffe.data.db import Writer

    blobs = []
    for name in NAMES:
        try:
            img = np.asarray(getattr(skimage.data, name)())
        except Exception:  # a sample that needs a download (no network on a GPU machine)
            continue
        img = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img[:, :, :3]
        img = np.ascontiguousarray(img[:, :, ::-1])
        s = longest / max(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        blobs.append((name, cv2.imencode(".JPEG", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()))
    if not blobs:
        raise CaffeError("no scikit-image sample photo could be loaded for the real-data LMDB")
    writer = Writer(path, commit_every=1000)
    for i in range(records):
        name, data = blobs[i % len(blobs)]
        writer.put(f"{i:08d}_{name}", pb.Datum(encoded=True, data=data, label=i % len(blobs)).SerializeToString())
    writer.close()
    return path


def solver_param(args, batch, source=None):
    """A solver over the train net of args.config at `batch`: the VGG data layer on `source`,
    or an Input layer (synthetic) when source is None. No test nets, no display, no snapshots."""
    opts = netgen.Options(width_div=args.width_div, crop=args.crop, num_classes=args.classes, batch_size=batch,
                          train_source=source or "unused")
    net = netgen.train_val_net(args.config, args.regime, opts)
    out = pb.NetParameter(name=net.name)
    for layer in net.layer:
        if any(r.HasField("phase") and r.phase == pb.TEST for r in layer.include):
            continue
        if layer.type == "Python" and source is None:
            data = out.layer.add(name="data", type="Input", top=["data", "label"])
            data.input_param.shape.add().dim.extend([batch, 3, args.crop, args.crop])
            data.input_param.shape.add().dim.extend([batch])
            continue
        out.layer.add().CopyFrom(layer)
    return pb.SolverParameter(net_param=out, base_lr=1e-3, lr_policy="fixed", momentum=0.9, weight_decay=5e-4,
                              max_iter=10 ** 9, display=0, snapshot=0, snapshot_after_train=False,
                              random_seed=1, test_initialization=False)


def synthetic_feed(args, total, device, seed):
    """train_feed for the Input net: one batch of pixels and labels made on the device once."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    data = (torch.rand(total, 3, args.crop, args.crop, generator=gen) * 255 - 128).to(device)
    data = data.contiguous(memory_format=torch.channels_last)
    label = torch.randint(0, args.classes, (total,), generator=gen).float().to(device)
    return lambda index, start, stop: {"data": data[start:stop], "label": label[start:stop]}


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def build_solver(args, rank, world_size, allreduce, device, total, source):
    from vgg_caffe.train.log import TrainingLog
    from vgg_caffe.train.solver import Solver

    feed = None if source else synthetic_feed(args, total, device, 1000)
    solver = Solver(solver_param(args, total, source), rank=rank, world_size=world_size, allreduce=allreduce,
                    device=device, log=TrainingLog(enabled=False), train_feed=feed, precision=args.precision,
                    source=f"<gpu_scaling {args.config}>")
    solver.net.torch_compile = bool(args.compile)
    return solver


def time_steps(solver, warmup, iters):
    """Seconds per Solver.step(1) after `warmup` steps (each step ends in a host synchronisation;
    the explicit one makes the figure exact on a GPU)."""
    solver.step(warmup)
    _sync(solver.device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        solver.step(1)
        _sync(solver.device)
        times.append(time.perf_counter() - t0)
    return times


def bench_worker(args, rank, world_size, allreduce, device, seed, batch_scale):
    """One worker of one measurement; rank 0 writes the figures to args.result_file."""
    total = args.batch * (world_size if args.per_gpu_batch else 1)
    solver = build_solver(args, rank, world_size, allreduce, device, total, args.source)
    try:
        times = time_steps(solver, args.warmup, args.iters)
    finally:
        solver.close()
    if rank == 0:
        med = statistics.median(times)
        row = dict(workers=world_size, input=INPUTS["real" if args.source else "synthetic"], global_batch=total,
                   per_worker_batch=total // world_size, median_iter_s=med, images_per_s=total / med,
                   mean_images_per_s=total * len(times) / sum(times), device=str(device),
                   threads=torch.get_num_threads(), overlapped_allreduce=solver.reducer is not None or world_size == 1,
                   max_memory_gib=(torch.cuda.max_memory_allocated(device) / 2 ** 30
                                   if str(device).startswith("cuda") else None))
        with open(args.result_file, "w") as f:
            json.dump(row, f)


def measure(args, workers, source):
    fd, path = tempfile.mkstemp(suffix=".json", prefix=f"gpu_scaling_{len(workers)}_")
    os.close(fd)
    run_args = argparse.Namespace(**vars(args), result_file=path, source=source)
    try:
        parallel.launch(bench_worker, run_args, workers)
        with open(path) as f:
            return json.load(f)
    finally:
        os.remove(path)


def flops_per_image(args):
    """6 x the forward multiply-adds of one image (forward 2 FLOPs per multiply-add, backward twice
    the forward), from vgg_caffe.info on the deploy net."""
    from vgg_caffe.info import summarize

    opts = netgen.Options(width_div=args.width_div, crop=args.crop, num_classes=args.classes)
    rows, totals = summarize(netgen.deploy_net(args.config, opts))
    return 6.0 * totals["macs"] / rows[0].tops[0][1][0]


def peak_flops(args, device_name):
    if args.peak_tflops:
        return args.peak_tflops * 1e12, "given (--peak-tflops)"
    for key, table in PEAK_TFLOPS.items():
        if key in (device_name or ""):
            return table[args.precision] * 1e12, f"datasheet {key} {args.precision} dense"
    return None, "unknown device: no peak"


def with_figures(rows, flops, peak):
    for r in rows:
        base = next((b for b in rows if b["workers"] == 1 and b["input"] == r["input"]), None)
        if base:
            r["speedup"] = r["images_per_s"] / base["images_per_s"]
            r["scaling_efficiency"] = r["speedup"] / r["workers"]
        r["model_tflops_per_s"] = r["images_per_s"] * flops / r["workers"] / 1e12
        r["mfu"] = r["images_per_s"] * flops / r["workers"] / peak if peak else None
    return rows


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpus", default="1,2,4,8", help="worker counts (those above the GPU count are skipped)")
    p.add_argument("--inputs", default="real,synthetic", help="real, synthetic or both")
    p.add_argument("--config", default="D")
    p.add_argument("--regime", default="multiscale", choices=netgen.REGIMES,
                   help="training scales of the real data layer (multiscale: S jittered in [256, 512])")
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--width-div", type=int, default=1)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--batch", type=int, default=256, help="global batch (per GPU with --per-gpu-batch)")
    p.add_argument("--per-gpu-batch", action="store_true", help="Caffe's semantics: --batch per GPU")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the nets (vgg_caffe.precision)")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--records", type=int, default=1024, help="photos in the real-data LMDB")
    p.add_argument("--peak-tflops", type=float, help="the device's peak for --precision (default: a table)")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--profile", action="store_true", help="1 GPU: per-GPU batch sweep and gradient readiness")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU gloo workers on a tiny VGG-A (crop 32, widths/16, batch 8, 1 and 2 workers)")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    counts = [int(c) for c in args.gpus.split(",")]
    inputs = [i.strip() for i in args.inputs.split(",") if i.strip()]
    if set(inputs) - set(INPUTS):
        raise CaffeError(f"--inputs {args.inputs}: expected real, synthetic or both")
    if args.dry_run:
        args.config, args.crop, args.width_div, args.classes, args.batch = "A", 32, 16, 10, 8
        args.iters, args.warmup, args.records = min(args.iters, 3), 1, 16
        counts, available = [1, 2], None
    else:
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if available == 0:
            raise CaffeError("no CUDA GPU visible: run with --dry-run to check the path on CPU")
    if args.profile:
        from bench.gpu_profile import run_profile
        return run_profile(args)
    out = args.out or result_path("gpu_scaling_dryrun" if args.dry_run else "gpu_scaling")
    rows, skipped = [], []
    db = None
    if "real" in inputs:
        db = photo_lmdb(os.path.join(tempfile.mkdtemp(prefix="gpu_scaling_db_"), "photos_lmdb"), args.records,
                        longest=64 if args.dry_run else 500)
    for kind in inputs:
        for n in counts:
            if available is not None and n > available:
                skipped.append(n)
                continue
            threads = max(1, (os.cpu_count() or 1) // n)
            if args.dry_run:
                workers = [parallel.Worker(r, n, r, "cpu", "gloo", args.timeout, args.per_gpu_batch, threads=1)
                           for r in range(n)]
            else:
                workers = [parallel.Worker(r, n, r, f"cuda:{r}", "nccl", args.timeout, args.per_gpu_batch,
                                           threads=threads) for r in range(n)]
            row = measure(args, workers, db if kind == "real" else None)
            rows.append(row)
            print(f"{n} worker(s), {row['input']}: {row['images_per_s']:.1f} images/s (batch {row['global_batch']}, "
                  f"{row['per_worker_batch']} per worker)", flush=True)
    name = torch.cuda.get_device_name(0) if available else "cpu"
    flops = flops_per_image(args)
    peak, peak_source = peak_flops(args, name)
    result = dict(benchmark="gpu_scaling", dry_run=args.dry_run, config=args.config, crop=args.crop,
                  width_div=args.width_div, device_name=name, precision=args.precision,
                  compile="torch.compile" if args.compile else "eager",
                  semantics="caffe per-GPU batch" if args.per_gpu_batch else "paper split batch",
                  iters=args.iters, warmup=args.warmup, model_flops_per_image=flops, peak_flops=peak,
                  peak_source=peak_source, measured="every row is measured", skipped_counts=sorted(set(skipped)),
                  rows=with_figures(rows, flops, peak))
    result = write(out, result)
    for r in result["rows"]:
        eff = f", efficiency {r['scaling_efficiency']:.0%}" if "scaling_efficiency" in r else ""
        mfu = f", MFU {r['mfu']:.1%}" if r.get("mfu") else ""
        print(f"{r['workers']} worker(s), {r['input']}: {r['images_per_s']:.1f} images/s{eff}{mfu}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
