"""`python -m vgg_caffe.solve --tensorboard DIR`: the events file holds the numbers the log shows.

A short solve on an HDF5 file writes Caffe's log and TensorBoard events; the log is read back with
the regular expressions of Caffe's tools/extra/parse_log.py (written out here), the events with
tensorboard's own EventAccumulator, and every scalar must be the logged value at the logged
iteration (to float32, the precision of an event). Without the tensorboard package the flag fails
before anything is trained, saying how to install it.
"""
import re
import sys

import h5py
import numpy as np
import pytest

from vgg_caffe import solve
from vgg_caffe.errors import CaffeError

BATCH, ITER_SIZE = 8, 2

NET = """name: "tb"
layer {{ name: "data" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param {{ source: "{list}" batch_size: {batch} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param {{ num_output: 3 weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
layer {{ name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy"
        include {{ phase: TEST }} }}
"""

# Caffe's tools/extra/parse_log.py expressions, plus the display line's iter/s.
ITERATION = re.compile(r"Iteration (\d+)")
DISPLAY = re.compile(r"Iteration \d+ \(([\d.eE+-]+) iter/s, [^)]*\), loss = ([\d.eE+-]+)")
FINAL = re.compile(r"Iteration \d+, loss = ([\d.eE+-]+)")   # after the last iteration
OUTPUT = re.compile(r"(Train|Test) net output #(\d+): (\S+) = ([\.\deE+-]+)")
LR = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)")


def write_run(tmp_path, max_iter=20):
    r = np.random.RandomState(0)
    x = r.randn(32, 4).astype(np.float32)
    with h5py.File(tmp_path / "train.h5", "w") as h:
        h["data"] = x
        h["label"] = ((x[:, 0] > 0).astype(int) + (x[:, 1] > 1)).astype(np.float32)
    (tmp_path / "list.txt").write_text(str(tmp_path / "train.h5") + "\n")
    (tmp_path / "net.prototxt").write_text(NET.format(list=tmp_path / "list.txt", batch=BATCH))
    (tmp_path / "solver.prototxt").write_text(f"""net: "net.prototxt"
test_iter: 2 test_interval: 10 base_lr: 0.1 lr_policy: "step" gamma: 0.5 stepsize: 8 momentum: 0.9
max_iter: {max_iter} display: 4 iter_size: {ITER_SIZE} average_loss: 3 snapshot_after_train: false
random_seed: 1 solver_mode: CPU
""")
    return tmp_path / "solver.prototxt"


def logged_values(path):
    """{tag: [(iteration, value)]} from the log, in the events' naming."""
    found, iteration = {}, None
    with open(path) as f:
        for line in f:
            m = ITERATION.search(line)
            if m:
                iteration = int(m.group(1))
            if iteration is None:
                continue
            m = DISPLAY.search(line)
            if m:
                found.setdefault("train/smoothed_loss", []).append((iteration, float(m.group(2))))
                if float(m.group(1)) > 0:
                    found.setdefault("throughput/images_per_s", []).append(
                        (iteration, float(m.group(1)) * BATCH * ITER_SIZE))
            m = FINAL.search(line)
            if m:
                found.setdefault("train/smoothed_loss", []).append((iteration, float(m.group(1))))
            m = OUTPUT.search(line)
            if m:
                found.setdefault(f"{m.group(1).lower()}/{m.group(3)}", []).append((iteration, float(m.group(4))))
            m = LR.search(line)
            if m:
                found.setdefault("train/lr", []).append((iteration, float(m.group(1))))
    return found


def test_events_equal_the_logged_values(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    solver = write_run(tmp_path)
    log, events = tmp_path / "train.log", tmp_path / "tb"
    assert solve.main([str(solver), "--no-progress", "--log", str(log), "--tensorboard", str(events)]) == 0
    assert list(events.glob("events.out.tfevents.*")), "no events file"
    acc = EventAccumulator(str(events))
    acc.Reload()
    expected = logged_values(log)
    # displays at 0, 4, ..., 16 and the final one at 20; tests at 0, 10, 20
    assert [i for i, _ in expected["train/smoothed_loss"]] == [0, 4, 8, 12, 16, 20]
    assert [i for i, _ in expected["test/accuracy"]] == [0, 10, 20]
    assert expected["train/lr"] == [(i, 0.1 * 0.5 ** (i // 8)) for i in (0, 4, 8, 12, 16)]   # "step"
    assert set(acc.Tags()["scalars"]) == set(expected) | {"throughput/iters_per_s"}
    for tag, rows in expected.items():
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert [s for s, _ in got] == [i for i, _ in rows], tag
        assert np.allclose([v for _, v in got], [v for _, v in rows], rtol=1e-6, atol=0), tag
    # the first display measures no speed (0 iter/s) and adds no point
    assert [e.step for e in acc.Scalars("throughput/images_per_s")] == [4, 8, 12, 16]
    # the events are dated as the run: increasing, within a few minutes
    times = [e.wall_time for e in acc.Scalars("train/smoothed_loss")]
    assert times == sorted(times) and times[-1] - times[0] < 300


def test_without_tensorboard_the_flag_says_how_to_install(tmp_path, monkeypatch):
    solver = write_run(tmp_path)
    monkeypatch.setitem(sys.modules, "tensorboard", None)   # import tensorboard -> ImportError
    with pytest.raises(CaffeError, match=r"pip install tensorboard"):
        solve.main([str(solver), "--no-progress", "--log", str(tmp_path / "train.log"),
                    "--tensorboard", str(tmp_path / "tb")])
    assert not (tmp_path / "train.log").exists() and not (tmp_path / "tb").exists()   # nothing ran


def test_unwritable_directory_and_bad_device_are_one_line_errors(tmp_path):
    solver = write_run(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(CaffeError, match=r"--device 'foo': expected cpu, cuda or cuda:N"):
        solve.main([str(solver), "--no-progress", "--device", "foo"])
    pytest.importorskip("tensorboard")   # without it, --tensorboard stops earlier (tested above)
    with pytest.raises(CaffeError, match=r"--tensorboard .*file/tb: cannot create the events directory"):
        solve.main([str(solver), "--no-progress", "--tensorboard", str(tmp_path / "file" / "tb")])
