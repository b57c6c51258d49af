"""Benchmark: loading and saving a VGG-16-sized .caffemodel against just reading / writing its bytes.

    .venv/bin/python -m bench.bench_weights [--keep] [--threads 1] [--repeats 5]

Writes a synthetic VGG_ILSVRC_16_layers.caffemodel to bench/tmp/ (V1 format, the released file's
layer names, types and legacy 4-d blob dims, random floats: ~553 MB), then, each in a fresh
subprocess so that its peak RSS (ru_maxrss) is its own:
  raw_read        open + read() of the whole file into bytes
  load_numpy      vgg_caffe.io.caffemodel.read_weights (every blob into its own numpy array)
  load_net        Net.copy_from into a Net built from prototxt/D/deploy.prototxt (netgen's
                  deploy net when that file is absent); only the copy is timed
  protobuf_parse  NetParameter.ParseFromString of the bytes (protobuf upb), the usual way
  raw_write       write() of the same number of bytes + fsync
  save_net        Net.save of the loaded net (current format, fsync'd, atomic rename)
  save_hdf5       Net.save to .h5 (Caffe's HDF5 layout, via h5py)
  load_net_hdf5   Net.copy_from that .h5
  protobuf_save   SerializeToString + write + fsync of the parsed message
The file is read once first so every read comes from the page cache (the raw read is then a
memory copy, the strictest baseline). Ratios to raw_read / raw_write and peak RSS over the file
size go to bench/results/weights.json. The temp files are deleted unless --keep.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

from bench._report import result_path, write as write_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TMP = os.path.join(ROOT, "bench", "tmp")
RESULTS = result_path("weights")
MODEL = os.path.join(TMP, "VGG_ILSVRC_16_layers.caffemodel")
OUT = os.path.join(TMP, "saved.caffemodel")
OUT_H5 = os.path.join(TMP, "saved.h5")
DEPLOY = os.path.join(ROOT, "prototxt", "D", "deploy.prototxt")


def make_model(path):
    """The released VGG-16 file's layout: V1 layers, legacy dims, the blobs of configuration D."""
    import numpy as np

    from vgg_caffe.io import caffemodel as weights
    from vgg_caffe.vgg.configs import get_config
    from vgg_caffe.proto import pb

    rng = np.random.default_rng(0)
    cfg = get_config("D")
    V1 = pb.V1LayerParameter
    layers, channels, bottom = [], 3, "data"

    def add(name, type_, arrays=(), top=None, **params):
        layer = V1(name=name, type=type_, bottom=[bottom], top=[top or name])
        for key, value in params.items():
            getattr(layer, key).MergeFrom(value)
        layers.append((layer, list(arrays)))
        return top or name

    for s, stage in enumerate(cfg.stages, start=1):
        for conv in stage:
            w = rng.standard_normal((conv.width, channels, 3, 3), dtype=np.float32)
            b = rng.standard_normal(conv.width, dtype=np.float32)
            cp = pb.ConvolutionParameter(num_output=conv.width, pad=[1], kernel_size=[3])
            bottom = add(conv.name, V1.CONVOLUTION, (w, b), convolution_param=cp)
            add(conv.relu, V1.RELU, top=bottom)
            channels = conv.width
        bottom = add(f"pool{s}", V1.POOLING, pooling_param=pb.PoolingParameter(pool=0, kernel_size=2, stride=2))
    inputs = channels * 7 * 7
    for i, width in ((6, 4096), (7, 4096), (8, 1000)):
        w = rng.standard_normal((width, inputs), dtype=np.float32)
        b = rng.standard_normal(width, dtype=np.float32)
        bottom = add(f"fc{i}", V1.INNER_PRODUCT, (w, b), inner_product_param=pb.InnerProductParameter(num_output=width))
        if i < 8:
            add(f"relu{i}", V1.RELU, top=bottom)
            add(f"drop{i}", V1.DROPOUT, top=bottom, dropout_param=pb.DropoutParameter(dropout_ratio=0.5))
        inputs = width
    add("prob", V1.SOFTMAX)
    weights.write_weights(path, layers, net_name="VGG_ILSVRC_16_layers", v1=True)


def _deploy():
    from vgg_caffe.vgg.netgen import deploy_net
    return DEPLOY if os.path.exists(DEPLOY) else deploy_net("D")


