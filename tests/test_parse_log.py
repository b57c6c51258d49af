"""The training log a real short run writes: Caffe's parse_log.py can read it, and ours does.

Upstream's tools/extra/parse_log.py and extract_seconds.py find values with the regular
expressions written out below and date every line after the first "Iteration" from its glog
prefix (month and day from characters 1-4, then hh:mm:ss.micro); their start time is the line
containing "Solving". The log of a short `Solver` run must satisfy all of that, and
tools/parse_log.py must produce the CSV rows the run displayed.
"""
import csv
import datetime
import os
import re
import subprocess
import sys

import pytest
import torch

from vgg_caffe.proto import parse_text, pb
from vgg_caffe.train.solver import Solver
from vgg_caffe.train.log import TrainingLog, parse_log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Upstream Caffe's expressions (tools/extra/parse_log.py).
UP_ITERATION = re.compile(r"Iteration (\d+)")
UP_TRAIN = re.compile(r"Train net output #(\d+): (\S+) = ([\.\deE+-]+)")
UP_TEST = re.compile(r"Test net output #(\d+): (\S+) = ([\.\deE+-]+)")
UP_LR = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)")


def upstream_datetime(line, year):
    """extract_seconds.extract_datetime_from_line."""
    parts = line.strip().split()
    month, day = int(parts[0][1:3]), int(parts[0][3:])
    stamp = parts[1]
    pos = stamp.rfind(".")
    h, m, s = (int(x) for x in stamp[:pos].split(":"))
    return datetime.datetime(year, month, day, h, m, s, int(stamp[pos + 1:]))


NET = """
name: "logged"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 8 dim: 4 } shape { dim: 8 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy"
        include { phase: TEST } }
"""


def feed(index, start, stop):
    g = torch.Generator().manual_seed(index)
    x = torch.randn(8, 4, generator=g)
    return {"data": x[start:stop], "label": (x[:, 0] > 0).float()[start:stop] + (x[:, 1] > 1).float()[start:stop]}


@pytest.fixture
def log_file(tmp_path):
    param = parse_text(f"""net_param {{ {NET} }} test_iter: 2 test_interval: 10
        base_lr: 0.1 lr_policy: "step" gamma: 0.5 stepsize: 15 momentum: 0.9 max_iter: 30 display: 5
        snapshot_after_train: false random_seed: 1 solver_mode: CPU""", pb.SolverParameter())
    path = tmp_path / "run.log"
    with open(os.devnull, "w") as quiet:
        log = TrainingLog(stream=quiet, path=str(path))
        Solver(param, log=log, train_feed=feed, test_feeds=[feed]).solve()
        log.close()
    return path


def test_log_satisfies_upstream_parser(log_file):
    lines = log_file.read_text().splitlines()
    solving = [l for l in lines if "Solving" in l]
    assert len(solving) == 1
    start = upstream_datetime(solving[0], 2026)
    seen_iteration = False
    train, test, rates = [], [], []
    for line in lines:
        if UP_ITERATION.search(line):
            seen_iteration = True
        if not seen_iteration:
            continue
        assert upstream_datetime(line, 2026) >= start     # every line dates
        if UP_TRAIN.search(line):
            train.append(UP_TRAIN.search(line).groups())
        if UP_TEST.search(line):
            test.append(UP_TEST.search(line).groups())
        if UP_LR.search(line):
            rates.append(float(UP_LR.search(line).group(1)))
    assert len(train) == 6 and all(name == "loss" for _, name, _ in train)   # iterations 0, 5, ..., 25
    assert [name for _, name, _ in test] == ["accuracy", "loss"] * 4         # tests at 0, 10, 20, 30; outputs by name, as Caffe
    assert rates == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05]


def test_parse_log_tool_writes_caffes_csvs(log_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "parse_log.py"), str(log_file), str(out)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    with open(out / "run.log.train") as f:
        train = list(csv.DictReader(f))
    with open(out / "run.log.test") as f:
        test = list(csv.DictReader(f))
    assert list(train[0]) == ["NumIters", "Seconds", "LearningRate", "loss"]
    assert [int(r["NumIters"]) for r in train] == [0, 5, 10, 15, 20, 25]
    # the lr printed after iteration N's outputs lands on the next row; the first row copies the
    # second's (as Caffe's tool does)
    assert [float(r["LearningRate"]) for r in train] == [0.1, 0.1, 0.1, 0.1, 0.05, 0.05]
    assert list(test[0]) == ["NumIters", "Seconds", "LearningRate", "accuracy", "loss"]
    assert [int(r["NumIters"]) for r in test] == [0, 10, 20, 30]
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in test)
    seconds = [float(r["Seconds"]) for r in train]
    assert seconds == sorted(seconds) and seconds[0] >= 0
    # the values are the ones logged
    logged = [float(m.group(3)) for m in map(UP_TRAIN.search, log_file.read_text().splitlines()) if m]
    assert [float(r["loss"]) for r in train] == logged


