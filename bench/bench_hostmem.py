"""What vgg_caffe.hostmem's malloc thresholds do to a VGG-16 pass on the CPU.

The setting is process-wide and made once, so the two ways run in separate processes: children
with the default (freed memory reused) and with VGG_CAFFE_MALLOC=system (glibc's own thresholds)
alternate, --rounds of each. Each child builds VGG-16 (D) at batch 8, 224x224, and times, after a
warm-up, --repeats passes of each kind: a bf16 train step (forward + backward) and fp32 and bf16
inference, counting the minor page faults of each pass (getrusage). Reported: per way the best and
median seconds over all its children, faults per pass, and the speed-up of reuse over system.

    python -m bench.bench_hostmem [--rounds 2] [--repeats 3] [--threads 2]

Results: bench/results/hostmem.json.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from bench._report import result_path, write
from vgg_caffe.errors import run_cli

RESULTS = result_path("hostmem")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("train_bf16", "infer_fp32", "infer_bf16")


def child(repeats, threads):
    """Runs in the child: times every kind and prints one JSON line."""
    import resource

    import torch

    from bench.bench_overhead import PROTO, infer_ours, random_weights, step_ours
    from vgg_caffe import hostmem
    from vgg_caffe.net import Net

    torch.set_num_threads(threads)
    shape = (8, 3, 224, 224)
    net = Net(PROTO, input_shapes={"data": shape})
    random_weights(net)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=gen) * 50
    labels = torch.randint(0, 1000, (8,), generator=gen)

    def one(kind):
        train = kind.startswith("train")
        net.precision = kind.split("_")[1]
        net.train(train)
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        seconds = step_ours(net, x, labels) if train else infer_ours(net, x)
        return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

    out = {"applied": hostmem.applied()}
    for kind in KINDS:
        one(kind), one(kind)
        runs = [one(kind) for _ in range(repeats)]
        out[kind] = {"s": [r[0] for r in runs], "faults": [r[1] for r in runs]}
    print(json.dumps(out))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.repeats, args.threads)
    load_start = round(os.getloadavg()[0], 2)
    ways = {"reuse": {}, "system": {"VGG_CAFFE_MALLOC": "system"}}
    found = {w: {k: {"s": [], "faults": []} for k in KINDS} for w in ways}
    applied = {}
    for _ in range(args.rounds):
        for way, env in ways.items():
            cmd = [sys.executable, "-m", "bench.bench_hostmem", "--child", "--repeats", str(args.repeats),
                   "--threads", str(args.threads)]
            done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                                  check=True)
            got = json.loads(done.stdout.strip().splitlines()[-1])
            applied[way] = got.pop("applied")
            for kind, v in got.items():
                found[way][kind]["s"] += v["s"]
                found[way][kind]["faults"] += v["faults"]
    summary = {w: {k: {"best_s": min(v["s"]), "median_s": statistics.median(v["s"]),
                       "median_faults_per_pass": statistics.median(v["faults"])} for k, v in kinds.items()}
               for w, kinds in found.items()}
    speedup = {k: {"median": summary["system"][k]["median_s"] / summary["reuse"][k]["median_s"],
                   "best": summary["system"][k]["best_s"] / summary["reuse"][k]["best_s"]} for k in KINDS}
    report = {"bench": "hostmem", "net": "VGG-16 (D), batch 8 at 224", "threads": args.threads,
              "rounds": args.rounds, "repeats": args.repeats, "load_average_1min_at_start": load_start,
              "thresholds": applied, "summary": summary, "speedup_reuse_over_system": speedup, "runs": found}
    write(args.out, report)
    print(json.dumps({k: report[k] for k in ("thresholds", "summary", "speedup_reuse_over_system")}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_cli(main)