def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _start():
    """(peak RSS so far in bytes, wall clock, CPU time): the origin a measurement is taken from.
    Tasks that must prepare something first (a net to save, data to write) restart it after."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, time.perf_counter(), _cpu()


def child(task, threads):
    """Run one measurement in this (fresh) process; print JSON."""
    if task == "make":
        make_model(MODEL)
        print(json.dumps({"bytes": os.path.getsize(MODEL)}))
        return
    import torch
    torch.set_num_threads(threads)
    from vgg_caffe.io import caffemodel as weights
    from vgg_caffe.net import Net
    from vgg_caffe.proto import pb
    result = {}
    net = None
    if task in ("load_net", "save_net", "save_hdf5", "load_net_hdf5"):
        net = Net(_deploy(), phase="TEST", input_shapes={"data": (1, 3, 224, 224)})
    size = os.path.getsize(MODEL)
    base, t0, c0 = _start()
    if task == "raw_read":
        with open(MODEL, "rb") as f:
            data = f.read()
        assert len(data) == size
    elif task == "load_numpy":
        layers = weights.read_weights(MODEL)
        result["parameters"] = int(sum(a.size for _, arrays in layers.values() for a in arrays))
    elif task == "load_net":
        report = net.copy_from(MODEL)
        result["layers_copied"] = len(report.copied)
    elif task == "protobuf_parse":
        with open(MODEL, "rb") as f:
            msg = pb.NetParameter()
            msg.ParseFromString(f.read())
    elif task == "raw_write":
        data = os.urandom(1) * size
        base, t0, c0 = _start()
        with open(OUT, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    elif task == "save_net":
        net.copy_from(MODEL)
        base, t0, c0 = _start()
        net.save(OUT)
        result["bytes"] = os.path.getsize(OUT)
    elif task == "save_hdf5":
        net.copy_from(MODEL)
        base, t0, c0 = _start()
        net.save(OUT_H5)
    elif task == "load_net_hdf5":
        report = net.copy_from(OUT_H5)
        result["layers_copied"] = len(report.copied)
    elif task == "protobuf_save":
        with open(MODEL, "rb") as f:
            msg = pb.NetParameter()
            msg.ParseFromString(f.read())
        base, t0, c0 = _start()
        with open(OUT, "wb") as f:
            f.write(msg.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
    else:
        raise SystemExit(f"unknown task {task}")
    result["seconds"] = time.perf_counter() - t0
    result["cpu_seconds"] = _cpu() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result.update(rss_before=base, rss_peak=peak, rss_added=peak - base)
    print(json.dumps(result))


def run_child(task, threads):
    out = subprocess.run([sys.executable, "-m", "bench.bench_weights", "--child", task, "--threads", str(threads)],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{task} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep bench/tmp/*.caffemodel")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; the fastest run of each task counts")
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.threads)

    os.makedirs(TMP, exist_ok=True)
    # Everything heavy runs in children: a child's ru_maxrss starts from its parent's RSS at fork,
    # so this process stays small.
    t0 = time.perf_counter()
    size = run_child("make", args.threads)["bytes"]
    print(f"wrote {MODEL}: {size:,} bytes in {time.perf_counter() - t0:.1f}s", flush=True)
    with open(MODEL, "rb") as f:          # warm the page cache
        while f.read(1 << 24):
            pass
    runs = {}
    try:
        # Rounds alternate the tasks, so a noisy moment hits both sides of a ratio alike; the
        # fastest run of each counts. Dirty pages are flushed before each run (os.sync) so a
        # write does not pay for the previous one's writeback.
        for round_ in range(args.repeats):
            for task in ("raw_read", "load_numpy", "load_net", "protobuf_parse",
                         "raw_write", "save_net", "save_hdf5", "load_net_hdf5", "protobuf_save"):
                if task.startswith("protobuf") and round_:
                    continue                    # slow and memory-hungry: once is enough
                os.sync()
                r = run_child(task, args.threads)
                best = runs.get(task)
                if best is None:
                    runs[task] = best = dict(r)
                for key in ("seconds", "cpu_seconds"):
                    best[key] = min(best[key], r[key])
                best["rss_peak"] = max(best["rss_peak"], r["rss_peak"])
                best["rss_added"] = max(best["rss_added"], r["rss_added"])
                print(f"round {round_} {task:15} {r['seconds']:7.3f}s (cpu {r['cpu_seconds']:6.3f}s)  peak RSS {r['rss_peak'] / 2**20:7.0f} MiB "
                      f"(+{r['rss_added'] / 2**20:.0f} MiB)", flush=True)
    finally:
        if not args.keep:
            for p in (MODEL, OUT, OUT_H5):
                if os.path.exists(p):
                    os.remove(p)
    read, write = runs["raw_read"]["seconds"], runs["raw_write"]["seconds"]
    cread, cwrite = runs["raw_read"]["cpu_seconds"], runs["raw_write"]["cpu_seconds"]
    result = {
        "file_bytes": size,
        "threads": args.threads,
        "repeats": args.repeats,
        "net_source": "prototxt/D/deploy.prototxt" if os.path.exists(DEPLOY) else "netgen.deploy_net('D')",
        "runs": runs,
        "ratios": {
            "load_numpy_over_raw_read": runs["load_numpy"]["seconds"] / read,
            "load_net_over_raw_read": runs["load_net"]["seconds"] / read,
            "protobuf_parse_over_raw_read": runs["protobuf_parse"]["seconds"] / read,
            "save_net_over_raw_write": runs["save_net"]["seconds"] / write,
            "protobuf_save_over_raw_write": runs["protobuf_save"]["seconds"] / write,
            "load_net_hdf5_over_raw_read": runs["load_net_hdf5"]["seconds"] / read,
            "save_hdf5_over_raw_write": runs["save_hdf5"]["seconds"] / write,
            "cpu_load_numpy_over_raw_read": runs["load_numpy"]["cpu_seconds"] / cread,
            "cpu_load_net_over_raw_read": runs["load_net"]["cpu_seconds"] / cread,
            "cpu_protobuf_parse_over_raw_read": runs["protobuf_parse"]["cpu_seconds"] / cread,
            "cpu_save_net_over_raw_write": runs["save_net"]["cpu_seconds"] / cwrite,
            "cpu_protobuf_save_over_raw_write": runs["protobuf_save"]["cpu_seconds"] / cwrite,
            "load_numpy_peak_rss_over_file": runs["load_numpy"]["rss_peak"] / size,
            "load_net_peak_rss_over_file": runs["load_net"]["rss_peak"] / size,
            "load_net_added_rss_over_file": runs["load_net"]["rss_added"] / size,
            "protobuf_parse_peak_rss_over_file": runs["protobuf_parse"]["rss_peak"] / size,
        },
        "note": "seconds and cpu_seconds are each the minimum over the rounds (wall time on a shared, "
                "noisy machine; cpu_seconds = user + sys of the measuring process); RSS the maximum",
        "targets": {"load_over_raw_read": 2.0, "save_over_raw_write": 3.0, "peak_rss_over_file": 2.0},
    }
    write_report(RESULTS, result)
    print(json.dumps(result["ratios"], indent=2))


if __name__ == "__main__":
    main()
