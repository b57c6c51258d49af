"""Every command README.md documents has an entry point that runs.

At collection time the README's code blocks (fenced, or indented by four spaces) are read, and
every command that starts with `python -m vgg_caffe.`, `python tools/`, `tools/` or `make ` is
taken (backslash continuations joined, `$ ` prompts and `# comments` dropped). For each distinct
entry point: the module or file must exist and `--help` must exit 0 having printed a usage line
(a sub-command such as `net_surgery.py to-dense` is asked for its own help); a make target must be
a rule of the Makefile and `make -n` (print, do not run) of the documented arguments must succeed.
Only --help runs, in this process (runpy, as `python -m` and `python FILE` run them), so the test
is quick. A failure names the README lines, so a rewritten README is checked as it stands.
"""
import contextlib
import importlib.util
import io
import re
import runpy
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PREFIX = re.compile(r"^(python -m vgg_caffe\.|python tools/|tools/|make )")
SUBCOMMAND = re.compile(r"^[a-z]+(-[a-z]+)*$")   # to-dense; not a path, file or placeholder


def readme_commands(text):
    """[(line number, command)] from the code blocks of a Markdown text."""
    found, fence, pending = [], None, None
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fence = None if fence else stripped[:3]
            continue
        if not (fence or line.startswith("    ") or line.startswith("\t")):
            pending = None
            continue
        if pending is not None:   # a continuation of the command above
            found[-1] = (found[-1][0], found[-1][1] + " " + stripped.rstrip("\\").strip())
            pending = stripped.endswith("\\") or None
            continue
        if stripped.startswith("$ "):
            stripped = stripped[2:].lstrip()
        if PREFIX.match(stripped):
            found.append((number, stripped.rstrip("\\").strip()))
            pending = stripped.endswith("\\") or None
    return found


def _words(command):
    """The command's words, without its comment and its [optional] parts."""
    command = re.sub(r"\s+#.*$", "", command)
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return [w for w in words if not (w.startswith("[") or w.endswith("]"))]


def entry_point(command):
    """('module', name, sub) | ('tool', path, sub) | ('make', target, args)."""
    words = _words(command)
    if words[0] == "make":
        args = words[1:]
        target = next((w for w in args if "=" not in w and not w.startswith("-")), "")
        return ("make", target, tuple(args))
    if words[0] == "python" and words[1] == "-m":
        kind, name, rest = "module", words[2], words[3:]
    else:
        at = 1 if words[0] == "python" else 0   # `python tools/x.py` or `tools/x.py`
        kind, name, rest = "tool", words[at], words[at + 1:]
    sub = rest[0] if rest and SUBCOMMAND.match(rest[0]) else ""
    return (kind, name, sub)


def _collect():
    if not README.exists():
        return []
    points = {}
    for number, command in readme_commands(README.read_text(encoding="utf-8")):
        points.setdefault(entry_point(command), []).append((number, command))
    return sorted(points.items())


ENTRY_POINTS = _collect()


def test_the_readme_documents_commands():
    assert README.exists(), "README.md is missing"
    kinds = {kind for (kind, _, _), _ in ENTRY_POINTS}
    assert {"module", "tool"} <= kinds, f"no `python -m vgg_caffe.*` / `python tools/*` commands found in {README}"


def test_the_parser_reads_blocks_and_continuations():
    text = ("Run\n\n```\n$ python -m vgg_caffe.solve s.prototxt \\\n    --log x   # train\nls\n```\n\n"
            "    python tools/net_surgery.py to-dense --model m \\\n        --weights w\n\n"
            "not code: python tools/nope.py\n    make prototxt [CONFIG=E]\n")
    found = readme_commands(text)
    assert found == [(4, "python -m vgg_caffe.solve s.prototxt --log x   # train"),
                     (9, "python tools/net_surgery.py to-dense --model m --weights w"),
                     (13, "make prototxt [CONFIG=E]")]
    assert [entry_point(c) for _, c in found] == [("module", "vgg_caffe.solve", ""),
                                                  ("tool", "tools/net_surgery.py", "to-dense"),
                                                  ("make", "prototxt", ("prototxt",))]


def _where(uses):
    return "; ".join(f"README.md:{n}: {c}" for n, c in uses)


def _run_help(kind, name, sub):
    """(exit status, printed text) of ENTRY [SUB] --help, run in this process."""
    argv = ([sub] if sub else []) + ["--help"]
    out = io.StringIO()
    saved = sys.argv
    try:
        sys.argv = [name] + argv
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # "found in sys.modules": it is imported already
            try:
                if kind == "module":
                    runpy.run_module(name, run_name="__main__", alter_sys=True)
                else:
                    runpy.run_path(str(ROOT / name), run_name="__main__")
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved
    return code, out.getvalue()


def _make_targets():
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.MULTILINE))


def _id(point):
    kind, name, extra = point
    return "make " + " ".join(extra) if kind == "make" else " ".join(x for x in (name, extra) if x)


@pytest.mark.parametrize("point, uses", ENTRY_POINTS, ids=[_id(p) for p, _ in ENTRY_POINTS])
def test_documented_command_runs(point, uses):
    kind, name, extra = point
    if kind == "make":
        assert name in _make_targets(), f"make target '{name}' is not in the Makefile ({_where(uses)})"
        run = subprocess.run(["make", "-n", *extra], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, f"make -n {' '.join(extra)} failed ({_where(uses)}):\n{run.stderr}"
        return
    if kind == "module":
        assert importlib.util.find_spec(name) is not None, f"no module {name} ({_where(uses)})"
    else:
        assert (ROOT / name).is_file(), f"no file {name} ({_where(uses)})"
    code, text = _run_help(kind, name, extra)
    assert code == 0, f"{name} {extra} --help exited {code} ({_where(uses)}):\n{text[-2000:]}"
    assert "usage:" in text.lower(), f"{name} {extra} --help printed no usage ({_where(uses)}):\n{text[-2000:]}"


def test_a_missing_entry_point_fails_with_its_readme_line():
    for point, use in ((("module", "vgg_caffe.no_such_tool", ""), (7, "python -m vgg_caffe.no_such_tool x")),
                       (("tool", "tools/no_such_tool.py", ""), (9, "python tools/no_such_tool.py x")),
                       (("make", "no-such-target", ("no-such-target",)), (11, "make no-such-target"))):
        with pytest.raises(AssertionError, match=f"README.md:{use[0]}: {re.escape(use[1])}"):
            test_documented_command_runs(point, [use])