def test_parse_log_ignores_undated_lines(tmp_path):
    path = tmp_path / "mixed.log"
    path.write_text(
        "some banner\n"
        "I1122 10:00:00.000000  1 solver.cpp:1] Solving net\n"
        "I1122 10:00:01.500000  1 solver.cpp:2] Iteration 0 (0 iter/s, 0s/10 iters), loss = 2.5\n"
        "a warning from python without a prefix\n"
        "I1122 10:00:01.600000  1 solver.cpp:3]     Train net output #0: loss = 2.5 (* 1 = 2.5 loss)\n"
        "I1122 10:00:01.700000  1 sgd_solver.cpp:4] Iteration 0, lr = 0.01\n"
        "I1122 10:00:03.000000  1 solver.cpp:5] Iteration 10 (7 iter/s, 1.4s/10 iters), loss = 1.5\n"
        "I1122 10:00:03.000000  1 solver.cpp:6]     Train net output #0: loss = 1.25 (* 1 = 1.25 loss)\n")
    train, test = parse_log(str(path))
    assert test == []
    assert [(r["NumIters"], r["Seconds"], r["LearningRate"], r["loss"]) for r in train] == [
        (0, 1.6, 0.01, 2.5), (10, 3.0, 0.01, 1.25)]


def test_progress_bar_only_on_a_terminal(tmp_path):
    """The tqdm bar shows on a terminal, erased around each glog line; a pipe and the file get the
    glog lines alone, byte for byte as Caffe prints them."""
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty, pipe, off = Terminal(), io.StringIO(), Terminal()
    path = tmp_path / "t.log"
    for stream, progress in ((tty, None), (pipe, None), (off, False)):
        log = TrainingLog(stream=stream, path=str(path), progress=progress)
        log.progress(5, 100, 0.5, 0.01, 2.0)
        log.info("Iteration 5, lr = 0.01")
        log.progress(6, 100, 0.25, 0.01, 2.0)
        log.close()
    shown = tty.getvalue()
    assert "5/100" in shown and "loss 0.5 lr 0.01" in shown and "\r" in shown
    # the glog line starts on a cleared line and ends with a newline, the bar then redrawn under it
    glog = re.search(r"\r(I\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ test_parse_log\.py:\d+\] Iteration 5, lr = 0\.01\n)", shown)
    assert glog, shown
    assert "5/100" in shown[glog.end():]
    for quiet in (pipe.getvalue(), off.getvalue()):
        assert "\r" not in quiet and "/100" not in quiet
        assert re.fullmatch(r"I\d{4} [\d:.]+ +\d+ test_parse_log\.py:\d+\] Iteration 5, lr = 0\.01\n", quiet)
    text = path.read_text()
    assert "\r" not in text and "/100" not in text and text.count("Iteration 5, lr = 0.01") == 3


def test_plot_draws_the_learning_rate_as_a_step(log_file, tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.cbook import STEP_LOOKUP_MAP

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import plot_training_log

    train, test = parse_log(str(log_file))
    fig = plot_training_log.plot(train, test)
    lr_ax = fig.axes[2]
    (line,) = [l for l in lr_ax.get_lines() if l.get_label() == "learning rate"]
    xs, ys = STEP_LOOKUP_MAP[line.get_drawstyle()](*line.get_data())
    segments = list(zip(zip(xs, ys), zip(xs[1:], ys[1:])))
    # stepsize 15: iterations 0..14 ran at 0.1, 15 on at 0.05 (the log's "lr =" lines say so).
    assert all(x0 == x1 or y0 == y1 for (x0, y0), (x1, y1) in segments)      # no ramp: flat or vertical
    drops = [(x0, y0, y1) for (x0, y0), (x1, y1) in segments if x0 == x1 and y0 != y1]
    assert drops == [(15, 0.1, 0.05)]

    def rate_at(x):
        return [y0 for (x0, y0), (x1, _) in segments if x0 < x < x1 and x0 != x1][0]

    assert [rate_at(x) for x in (2, 12, 14.5, 16, 24)] == [0.1, 0.1, 0.1, 0.05, 0.05]
    # The CSV semantics stay Caffe's: the row at 15 carries the rate logged at 10.
    assert [(r["NumIters"], r["LearningRate"]) for r in train][2:5] == [(10, 0.1), (15, 0.1), (20, 0.05)]
    # and the tool writes an image
    out = tmp_path / "curves.png"
    assert plot_training_log.main([str(log_file), str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
