"""`python -m vgg_caffe.pycaffe SCRIPT.py ARGS`: the classic pycaffe workflow run unchanged in a
subprocess (scripts/classic_workflow.py: NetSpec, SGDSolver.step, net surgery, Transformer and
Classifier on a photo), and how the runner reports errors (its main() run in-process): a CaffeError
as one line, a bug as the script's own traceback, sys.exit codes passed through."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def run(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "vgg_caffe.pycaffe"] + args, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_classic_workflow_runs_unchanged(tmp_path):
    result = run([os.path.join(HERE, "scripts", "classic_workflow.py"), str(tmp_path)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    values = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.strip()}
    assert "done" in values
    assert values["blobs"][0] == "data:30x3x16x16" and values["blobs"][-1] == "loss:"
    first, last = float(values["loss_first"][0]), float(values["loss_last"][0])
    assert last < first / 10, (first, last)
    assert values["iter"] == ["25"]
    assert float(values["surgery_max_diff"][0]) < 1e-5     # fc -> conv kept the function
    assert float(values["train_accuracy"][0]) == 1.0
    assert float(values["photo_class"][2]) == pytest.approx(1.0, abs=1e-5)
    assert values["classifier_shape"][0] == "2x3"
    assert [float(v) for v in values["classifier_shape"][2:]] == pytest.approx([1.0, 1.0], abs=1e-5)
    assert (tmp_path / "lenet_full_conv.caffemodel").exists()


@pytest.fixture
def run_here(monkeypatch, capsys):
    """The runner's main() in this process (no interpreter start-up): sys.argv, sys.path and the
    `caffe` aliases it installs are put back afterwards."""
    from vgg_caffe.pycaffe.__main__ import main

    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [n for n in sys.modules if n == "caffe" or n.startswith("caffe.")]:
        monkeypatch.delitem(sys.modules, name)

    def run_main(args):
        try:
            code = main(args)
        except SystemExit as e:
            code = e.code
        for name in [n for n in sys.modules if n == "caffe" or n.startswith("caffe.")]:
            del sys.modules[name]
        out = capsys.readouterr()
        return code, out.out, out.err
    return run_main


def test_a_caffe_error_is_one_line(tmp_path, run_here, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "bad.py"
    script.write_text("import caffe\nnet = caffe.Net('missing.prototxt', caffe.TEST)\n")
    code, _, err = run_here([str(script)])
    assert code == 1
    assert err.strip() == "error: Could not open file missing.prototxt"


def test_a_bug_shows_the_scripts_own_traceback(tmp_path, run_here):
    script = tmp_path / "buggy.py"
    script.write_text("import sys\n\n\ndef f(n):\n    return 1 / n\n\n\nprint(sys.argv[1:])\nf(0)\n")
    code, out, err = run_here([str(script), "a", "--b"])
    assert code == 1
    assert out.strip() == "['a', '--b']"
    lines = err.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):" and lines[-1] == "ZeroDivisionError: division by zero"
    assert f'File "{script}", line 9, in <module>' in err
    assert f'File "{script}", line 5, in f' in err
    assert "runpy" not in err and "__main__.py" not in err


def test_exit_codes_pass_through(tmp_path, run_here):
    script = tmp_path / "exit.py"
    script.write_text("import sys\nsys.exit(3)\n")
    assert run_here([str(script)])[0] == 3
    code, _, err = run_here([str(tmp_path / "nope.py")])
    assert code == 2 and "no such script" in err
