"""The arguments of caffe.Net(...): pycaffe's two constructor signatures, checked as Boost.Python does.

_caffe.cpp registers Net(network_file, phase, level=0, stages=None, weights=None) and the legacy
Net(network_file, weights, phase); a call matching neither raises Boost.Python.ArgumentError (a
TypeError) listing the types it got. We raise ArgumentError (a CaffeError and a TypeError) naming
the types, what is wrong and both signatures, e.g. for Net(model, caffe.TEST, "w.caffemodel").
Files must exist ("Could not open file X", as CheckFile says).
"""
import os

import numpy as np

from ..errors import CaffeError
from ..proto import pb

TRAIN, TEST = pb.TRAIN, pb.TEST
_SIGNATURES = ("Net(network_file, phase, level=0, stages=None, weights=None) or the legacy "
               "Net(network_file, weights, phase); phase is caffe.TRAIN or caffe.TEST")


class ArgumentError(CaffeError, TypeError):
    """Arguments that match neither Net signature (Boost.Python's ArgumentError in pycaffe)."""


def _is_path(x):
    return isinstance(x, (str, os.PathLike))


def _is_phase(x):
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool) and int(x) in (TRAIN, TEST)


def parse_net_args(args, kwargs):
    """(model, phase, level, stages, weights) from pycaffe's two constructor forms."""
    kinds = ", ".join(type(a).__name__ for a in args)
    kinds += "".join(f", {k}={type(v).__name__}" for k, v in kwargs.items())

    def fail(why):
        return ArgumentError(f"Net({kinds}): {why}; expected {_SIGNATURES}")

    unknown = set(kwargs) - {"network_file", "phase", "level", "stages", "weights"}
    if unknown:
        raise fail(f"unknown keyword argument(s) {sorted(unknown)}")
    if len(args) == 3 and not kwargs and _is_path(args[1]) and _is_phase(args[2]):
        model, weights, phase = args
        return model, int(phase), 0, (), weights
    names = ["network_file", "phase", "level", "stages", "weights"]
    if len(args) > len(names):
        raise fail(f"{len(args)} positional arguments")
    values = dict(zip(names, args))
    for k, v in kwargs.items():
        if k in values:
            raise fail(f"'{k}' given twice")
        values[k] = v
    if "network_file" not in values or "phase" not in values:
        raise fail("network_file and phase are required")
    model, phase = values["network_file"], values["phase"]
    level, stages, weights = values.get("level", 0), values.get("stages"), values.get("weights")
    if not (_is_path(model) or isinstance(model, pb.NetParameter)):
        raise fail(f"network_file must be a path, got {type(model).__name__}")
    if not _is_phase(phase):
        hint = " (the weights file goes after the phase as weights=..., or before it in the legacy form)" \
            if _is_path(phase) else ""
        raise fail(f"phase must be caffe.TRAIN (0) or caffe.TEST (1), got {phase!r}{hint}")
    if not isinstance(level, (int, np.integer)) or isinstance(level, bool):
        hint = (f"; a weights file goes as weights={level!r} or first, in the legacy Net(network_file, "
                "weights, phase)") if _is_path(level) else ""
        raise fail(f"the argument after the phase is level, an int, got {level!r}{hint}")
    if stages is None:
        stages = ()
    if isinstance(stages, str) or not all(isinstance(s, str) for s in stages):
        raise fail(f"stages must be a list of strings, got {stages!r}")
    if weights is not None and not _is_path(weights):
        raise fail(f"weights must be a path, got {type(weights).__name__}")
    return model, int(phase), int(level), tuple(stages), weights


def check_file(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CaffeError(f"Could not open file {path}")
    return path
