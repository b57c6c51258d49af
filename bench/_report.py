"""Where benchmark results go, and the machine facts every result carries.

Each benchmark builds its own figures; `write` adds what is needed to read them later (cores,
architecture, torch version, load average at the end, UTC time: on a shared machine the load
says how far to trust wall-clock figures) and writes the JSON atomically.
"""
import json
import os
import platform
import time

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def result_path(name):
    """bench/results/<name>.json"""
    return os.path.join(RESULTS_DIR, f"{name}.json")


def machine():
    import torch

    return {"cpu_count": os.cpu_count(), "machine": platform.machine(), "torch": torch.__version__,
            "load_average_1min": round(os.getloadavg()[0], 2),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write(path, result):
    """Write `result` plus the machine facts (keys the benchmark set itself win) to `path`."""
    # Imported here so that importing this module (bench_weights' measuring children) stays light.
    from vgg_caffe.fileio import atomic_write

    full = {**machine(), **result}
    atomic_write(path, json.dumps(full, indent=1) + "\n")
    return full
