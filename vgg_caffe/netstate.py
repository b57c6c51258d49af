"""A net definition as Caffe reads it: the file (any format, upgraded), the phase, and which
layers a NetState keeps (Caffe's Net::FilterNet and StateMeetsRule: include rules, or else
exclude rules, against phase, level and stages), plus the names layers get as torch submodules.
"""
import os
import re

from torch import nn

from .errors import CaffeError
from .proto import pb, parse_text, read_net, upgrade_net

TRAIN, TEST = pb.TRAIN, pb.TEST
_PHASES = {"TRAIN": TRAIN, "TEST": TEST, TRAIN: TRAIN, TEST: TEST}


def phase_value(phase):
    if isinstance(phase, str):
        phase = phase.upper()
    if phase not in _PHASES:
        raise CaffeError(f"unknown phase {phase!r}; expected TRAIN or TEST")
    return _PHASES[phase]


def state_meets_rule(phase, level, stages, rule):
    """Caffe's Net::StateMeetsRule."""
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def filter_net(net_param, phase, level=0, stages=(), source=None):
    """The layers kept for this state (Caffe's Net::FilterNet); errors name `source`."""
    kept = []
    where = f"{source}: " if source else ""
    for layer in net_param.layer:
        if len(layer.include) and len(layer.exclude):
            raise CaffeError(f"{where}layer '{layer.name}' ({layer.type}): specify include rules or exclude "
                             "rules, not both")
        if len(layer.include):
            keep = any(state_meets_rule(phase, level, stages, r) for r in layer.include)
        else:
            keep = not any(state_meets_rule(phase, level, stages, r) for r in layer.exclude)
        if keep:
            kept.append(layer)
    return kept


def load_net_param(model):
    """Accept a path (text or binary, V1 or current), prototxt text, or a NetParameter."""
    if isinstance(model, pb.NetParameter):
        return upgrade_net(model), "<NetParameter>"
    model = os.fspath(model)
    if "\n" in model or "{" in model:
        return upgrade_net(parse_text(model, pb.NetParameter(), "<string>")), "<string>"
    return read_net(model), model   # size limit and stored-blob checks included


def check_state_args(extra, level, stages):
    """Net's arguments after the phase are keywords: a weights path given positionally (pycaffe's
    Net(model, phase, weights) habit) or as the level would otherwise be taken for the level."""
    if extra:
        raise TypeError(f"Net(model, phase, ...): level, stages, weights and the rest are keyword arguments; "
                        f"got {len(extra)} more positional: {', '.join(repr(e) for e in extra)}"
                        + ("; a weights file goes as weights=..." if isinstance(extra[0], (str, os.PathLike)) else ""))
    if isinstance(level, bool) or not isinstance(level, int):
        hint = f"; to load weights pass weights={level!r}" if isinstance(level, (str, os.PathLike)) else ""
        raise TypeError(f"Net(level={level!r}): level is an integer (Caffe's NetState.level){hint}")
    if isinstance(stages, (str, bytes)) or not all(isinstance(st, str) for st in stages):
        raise TypeError(f"Net(stages={stages!r}): stages is a list of strings, e.g. stages=['deploy']")


def module_name(layer_name):
    """A valid attribute name for a Caffe layer name ("conv1/3x3" -> "conv1_3x3")."""
    name = re.sub(r"\W", "_", layer_name)
    # A name that is empty, starts with a digit or is an attribute of nn.ModuleDict ("train",
    # "double", "keys") would clash or be invalid as a submodule name.
    clash = not name or name[0].isdigit() or hasattr(nn.ModuleDict, name)
    return "_" + name if clash else name
