"""`python -m vgg_caffe.caffe train|test|time|device_query`, run as subprocesses.

test: a small net over an LMDB of real photos (tool_nets.py) is scored for 4 batches (the 4th
wraps around the database); every "Batch i, NAME = V" line and the mean lines are checked against
OpenCV 4.x's Caffe importer running the deploy twin on the same crops, with the softmax loss and
Caffe's accuracy rule (ties count against the prediction) written out in numpy. -stage / -level
select layers as Caffe's NetState rules say. train: the same snapshots as vgg_caffe.solve (the
command is a thin front), resume with -snapshot, Caffe's CHECKs as one-line errors. time and
device_query: their report lines.
"""
import re

import numpy as np
import pytest
import torch
from tool_nets import (
    BATCH,
    CLASSES,
    PHOTOS,
    deploy,
    glog_messages,
    labels,
    make_model,
    opencv_forward,
    photos,
    preprocess,
    run,
)

from vgg_caffe.train.log import fmt

FLT_MIN = np.finfo(np.float32).tiny


def caffe(args, cwd):
    return run(args, cwd, module="vgg_caffe.caffe")


def caffe_here(args, capsys):
    """vgg_caffe.caffe.main in this process, through run_cli as `python -m` runs it: (status, stderr)."""
    from vgg_caffe import caffe as brew
    from vgg_caffe.errors import run_cli

    capsys.readouterr()
    try:
        code = run_cli(lambda: brew.main([str(a) for a in args]))
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def reference_scores(tmp_path, weights, iterations, extra=False):
    """Per batch, Caffe's outputs in name order from OpenCV's fc3: [(name, [values])]."""
    dp = tmp_path / "ref_deploy.prototxt"
    dp.write_text(deploy(batch=len(PHOTOS)))
    blob = np.stack([preprocess(img) for img in photos()])
    fc3 = opencv_forward(dp, weights, blob, ["fc3"])["fc3"].astype(np.float64)
    y = np.array(labels())
    batches = []
    for i in range(iterations):
        rows = [(i * BATCH + j) % len(PHOTOS) for j in range(BATCH)]
        z, t = fc3[rows], y[rows]
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss = -np.log(np.maximum(p[np.arange(BATCH), t], FLT_MIN)).mean()
        true = z[np.arange(BATCH), t][:, None]
        beaten = ((z >= true).sum(1) - 1)            # other classes scoring >= the true class
        out = [("accuracy", [float(np.mean(beaten < 1))]), ("accuracy_top3", [float(np.mean(beaten < 3))])]
        if extra:
            out.append(("twice", list((2 * z).ravel())))
        out.append(("loss", [loss]))
        batches.append(sorted(out))                # Caffe's outputs: a std::set of names
    return batches


def parse_test_output(stderr):
    """(batches: {i: [(name, value)]}, Loss value, [(name, mean, loss part or None)])."""
    batches, means, loss = {}, [], None
    for msg in glog_messages(stderr):
        m = re.fullmatch(r"Batch (\d+), (\S+) = (\S+)", msg)
        if m:
            batches.setdefault(int(m[1]), []).append((m[2], float(m[3])))
            continue
        m = re.fullmatch(r"Loss: (\S+)", msg)
        if m:
            loss = float(m[1])
            continue
        m = re.fullmatch(r"(\S+) = (\S+)(?: \(\* (\S+) = (\S+) loss\))?", msg)
        if m:
            means.append((m[1], float(m[2]), None if m[3] is None else (float(m[3]), float(m[4]))))
    return batches, loss, means


def check_scores(stderr, want, iterations):
    batches, loss, means = parse_test_output(stderr)
    assert sorted(batches) == list(range(iterations))
    for i, expected in enumerate(want):
        flat = [(name, v) for name, values in expected for v in values]
        assert [n for n, _ in batches[i]] == [n for n, _ in flat]      # Caffe's order: sorted names
        np.testing.assert_allclose([v for _, v in batches[i]], [v for _, v in flat], rtol=2e-5, atol=1e-5)
    mean_loss = np.mean([dict(b)["loss"][0] for b in want])
    assert loss == pytest.approx(mean_loss, rel=1e-4)
    names = [n for n, values in want[0] for _ in values]
    assert [n for n, _, _ in means] == names
    sums = np.sum([[v for _, values in b for v in values] for b in want], axis=0) / iterations
    np.testing.assert_allclose([m for _, m, _ in means], sums, rtol=1e-4, atol=1e-5)
    for name, mean, part in means:
        assert (part is not None) == (name == "loss")
        if part:
            assert part == (1.0, pytest.approx(mean, rel=1e-5))


