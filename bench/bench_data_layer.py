"""Benchmark: VGGData augmented 224x224 images/s vs bare JPEG decoding of the same records.

    .venv/bin/python -m bench.bench_data_layer [--records 300]

An encoded LMDB of real photos (scikit-image samples at ~500 px, repeated to a few hundred
records); VGGData in TRAIN with scale jitter [256, 512], 224 crops, flips, colour shift, batch 32,
decoding in this process (workers 0), then with 2 prefetching worker processes. The reference is
a loop of cv2.imdecode over the same records' bytes (no Datum parse, no resize). One thread for
OpenCV and torch on both sides. Wall-clock images/s and images per CPU-second (parent + workers,
read from /proc) are both reported; on a shared machine only the latter is stable. JSON: bench/results/bench_data_layer.json.
"""
import argparse
import json
import os
import shutil
import tempfile
import time

import cv2
import numpy as np
import torch

from bench import _photos
from vgg_caffe.data.convert import Options, convert_imageset
from vgg_caffe.data.db import Reader
from bench._report import result_path, write
from vgg_caffe.net import Net
from vgg_caffe.proto import pb

OUT = result_path("bench_data_layer")


def _proc_cpu(pid):
    """CPU seconds of a process from /proc (the fork-server workers are not our children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu(layer):
    return time.process_time() + sum(_proc_cpu(pid) for pid in layer.loader.worker_pids())


def layer_rate(db, batch, iters, workers):
    cfg = {"source": db, "batch_size": batch, "scale": [256, 512], "crop_size": 224, "mirror": True,
           "color_shift": 0.1, "mean_value": [103.939, 116.779, 123.68], "workers": workers, "prefetch": 2}
    net = Net('layer { name: "data" type: "Python" top: "data" top: "label" python_param { '
              f'module: "vgg_caffe.data.vgg_layer" layer: "VGGData" param_str: \'{json.dumps(cfg)}\' }} }}', "TRAIN")
    layer = net.layer("data")
    layer.batch(0)  # start-up (worker processes) outside the timing
    t, c = time.perf_counter(), _cpu(layer)
    for it in range(1, iters + 1):
        layer.batch(it)
    rate = batch * iters / (time.perf_counter() - t)
    # Prefetched iterations beyond the last are still being computed: let them finish so the
    # CPU they cost is counted against the images they produce.
    extra = len(layer.loader.pending)
    for r in layer.loader.pending.values():
        r.wait()
    cpu_rate = batch * (iters + extra) / (_cpu(layer) - c) if workers else batch * iters / (_cpu(layer) - c)
    layer.close()
    return rate, cpu_rate


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iters", type=int, default=8)
    a = p.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    tmp = tempfile.mkdtemp(prefix="bench_data_")
    try:
        files = _photos.write(os.path.join(tmp, "imgs"))
        listfile = os.path.join(tmp, "list.txt")
        with open(listfile, "w") as f:
            f.writelines(f"{files[i % len(files)]} {i % 1000}\n" for i in range(a.records))
        db = os.path.join(tmp, "db")
        convert_imageset(os.path.join(tmp, "imgs"), listfile, db, Options(encoded=True, shuffle=True),
                         progress=False, log=lambda *x: None)
        reader = Reader(db)
        payloads = [pb.Datum.FromString(v).data for _, v in reader.items()]
        n = a.batch * a.iters
        t, c = time.perf_counter(), time.process_time()
        for i in range(n):
            cv2.imdecode(np.frombuffer(payloads[i % len(payloads)], np.uint8), cv2.IMREAD_COLOR)
        bare = n / (time.perf_counter() - t)
        bare_cpu = n / (time.process_time() - c)
        one, one_cpu = layer_rate(db, a.batch, a.iters, 0)
        two, two_cpu = layer_rate(db, a.batch, a.iters, 2)
        result = {
            "workload": f"{a.records} encoded records (~500 px JPEG), VGGData TRAIN scale [256,512] crop 224, "
                        f"batch {a.batch} x {a.iters} iterations",
            "images_per_s": {"bare_jpeg_decode": round(bare, 1), "vgg_layer_in_process": round(one, 1),
                             "vgg_layer_2_workers": round(two, 1)},
            "images_per_cpu_s": {"bare_jpeg_decode": round(bare_cpu, 1), "vgg_layer_in_process": round(one_cpu, 1),
                                 "vgg_layer_2_workers": round(two_cpu, 1)},
            "vgg_layer_over_bare_decode": round(one / bare, 3),
            "vgg_layer_over_bare_decode_cpu": round(one_cpu / bare_cpu, 3),
            "speedup_2_workers": round(two / one, 3),
            "cpu_efficiency_2_workers_vs_in_process": round(two_cpu / one_cpu, 3),
            "note": "wall-clock figures; the machine may be shared (see load_average_1min); "
                "images per CPU-second (parent + workers) are the load-independent measure",
        }
        print(json.dumps(write(OUT, result), indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
