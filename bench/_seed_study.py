"""The demo trained from several initialisations in three arms, for bench_precision_demo.

A demo run stopped after 400 iterations is not converged: its error table depends on the exact
training trajectory, and any change of arithmetic moves it, float32 too (another thread count sums
in another order). So bf16's effect on the table is measured as a paired difference over seeds
(the solver's random_seed, which fixes the initialisation and the data order), against the same
measurement for a change that is not bf16 at all:

  fp32                  the demo as it is (Caffe's float32 arithmetic, --threads)
  bf16                  the demo with --precision bf16
  fp32_one_more_thread  fp32 with --threads + 1: the same arithmetic, another summation order

For each row of the table and for the late training loss (the mean of the losses the solver
displays in the second half of training, a far less granular measure than 160 validation
images), per arm the mean and standard deviation, and for bf16 - fp32 and for
fp32_one_more_thread - fp32 the mean of the per-seed differences with its standard error. A run
whose training diverged (the solver stops on a NaN loss) is counted, not averaged.
"""
import json
import math
import os
import re
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARMS = {"fp32": ("fp32", 0), "bf16": ("bf16", 0), "fp32_one_more_thread": ("fp32", 1)}
COMPARED = (("bf16", "fp32"), ("fp32_one_more_thread", "fp32"))
DISPLAYED = re.compile(r"Iteration (\d+) \(.*\), loss = (\S+)")


def run_demo(out, precision, quick, threads, iters=None, seed=None, may_diverge=False, extra=()):
    """The demo's results.json; with may_diverge, None when its training stopped on divergence."""
    cmd = [sys.executable, "-m", "vgg_caffe.demo", "--out", out, "--precision", precision,
           "--threads", str(threads)] + (["--quick"] if quick else []) + (["--iters", str(iters)] if iters else [])
    cmd += (["--seed", str(seed)] if seed is not None else []) + list(extra)
    run = subprocess.run(cmd, check=False, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if run.returncode and may_diverge and "training diverged" in run.stderr:
        return None
    if run.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{run.stderr[-2000:]}")
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def late_training_loss(out):
    """The mean displayed training loss over the second half of the run in `out` (train.log)."""
    with open(os.path.join(out, "train.log")) as f:
        shown = [(int(m.group(1)), float(m.group(2))) for m in DISPLAYED.finditer(f.read())]
    last = max(it for it, _ in shown)
    return statistics.mean(loss for it, loss in shown if it >= last / 2)


def paired(a, b):
    """a - b over the seeds both have: mean, standard error, largest absolute difference."""
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    return {"seeds": len(diffs), "mean": round(statistics.mean(diffs), 4), "standard_error": round(se, 4),
            "max_abs": round(max(abs(d) for d in diffs), 4)}


def spread(values):
    values = list(values)
    return {"mean": round(statistics.mean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}


def summary(by_arm):
    """{arm: {seed: value}} -> per arm mean and sd, and the COMPARED paired differences."""
    out = {arm: spread(v.values()) for arm, v in by_arm.items() if v}
    for a, b in COMPARED:
        if by_arm.get(a) and by_arm.get(b):
            out[f"{a}_minus_{b}"] = paired(by_arm[a], by_arm[b])
    return out


def seeds(work, count, threads, done=None, extra=(), tag="seed", jobs=2):
    """The study over seeds 1..count with the demo's options plus `extra`; `done` maps
    (arm, seed) to the folder of a run already made with those settings. `jobs` demos run at
    once (only their numbers are used here, not their speed)."""
    done = dict(done or {})
    wanted = [(arm, seed) for seed in range(1, count + 1) for arm in ARMS if (arm, seed) not in done]

    def run(key):
        arm, seed = key
        precision, more = ARMS[arm]
        out = os.path.join(work, f"{arm}_{tag}{seed}")
        found = run_demo(out, precision, False, threads + more, seed=seed, may_diverge=True, extra=extra)
        return key, (out if found is not None else None)

    with ThreadPoolExecutor(jobs) as pool:
        done.update(pool.map(run, wanted))
    tables = {arm: {} for arm in ARMS}
    losses = {arm: {} for arm in ARMS}
    diverged = {arm: [] for arm in ARMS}
    names = None
    for (arm, seed), out in sorted(done.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if seed > count:
            continue
        if out is None:
            diverged[arm].append(seed)
            continue
        with open(os.path.join(out, "results.json")) as f:
            rows = json.load(f)["rows"]
        names = [f"{r['method']} {r['test_scale']}" for r in rows]
        tables[arm][seed] = [r["top1_error"] for r in rows]
        losses[arm][seed] = late_training_loss(out)
    rows = [{"row": name, **summary({arm: {s: t[i] for s, t in tables[arm].items()} for arm in ARMS})}
            for i, name in enumerate(names or [])]
    return {"seeds": count, "demo_options": list(extra) or "the demo's defaults (400 iterations)",
            "threads": {arm: threads + ARMS[arm][1] for arm in ARMS},
            "top1_error_by_seed": {arm: {str(s): v for s, v in sorted(t.items())} for arm, t in tables.items()},
            "late_training_loss_by_seed": {arm: {str(s): round(v, 4) for s, v in sorted(t.items())}
                                           for arm, t in losses.items()},
            "diverged_seeds": diverged, "rows": rows, "late_training_loss": summary(losses)}
