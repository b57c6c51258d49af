"""torch.compile of a net's graph module, kept only where it runs and where it is faster.

--compile (net.torch_compile = True) hands the graph module to torch.compile. Two things can make
that worse than not asking, and both fall back to the uncompiled graph with one line on stderr:
  - the compiler is unavailable: torch.compile raises, inductor has no C++ compiler for the CPU
    backend, or the first (compiling) call fails;
  - the compiled code is slower. Inductor's generated CPU kernels for a training pass (its
    backward's ReLU / max-pool gradients in channels-last memory) ran VGG-16's train step at
    0.81-0.85x oneDNN's eager kernels (bench/bench_compile.py), while inference compiles to
    about the same or better. So the first passes are a trial: after the compiling call, TRIAL
    passes each way alternate (eager, compiled, ...), each timed as its forward call plus, for a
    pass that records autograd, its backward (from the first gradient reaching an output blob to
    the last reaching a parameter); compiled is kept from then on only if its best time beats
    eager's by KEEP_MARGIN (3 %), eager otherwise, for passes with autograd and without
    separately (they compile separately too). The margin is this machine's noise: a compiled
    train step 0.8 % ahead in its trial ran 17 % behind in bench_compile's medians right after,
    and a tie is no reason to run generated code. Compiled and eager results differ by rounding
    (inductor fuses and reorders), so trial passes mix the two.
first_call_s is the compiling call's time; choice says what each trial kept.
"""
import os
import shutil
import sys
import time

import torch

from .errors import CaffeError, first_line

TRIAL = 3
KEEP_MARGIN = 0.03


def compiler_unavailable():
    """Why torch.compile cannot work here, or None: inductor needs a C++ compiler."""
    names = [os.environ.get("CXX"), "g++", "c++", "clang++"]
    if not any(n and shutil.which(n) for n in names):
        return "no C++ compiler (g++, c++ or clang++) on PATH"
    return None


class PassTimer:
    """The time of one pass: its forward call, plus its backward when autograd runs one."""

    def __init__(self, blobs, params, forward_s):
        self.forward_s, self.backward_s = forward_s, None
        self.handles, self.started = [], None
        outputs = [t for t in blobs.values() if isinstance(t, torch.Tensor) and t.requires_grad]
        leaves = [p for p in params if p.requires_grad]
        if not outputs or not leaves:
            return
        for t in outputs:
            self.handles.append(t.register_hook(self._start))
        self.handles.append(torch.autograd.graph.register_multi_grad_hook(leaves, self._end, mode="all"))

    def _start(self, grad):
        if self.started is None:
            self.started = time.perf_counter()

    def _end(self, grads):
        if self.started is not None and self.backward_s is None:
            self.backward_s = time.perf_counter() - self.started
        self.remove()

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []

    def seconds(self):
        self.remove()
        return self.forward_s + (self.backward_s or 0.0)


class Trial:
    """Alternating eager / compiled passes until TRIAL of each are timed; then the choice."""

    def __init__(self):
        self.times = {"eager": [], "compiled": []}
        self.pending = None      # (way, PassTimer) of the last pass, closed at the next
        self.choice = None

    def next_way(self):
        """(way of the next pass, whether the trial was decided just now)."""
        self.close()
        if self.choice is not None:
            return self.choice, False
        e, c = (len(self.times[k]) for k in ("eager", "compiled"))
        if min(e, c) < TRIAL:
            return ("eager" if e <= c else "compiled"), False
        ahead = min(self.times["compiled"]) < (1.0 - KEEP_MARGIN) * min(self.times["eager"])
        self.choice = "compiled" if ahead else "eager"
        return self.choice, True

    def close(self):
        if self.pending is not None:
            way, timer = self.pending
            self.times[way].append(timer.seconds())
            self.pending = None


class Compiled:
    """torch.compile of `module`, falling back (one line on stderr) to `eager` (default: the
    module itself) where it cannot run or is slower. `params`: the learnable tensors, whose
    gradients end a timed backward."""

    def __init__(self, module, source="<net>", params=(), eager=None):
        self.module, self.source, self.params = module, source, list(params)
        self.eager = eager or module      # how an uncompiled pass runs (vgg_caffe.precision's caller)
        self.compiled, self.first_call_s = None, None
        self.trials = {}         # grad enabled -> Trial
        reason = compiler_unavailable()
        if reason is None:
            try:
                self.compiled = torch.compile(module)
            except Exception as e:  # any failure of the compiler means: run uncompiled
                reason = f"torch.compile raised {type(e).__name__}: {first_line(e, 200)}"
        if reason is not None:
            self._fall_back(reason)

    def _fall_back(self, reason):
        self.compiled = None
        print(f"vgg_caffe: {self.source}: torch.compile unavailable ({reason}); running uncompiled",
              file=sys.stderr, flush=True)

    @property
    def choice(self):
        return {("train" if grad else "inference"): t.choice for grad, t in self.trials.items()}

    def __call__(self, *feeds):
        if self.compiled is None:
            return self.eager(*feeds)
        if self.first_call_s is None:
            return self._compile_call(feeds)
        grad = torch.is_grad_enabled()
        trial = self.trials.setdefault(grad, Trial())
        way, decided = trial.next_way()
        if decided:
            self._say_choice(grad, trial)
        if trial.choice is not None:
            return self._run(way, feeds)
        t0 = time.perf_counter()
        blobs = self._run(way, feeds)
        trial.pending = (way, PassTimer(blobs, self.params, time.perf_counter() - t0))
        return blobs

    def _run(self, way, feeds):
        if way != "compiled" or self.compiled is None:
            return self.eager(*feeds)
        try:
            return self.compiled(*feeds)   # a new shape or grad mode compiles again, and may fail
        except CaffeError:
            raise  # the net's own error (a bad label, a shape): not the compiler's
        except Exception as e:
            self._fall_back(f"{type(e).__name__} when compiling: {first_line(e, 200)}")
            return self.eager(*feeds)

    def _compile_call(self, feeds):
        t0 = time.perf_counter()
        out = self._run("compiled", feeds)
        if self.compiled is not None:
            self.first_call_s = time.perf_counter() - t0
        return out

    def _say_choice(self, grad, trial):
        if trial.choice == "compiled":
            return
        kind = "training pass (forward + backward)" if grad else "inference pass"
        print(f"vgg_caffe: {self.source}: torch.compile: the compiled {kind} took "
              f"{min(trial.times['compiled']):.3g} s against {min(trial.times['eager']):.3g} s uncompiled "
              f"(best of {TRIAL}; it must be {KEEP_MARGIN:.0%} faster to be kept); running it uncompiled",
              file=sys.stderr, flush=True)
