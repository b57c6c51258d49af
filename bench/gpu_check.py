"""The GPU checks of the GPU path in one go, for a machine with one CUDA GPU (9 minutes at most).

    bash bench/gpu_check.sh            # installs a carried lmdb wheel if needed, then runs this
    python3 -m bench.gpu_check [--quick]

Steps, each under its own time limit and all within --budget (540 s; steps that no longer fit are
recorded as skipped), each recorded whether it passes or not:
  tests      the GPU tests of tests/test_gpu_path.py and tests/test_overlap.py (CUDA fills equal
             to the CPU's, a bare net on CUDA, deterministic runs bit-repeatable, TF32 off in fp32,
             dropout windows on CUDA, synchronising calls per step), with the CPU ones around them;
  scaling    bench/gpu_scaling.py on 1 GPU: VGG-16, batch 256, Solver.step with the real data
             layer and the synthetic upper bound, in fp32 (Caffe's arithmetic), tf32 and bf16;
  profile    per-GPU batches 256/128/64/32 and gradient-bucket readiness, bf16 -> the 4- and
             8-GPU efficiency PREDICTED over NVLink and PCIe (bench/scaling_model.py);
  baseline   torchvision's VGG-16 in a plain torch loop vs Solver.step, bf16, channels_last;
  compile    bf16 with torch.compile (last: the compiler may take long).
Writes bench/results/gpu_check.json (what ran, how long, pass/fail, the test outcomes) beside
the steps' own gpu_*.json, and copies them all to $OUT when that is set (the device tool brings
back what is there). Targets: bf16 VGG-16 >= 1.0x the baseline and >= 45% MFU; 0.95 predicted
at 4 GPUs, 0.90 at 8.
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")


def steps(quick, have_lmdb):
    inputs = "real,synthetic" if have_lmdb else "synthetic"
    it = ["--iters", "6", "--warmup", "2"] if quick else ["--iters", "12", "--warmup", "3"]
    py = [sys.executable]
    junit = os.path.join(RESULTS, "gpu_check_tests.xml")
    scaling = py + ["-m", "bench.gpu_scaling", "--gpus", "1", "--inputs"]
    return [
        ("tests", 150, py + ["-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                             "tests/test_gpu_path.py", "tests/test_overlap.py"]),
        ("scaling_bf16", 90, scaling + [inputs, "--precision", "bf16", *it,
                                         "--out", os.path.join(RESULTS, "gpu_scaling_bf16.json")]),
        ("scaling_fp32", 100, scaling + [inputs, "--precision", "fp32", *it,
                                         "--out", os.path.join(RESULTS, "gpu_scaling_fp32.json")]),
        ("scaling_tf32", 60, scaling + ["synthetic", "--precision", "tf32", *it,
                                        "--out", os.path.join(RESULTS, "gpu_scaling_tf32.json")]),
        ("profile_bf16", 90, py + ["-m", "bench.gpu_scaling", "--profile", "--precision", "bf16", *it]),
        ("baseline_bf16", 60, py + ["-m", "bench.gpu_profile", "--baseline", "--precision", "bf16", *it]),
        ("compile_bf16", 90, scaling + ["synthetic", "--precision", "bf16", "--compile", *it,
                                         "--out", os.path.join(RESULTS, "gpu_scaling_bf16_compile.json")]),
    ]


def test_outcomes(path):
    """{test id: passed | failed | skipped (reason)} from pytest's JUnit XML."""
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError):
        return {}
    out = {}
    for case in tree.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        skipped, failed = case.find("skipped"), case.find("failure")
        failed = case.find("error") if failed is None else failed
        out[name] = ("failed: " + (failed.get("message") or "")[:300] if failed is not None else
                     "skipped: " + (skipped.get("message") or "")[:100] if skipped is not None else "passed")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer timed iterations")
    p.add_argument("--only", help="comma-separated step names")
    p.add_argument("--budget", type=float, default=540,
                   help="seconds for all steps (the device tool runs one command for 600 s at most)")
    args = p.parse_args(argv)
    os.makedirs(RESULTS, exist_ok=True)
    sync_report = os.path.join(RESULTS, "gpu_check_syncs.tmp.json")
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               VGG_CAFFE_GPU_REPORT=sync_report)
    have_lmdb = subprocess.run([sys.executable, "-c", "import lmdb"], env=env).returncode == 0
    report = {"benchmark": "gpu_check", "have_lmdb": have_lmdb, "steps": []}
    try:
        import torch
        report.update(torch=torch.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                      device_name=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    except Exception as e:  # the report says why nothing ran
        report["torch_error"] = repr(e)
    if not have_lmdb:
        report["note"] = ("lmdb is not installed: the package cannot import its data layers; carry a wheel in "
                          ".whl (see bench/gpu_check.sh)")
    only = set(args.only.split(",")) if args.only else None
    start = time.time()
    for name, limit, cmd in steps(args.quick, have_lmdb):
        if only and name not in only:
            continue
        limit = min(limit, args.budget - (time.time() - start))
        if limit < 30:   # what is left of the budget would not do: say so rather than run out
            report["steps"].append({"step": name, "rc": "skipped: time budget spent", "seconds": 0})
            continue
        t0 = time.time()
        print(f"== {name} (limit {limit}s): {' '.join(cmd[1:])}", flush=True)
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=limit, capture_output=True, text=True)
            rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-3000:]
        except subprocess.TimeoutExpired as e:
            rc, tail = "timeout", ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes)
                                   else (e.stdout or ""))[-3000:]
        print(tail, flush=True)
        report["steps"].append({"step": name, "rc": rc, "seconds": round(time.time() - t0, 1), "tail": tail})
        _write(report)
    report["tests"] = test_outcomes(os.path.join(RESULTS, "gpu_check_tests.xml"))
    if os.path.exists(sync_report):
        with open(sync_report) as f:
            report["synchronisations"] = json.load(f)
        os.remove(sync_report)
    # Every step's figures in this one file too (the device tool brings back at most 8 files).
    found = sorted(p for p in glob.glob(os.path.join(RESULTS, "gpu_*.json"))
                   if "dryrun" not in p and not p.endswith("gpu_check.json"))
    report["results"] = {}
    for path in found:
        with open(path) as f:
            report["results"][os.path.basename(path)] = json.load(f)
    _write(report)
    out = os.environ.get("OUT")
    if out:
        for path in [os.path.join(RESULTS, "gpu_check.json")] + found[:7]:
            shutil.copy(path, out)
    failed = [s["step"] for s in report["steps"] if s["rc"] not in (0, "skipped: time budget spent")]
    print("failed steps: " + (", ".join(failed) if failed else "none"))
    return 1 if failed else 0


def _write(report):
    sys.path.insert(0, ROOT)
    from bench._report import write
    write(os.path.join(RESULTS, "gpu_check.json"), report)


if __name__ == "__main__":
    sys.exit(main())
