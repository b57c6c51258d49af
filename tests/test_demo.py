"""`python -m vgg_caffe.demo --quick`: the whole pipeline (photos -> LMDB -> generated small VGG ->
Caffe SGD -> the paper's test protocols -> table, JSON, CSV, plot) runs end to end."""
import csv
import json
import os
import subprocess
import sys

import lmdb
import pytest

from vgg_caffe.proto import pb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quick_demo_produces_table_json_csv_and_plot(tmp_path):
    out = tmp_path / "demo_out"
    run = subprocess.run([sys.executable, "-m", "vgg_caffe.demo", "--quick", "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    # The table, laid out like the paper's Tables 3-6.
    assert "ConvNet config." in run.stdout and "top-5 val. error (%)" in run.stdout
    for method in ("single", "dense", "multi-crop", "multi-crop+dense"):
        assert f"| {method} " in run.stdout
    assert "64,96,128" in run.stdout and "[64;128]" in run.stdout

    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert [r["method"] for r in rows] == ["single", "dense", "dense", "multi-crop", "multi-crop+dense"]
    with open(out / "val.txt") as f:
        n_val = sum(1 for line in f if line.strip())
    for r in rows:
        assert r["images"] == n_val
        assert 0.0 <= r["top5_error"] <= r["top1_error"] <= 100.0
    with open(out / "results.csv") as f:
        assert [r["method"] for r in csv.DictReader(f)] == [r["method"] for r in rows]

    # The LMDB really holds Caffe Datums of the stored size, and training really ran.
    env = lmdb.open(str(out / "val_lmdb"), readonly=True, lock=False)
    with env.begin() as txn:
        key, value = next(iter(txn.cursor()))
        d = pb.Datum.FromString(value)
        assert env.stat()["entries"] == n_val
    env.close()
    assert d.channels == 3 and min(d.height, d.width) == 128 and not d.encoded
    log = (out / "train.log").read_text()
    assert "Iteration 0, lr = 0.005" in log and "Test net output #1: accuracy" in log
    assert any(p.endswith(".caffemodel") for p in os.listdir(out / "snapshots"))
    if os.path.exists(os.path.join(ROOT, "tools", "plot_training_log.py")):
        png = (out / "training.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.mark.slow
def test_demo_solver_options_reach_the_solver(tmp_path):
    """--seed, --test-interval, --plateau-patience and --clip-gradients land in the solver the
    demo writes (and so in the run: a test every 5 iterations); without them the defaults."""
    from vgg_caffe.proto import parse_text

    out = tmp_path / "demo_out"
    run = subprocess.run([sys.executable, "-m", "vgg_caffe.demo", "--quick", "--out", str(out), "--iters", "10",
                          "--seed", "7", "--test-interval", "5", "--plateau-patience", "1", "--clip-gradients", "10"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    s = parse_text((out / "nets" / "A" / "solver_S256.prototxt").read_text(), pb.SolverParameter())
    assert (s.random_seed, s.test_interval, s.plateau_patience, s.clip_gradients) == (7, 5, 1, 10.0)
    log = (out / "train.log").read_text()
    assert log.count("Testing net (#0)") == 2   # iterations 5 and 10