def test_test_scores_match_opencv(tmp_path):
    tv, _, weights = make_model(tmp_path)
    proc = caffe(["test", "-model", tv, "-weights", weights, "-iterations", 4], tmp_path)
    assert proc.returncode == 0, proc.stderr
    msgs = glog_messages(proc.stderr)
    assert "Use CPU." in msgs and "Running for 4 iterations." in msgs
    check_scores(proc.stderr, reference_scores(tmp_path, weights, 4), 4)
    # the mean lines print as Caffe's ostream does (%g) and the loss line carries its weight
    loss_line = next(m for m in msgs if m.startswith("loss = "))
    value = float(loss_line.split()[2])
    assert loss_line == f"loss = {fmt(value)} (* 1 = {fmt(value)} loss)"


def test_test_flag_spellings_and_default_iterations(tmp_path):
    """--flag=value and the command after the flags; -iterations defaults to Caffe's 50."""
    tv, _, weights = make_model(tmp_path)
    proc = caffe([f"--model={tv}", f"--weights={weights}", "test"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Running for 50 iterations." in glog_messages(proc.stderr)
    batches, _, _ = parse_test_output(proc.stderr)
    assert sorted(batches) == list(range(50))


def test_test_level_and_stage(tmp_path):
    """An output included only for stage "extra" (and one needing level >= 2) appears as asked."""
    tv, _, weights = make_model(tmp_path)
    text = tv.read_text() + """
layer { name: "twice" type: "Power" bottom: "fc3" top: "twice" power_param { scale: 2 }
        include { stage: "extra" } }
layer { name: "deep" type: "Power" bottom: "fc3" top: "deep" include { min_level: 2 } }
"""
    tv.write_text(text)
    plain = caffe(["test", "-model", tv, "-weights", weights, "-iterations", 3], tmp_path)
    assert plain.returncode == 0, plain.stderr
    check_scores(plain.stderr, reference_scores(tmp_path, weights, 3), 3)
    staged = caffe(["test", "-model", tv, "-weights", weights, "-iterations", 3, "-stage", "extra,other"], tmp_path)
    assert staged.returncode == 0, staged.stderr
    check_scores(staged.stderr, reference_scores(tmp_path, weights, 3, extra=True), 3)
    assert "deep" not in {n for b in parse_test_output(staged.stderr)[0].values() for n, _ in b}
    leveled = caffe(["test", "-model", tv, "-weights", weights, "-iterations", 1, "-level", 2], tmp_path)
    assert leveled.returncode == 0, leveled.stderr
    names = [n for n, _ in parse_test_output(leveled.stderr)[0][0]]
    assert names.count("deep") == BATCH * CLASSES and "twice" not in names


def test_test_errors(tmp_path, capsys):
    tv, _, weights = make_model(tmp_path)
    proc = caffe(["test", "-model", tv], tmp_path)            # one as a subprocess: a one-line error
    assert proc.returncode == 1 and proc.stderr == "error: caffe test: need model weights to score " \
                                                    "(-weights W.caffemodel)\n"
    for args, message in [
        (["test", "-weights", weights], "need a model definition to score"),
        (["test", "-model", tv, "-weights", tmp_path / "nope.caffemodel"], "nope.caffemodel"),
        (["test", "-model", tv, "-weights", weights, "-iterations", 0], "-iterations must be positive"),
        (["test", "-model", tv, "-weights", weights, "-gpu", "0"] if not torch.cuda.is_available()
         else ["test", "-model", tv, "-weights", weights, "-gpu", "99"], "no CUDA device"),
        (["brew"], "unknown action: brew (available caffe actions: train, test, time, device_query)"),
    ]:
        code, err = caffe_here(args, capsys)
        assert code == 1, (args, err)
        assert message in err and "Traceback" not in err


# -- train ------------------------------------------------------------------------------------------

def write_solver(tmp_path, tv, max_iter, prefix):
    path = tmp_path / f"{prefix}_solver.prototxt"
    path.write_text(f"""net: "{tv}"
type: "Adam" base_lr: 0.01 momentum: 0.9 lr_policy: "fixed" max_iter: {max_iter} display: 1
snapshot_prefix: "{tmp_path / prefix}" random_seed: 5 solver_mode: CPU
""")
    return path


def blobs_of(path):
    from vgg_caffe.proto import pb, read_message
    msg = read_message(str(path), pb.NetParameter)
    return {layer.name: [list(b.data) for b in layer.blobs] for layer in msg.layer if len(layer.blobs)}


def test_train_is_solve(tmp_path):
    tv, _, weights = make_model(tmp_path)
    ours = caffe(["train", "-solver", write_solver(tmp_path, tv, 2, "brew"), "-weights", weights], tmp_path)
    assert ours.returncode == 0, ours.stderr
    msgs = glog_messages(ours.stderr)
    assert any(re.match(r"Iteration 1 \(.*\), loss = ", m) for m in msgs) and "Optimization Done." in msgs
    direct = run([write_solver(tmp_path, tv, 2, "solve"), "--weights", weights, "--no-progress"], tmp_path,
                 module="vgg_caffe.solve")
    assert direct.returncode == 0, direct.stderr
    trained = blobs_of(tmp_path / "brew_iter_2.caffemodel")
    assert trained == blobs_of(tmp_path / "solve_iter_2.caffemodel")
    assert trained != blobs_of(weights)                 # it trained from the given weights

    longer = caffe(["train", "-solver", write_solver(tmp_path, tv, 4, "whole"), "-weights", weights], tmp_path)
    assert longer.returncode == 0, longer.stderr
    resumed_solver = write_solver(tmp_path, tv, 4, "brew")
    resumed = caffe(["train", f"--solver={resumed_solver}", "-snapshot", tmp_path / "brew_iter_2.solverstate"],
                    tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert blobs_of(tmp_path / "brew_iter_4.caffemodel") == blobs_of(tmp_path / "whole_iter_4.caffemodel")


def test_train_errors(tmp_path, capsys):
    tv, _, weights = make_model(tmp_path)
    solver = write_solver(tmp_path, tv, 1, "err")
    for args, message in [
        (["train"], "need a solver definition to train"),
        (["train", "-solver", solver, "-weights", weights, "-snapshot", "x.solverstate"],
         "give a snapshot to resume training or weights to finetune but not both"),
        (["train", "-solver", solver, "-sigint_effect", "explode"], "-sigint_effect 'explode': invalid signal effect"),
    ]:
        code, err = caffe_here(args, capsys)
        assert code == 1, (args, err)
        assert message in err and "Traceback" not in err


def test_train_level_and_stage_select_train_layers(tmp_path):
    """-stage and -level go into the solver's train_state, as Caffe's train() does: a loss layer
    included only for stage "extra" at level >= 2 appears in the train net's outputs."""
    net = tmp_path / "staged.prototxt"
    net.write_text("""name: "staged"
layer { name: "x" type: "DummyData" top: "x" top: "y"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 } data_filler { type: "gaussian" } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 2 } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "y" top: "loss" }
layer { name: "extra_loss" type: "EuclideanLoss" bottom: "ip" bottom: "y" top: "extra_loss"
  include { stage: "extra" min_level: 2 } }
""")
    solver = tmp_path / "staged_solver.prototxt"
    solver.write_text(f'net: "{net}"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 1\ndisplay: 1\n'
                      f'snapshot_after_train: false\nsolver_mode: CPU\n')
    plain = caffe(["train", "-solver", str(solver)], tmp_path)
    staged = caffe(["train", "-solver", str(solver), "-stage", "extra", "-level", "2"], tmp_path)
    low = caffe(["train", "-solver", str(solver), "-stage", "extra", "-level", "1"], tmp_path)
    for proc in (plain, staged, low):
        assert proc.returncode == 0, proc.stderr
    assert "extra_loss" in staged.stderr + staged.stdout
    assert "extra_loss" not in plain.stderr + plain.stdout
    assert "extra_loss" not in low.stderr + low.stdout


# -- time and device_query ----------------------------------------------------------------------------

def test_time_phases(tmp_path, capsys):
    tv, _, _ = make_model(tmp_path)
    layers = {}
    for phase in ("TRAIN", "TEST"):
        proc = caffe(["time", "-model", tv, "-iterations", 2, "-phase", phase], tmp_path)
        assert proc.returncode == 0, proc.stderr
        for line in ("Average Forward pass", "Average Backward pass", "Average Forward-Backward", "Total Time"):
            assert re.search(rf"{line}: \d+\.\d+ ms\.", proc.stdout), proc.stdout
        layers[phase] = re.findall(r"^\s*(\S+)\tforward: ", proc.stdout, re.MULTILINE)
    assert layers["TRAIN"] == ["conv1", "relu1", "pool1", "fc2", "relu2", "fc3", "loss"]
    assert layers["TEST"] == layers["TRAIN"] + ["accuracy", "accuracy_top3"]
    code, err = caffe_here(["time", "-model", tv, "-phase", "VAL"], capsys)
    assert code == 1 and 'phase must be "TRAIN" or "TEST"' in err


def test_device_query(tmp_path, capsys):
    proc = caffe(["device_query"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    msgs = glog_messages(proc.stderr)
    assert msgs[0].startswith("Querying GPUs")
    assert f"Device cpu: torch {torch.__version__}, " in msgs[1]
    if torch.cuda.is_available():
        assert f"Name:                       {torch.cuda.get_device_name(0)}" in msgs
    else:
        assert "No CUDA device is available" in msgs
        code, err = caffe_here(["device_query", "-gpu", "0"], capsys)
        assert code == 1 and "-gpu 0: no CUDA device 0 (torch sees 0)" in err
