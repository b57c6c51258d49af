"""Run every benchmark in turn: `python -m bench [name ...]`.

Each benchmark is a module bench/bench_<name>.py that writes bench/results/<name>.json. They are
heavy (minutes each on 2 cores) and measure ratios side by side in one run, so they are not part of
the test suite. bench/gpu_scaling.py needs GPUs and is run by hand on a GPU machine.
"""
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path


def main(argv):
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip() + "\n\nbenchmarks: " + ", ".join(n[len("bench_"):] for n in names))
        return
    wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in argv] or names
    unknown = [n for n in wanted if n not in names]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; known: {', '.join(names)}")
    failed = []
    for name in wanted:
        print(f"== bench.{name}", flush=True)
        # One process per benchmark so that one's memory and threads do not colour the next.
        if subprocess.call([sys.executable, "-m", f"bench.{name}"], cwd=here.parent):
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    importlib.import_module("bench")
    main(sys.argv[1:])
