"""Run the project's command-line entry points on an input and capture what a user would see.

run(tool, *argv) calls the tool's main(argv) in this process, through vgg_caffe.errors.run_cli as
its `__main__` does, with stdout and stderr captured and SystemExit turned into an exit code: the
same output as the command line without a Python start-up per case (200 subprocesses of
python + torch would take minutes on two cores). An exception that escapes run_cli is what the
user would get as a traceback: it is formatted into stderr, "Traceback" and all, and the exit code
is 1, so a test sees exactly what the terminal would show.

run_subprocess(tool, *argv) runs the real command line, for the few cases that check that the
in-process runner tells the truth.

Tools: info, time, solve, evaluate, demo (python -m vgg_caffe.X), draw_net, upgrade
(tools/upgrade_net_proto.py), convert_caffemodel, convert_imageset, compute_image_mean
(tools/*.py), and two library entry points with a command-line face: Net (Net(argv[0]) with
`weights=`/`phase=` given as key=value) and read_weights (vgg_caffe.io.read_weights(argv[0])).
"""
import contextlib
import importlib
import importlib.util
import io
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = {"info": "vgg_caffe.info", "time": "vgg_caffe.time", "solve": "vgg_caffe.solve",
           "evaluate": "vgg_caffe.evaluate", "demo": "vgg_caffe.demo"}
SCRIPTS = {"draw_net": "draw_net.py", "upgrade": "upgrade_net_proto.py",
           "convert_caffemodel": "convert_caffemodel.py", "convert_imageset": "convert_imageset.py",
           "compute_image_mean": "compute_image_mean.py"}
_LOADED = {}


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self):
        return self.stdout + self.stderr


def _net_main(argv):
    from vgg_caffe.net import Net

    kwargs = dict(a.split("=", 1) for a in argv[1:])
    Net(argv[0], **kwargs)
    return 0


def _read_weights_main(argv):
    from vgg_caffe.io import read_weights

    read_weights(argv[0])
    return 0


def main_of(tool):
    """The main(argv) of `tool`."""
    if tool == "Net":
        return _net_main
    if tool == "read_weights":
        return _read_weights_main
    if tool not in _LOADED:
        if tool in MODULES:
            _LOADED[tool] = importlib.import_module(MODULES[tool]).main
        else:
            path = os.path.join(ROOT, "tools", SCRIPTS[tool])
            spec = importlib.util.spec_from_file_location(f"corpus_tool_{tool}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _LOADED[tool] = module.main
    return _LOADED[tool]


def run(tool, *argv, env=None):
    """(exit code, stdout, stderr) of `tool` on argv, in this process. `env` sets environment
    variables for the call only."""
    from vgg_caffe.errors import run_cli

    main = main_of(tool)
    argv = [os.fspath(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                result = run_cli(lambda: main(argv))
                code = result if isinstance(result, int) else 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # what the terminal would show: a traceback
                err.write(traceback.format_exc())
                code = 1
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Result(code, out.getvalue(), err.getvalue())


def command(tool, *argv):
    if tool in MODULES:
        return [sys.executable, "-m", MODULES[tool], *map(os.fspath, argv)]
    if tool in SCRIPTS:
        return [sys.executable, os.path.join(ROOT, "tools", SCRIPTS[tool]), *map(os.fspath, argv)]
    raise ValueError(f"{tool} has no command line")


def run_subprocess(tool, *argv, timeout=120):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    p = subprocess.run(command(tool, *argv), capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    return Result(p.returncode, p.stdout, p.stderr)
