"""Data-parallel scaling on CPUs: 1 vs 2 gloo workers on the same global batch.

The same measurement as bench/gpu_scaling.py (forward, backward, coalesced gradient all-reduce,
momentum update; synthetic inputs) on a small VGG-A, with CPU worker processes:

  1 worker x 1 thread    the per-core baseline
  1 worker x T threads   one process using every core (T = the cores given, default 2)
  2 workers x T/2 threads  the paper's batch split over two processes

Scaling efficiency = images/s(2 workers) / (2 * images/s(1 worker x 1 thread)); the speed-up
over one process using all the threads is reported beside it. The configurations are run in
interleaved rounds and each keeps its best round, since the machine is shared and noisy.

    python -m bench.bench_scaling [--rounds 2] [--iters 10] [--crop 64] [--batch 32]

Results: bench/results/scaling_cpu.json.
"""
import argparse
import os
import sys


from vgg_caffe.train import parallel
from vgg_caffe.errors import run_cli
from bench._report import result_path, write

from .gpu_scaling import measure


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="A")
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--width-div", type=int, default=4)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--batch", type=int, default=32, help="the global batch, the same for every configuration")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="cores to use in all")
    p.add_argument("--out", default=result_path("scaling_cpu"))
    args = p.parse_args(argv)
    args.per_gpu_batch, args.tf32, args.timeout = False, False, 600.0
    half = max(1, args.threads // 2)
    setups = {
        "1 worker x 1 thread": [parallel.Worker(0, 1, 0, "cpu", "gloo", threads=1)],
        f"1 worker x {args.threads} threads": [parallel.Worker(0, 1, 0, "cpu", "gloo", threads=args.threads)],
        f"2 workers x {half} thread(s)": [parallel.Worker(r, 2, r, "cpu", "gloo", threads=half) for r in range(2)],
    }
    best = {}
    for rnd in range(args.rounds):
        for name, workers in setups.items():
            row = measure(args, len(workers), workers)
            print(f"round {rnd}: {name}: {row['images_per_s']:.1f} images/s", flush=True)
            if name not in best or row["images_per_s"] > best[name]["images_per_s"]:
                best[name] = dict(row, setup=name, threads_per_worker=workers[0].threads)
    names = list(setups)
    single, full, split = (best[n] for n in names)
    result = dict(
        benchmark="scaling_cpu", config=args.config, crop=args.crop, width_div=args.width_div,
        global_batch=args.batch, iters=args.iters, warmup=args.warmup, rounds=args.rounds,
        rows=[best[n] for n in names],
        scaling_efficiency_2_workers=split["images_per_s"] / (2 * single["images_per_s"]),
        speedup_2_workers_vs_1_worker_1_thread=split["images_per_s"] / single["images_per_s"],
        speedup_2_workers_vs_1_worker_all_threads=split["images_per_s"] / full["images_per_s"],
        note="synthetic inputs, no data loading; see load_average_1min for how busy the machine was")
    write(args.out, result)
    print(f"scaling efficiency (2 workers vs 2 x 1 thread): {result['scaling_efficiency_2_workers']:.0%}; "
          f"2 workers vs 1 worker x {args.threads} threads: {result['speedup_2_workers_vs_1_worker_all_threads']:.2f}x")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
