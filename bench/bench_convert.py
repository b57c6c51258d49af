"""Benchmark: convert_imageset throughput vs a bare decode + resize + encode loop.

    .venv/bin/python -m bench.bench_convert [--images 240]

Workload: the VGG preparation step, --encoded --min_side 256 (isotropic rescale, JPEG re-encode)
on ~500 px JPEG photos. Reports images/s of (a) a bare loop doing read + cv2.imdecode + cv2.resize
+ cv2.imencode of the same files, (b) the converter with 1 worker (everything: list, decode,
resize, encode, Datum, LMDB commits), (c) with 2 worker processes; ratios measured side by side in
one run, OpenCV and torch limited to one thread on every side. Besides wall-clock images/s it
reports images per CPU-second (this process + its workers): on a shared, oversubscribed machine
wall-clock scaling says little, while equal images/CPU-s for 1 and 2 workers means the work
splits without overhead and scales with free cores. JSON: bench/results/bench_convert.json.
"""
import argparse
import json
import os
import resource
import shutil
import tempfile
import time

import cv2
import torch

from bench import _photos
from vgg_caffe.data import image
from vgg_caffe.data.convert import Options, convert_imageset
from bench._report import result_path, write

OUT = result_path("bench_convert")


def bare_loop(root, names, side):
    for n in names:
        with open(os.path.join(root, n), "rb") as f:
            data = f.read()
        img = cv2.imdecode(image.np.frombuffer(data, image.np.uint8), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        nh, nw = image.min_side_size(h, w, side)
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        cv2.imencode(".JPEG", img)


def _cpu():
    """CPU seconds of this process and of its reaped children (the worker pool)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=240)
    p.add_argument("--side", type=int, default=256)
    a = p.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    tmp = tempfile.mkdtemp(prefix="bench_convert_")
    try:
        files = _photos.write(os.path.join(tmp, "imgs"))
        names = [files[i % len(files)] for i in range(a.images)]
        listfile = os.path.join(tmp, "list.txt")
        with open(listfile, "w") as f:
            f.writelines(f"{n} {i % 1000}\n" for i, n in enumerate(names))
        opts = dict(encoded=True, min_side=a.side)
        quiet = dict(progress=False, log=lambda *x: None)
        bare_loop(os.path.join(tmp, "imgs"), names[:10], a.side)  # warm caches
        runs, cpu = {}, {}
        for label, fn in [
            ("bare_loop", lambda: bare_loop(os.path.join(tmp, "imgs"), names, a.side)),
            ("convert_1_worker", lambda: convert_imageset(os.path.join(tmp, "imgs"), listfile, os.path.join(tmp, "db1"),
                                                          Options(**opts), workers=1, **quiet)),
            ("convert_2_workers", lambda: convert_imageset(os.path.join(tmp, "imgs"), listfile, os.path.join(tmp, "db2"),
                                                           Options(**opts), workers=2, **quiet)),
        ]:
            t, c = time.perf_counter(), _cpu()
            fn()
            runs[label] = a.images / (time.perf_counter() - t)
            cpu[label] = a.images / (_cpu() - c)
        from vgg_caffe.data.db import Reader
        same = list(Reader(os.path.join(tmp, "db1")).items()) == list(Reader(os.path.join(tmp, "db2")).items())
        result = {
            "workload": f"{a.images} JPEG photos (~500 px), --encoded --min_side {a.side}",
            "images_per_s": {k: round(v, 1) for k, v in runs.items()},
            "images_per_cpu_s": {k: round(v, 1) for k, v in cpu.items()},
            "cpu_efficiency_2_workers_vs_1": round(cpu["convert_2_workers"] / cpu["convert_1_worker"], 3),
            "bare_over_converter_1_worker": round(runs["bare_loop"] / runs["convert_1_worker"], 3),
            "speedup_2_workers_over_1": round(runs["convert_2_workers"] / runs["convert_1_worker"], 3),
            "outputs_identical_1_vs_2_workers": same,
            "note": "wall-clock figures; the machine may be shared (see load_average_1min); "
                "the 2-worker run also has the writing parent competing for the 2 cores",
        }
        print(json.dumps(write(OUT, result), indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
