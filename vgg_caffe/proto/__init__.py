"""Caffe's messages (our own schema, caffe.proto) and reading, writing and upgrading them.

Reproduces Caffe's io.cpp / upgrade_proto.cpp behaviour: prototxt is protobuf text format and
.caffemodel / .binaryproto / .solverstate are binary protobuf of the same schema. Text is read as
strictly as Caffe's TextFormat::Parse reads it: a non-repeated field given twice is an error (not
"the last one wins"), and so is a missing required field. Nets in the old V0 / V1 formats are
upgraded to the current one and solvers' legacy solver_type enum to the type string, as
upgrade_net_proto_text/binary and Caffe's solver reader do (see upgrade.py).

Errors name the file, the line and column, the message being read, the layer when there is one
and, for an unknown field, the fields that message does have.
"""
import os
import re

from google.protobuf import message as _message
from google.protobuf import text_format

from ..errors import CaffeError
from ..fileio import atomic_write
from . import caffe_pb2 as pb
from .upgrade import (SOLVER_TYPE_NAMES, V0_TYPE_NAMES, V1_TYPE_NAMES, needs_upgrade, upgrade_net,
                      upgrade_solver)

TEXT_SUFFIXES = (".prototxt", ".pbtxt", ".txt", ".pt")
BINARY_SUFFIXES = (".caffemodel", ".binaryproto", ".solverstate", ".pb")


# ----------------------------------------------------------------------------------------------
# Text and binary
# ----------------------------------------------------------------------------------------------

def parse_text(text, message, source="<string>"):
    """Parse protobuf text into `message` (an instance) and return it.

    The text itself must be valid on its own, as Caffe requires: each non-repeated field at most
    once per message, every required field present. What it sets is then merged into `message`
    (scalars replace, repeated fields append), so a caller may layer text over a prepared message.
    """
    fresh = type(message)()
    try:
        text_format.Parse(text, fresh)
    except text_format.ParseError as e:
        raise CaffeError(_describe_parse_error(e, fresh, source, text)) from None
    missing = fresh.FindInitializationErrors()
    if missing:
        raise CaffeError(f"{source}: required field(s) missing: {_name_layers(fresh, missing)} "
                         f"(reading a {fresh.DESCRIPTOR.full_name})")
    message.MergeFrom(fresh)
    return message


def _name_layers(net, paths):
    """'layer[2].clip_param.max' -> "layer[2] 'relu6': clip_param.max" when the message is a net."""
    def named(path):
        m = re.match(r"(layers?)\[(\d+)\]\.(.*)", path)
        if not m or not hasattr(net, m.group(1)):
            return path
        layer = getattr(net, m.group(1))[int(m.group(2))]
        name = (layer.name or layer.layer.name) if m.group(1) == "layers" else layer.name
        return f"{m.group(1)}[{m.group(2)}] '{name}': {m.group(3)}" if name else path
    return ", ".join(named(p) for p in paths)


_DUPLICATE = re.compile(r'Message type "([\w.]+)" should not have multiple "(\w+)" fields')
_UNKNOWN = re.compile(r'Message type "([\w.]+)" has no field named "(\w+)"')


def _describe_parse_error(err, message, source, text):
    line, col = err.GetLine(), err.GetColumn()
    detail = re.sub(r"^\d+:\d+ : ", "", str(err))
    dup = _DUPLICATE.search(detail)
    if dup and line is not None:
        # protobuf points after the second `name:`; point at the name itself.
        row = text.splitlines()[line - 1] if line <= len(text.splitlines()) else ""
        at = row.rfind(dup.group(2), 0, max(col - 1, 0))
        col = at + 1 if at >= 0 else col
        detail = (f'non-repeated field "{dup.group(2)}" of {dup.group(1)} is given more than once; '
                  "give it once (Caffe refuses the repeat rather than keep the last value)")
    where = f"{source}:{line}:{col}" if line is not None else source
    layer = _enclosing_layer(text, line, col) if line is not None else None
    in_layer = f" layer '{layer}':" if layer else ""
    out = f"{where}:{in_layer} {detail} (reading a {message.DESCRIPTOR.full_name})"
    # Unknown fields: list what the message does have, so a typo is easy to spot.
    unknown = _UNKNOWN.search(detail)
    if unknown:
        desc = _find_message(unknown.group(1))
        if desc is not None:
            out += f"; fields of {unknown.group(1)}: {', '.join(sorted(f.name for f in desc.fields))}"
    return out


def _find_message(full_name):
    try:
        return pb.DESCRIPTOR.pool.FindMessageTypeByName(full_name)
    except KeyError:
        return None


# Strings, comments, names, braces: enough of the text format to follow its nesting.
_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|#[^\n]*|[A-Za-z_]\w*|[{}<>]|:|\n|[^\s\w{}<>:"\'#]+')


def _enclosing_layer(text, line, col):
    """The name of the layer / layers block around (line, col), if it has one; else None."""
    lines = text.splitlines(keepends=True)
    offset = sum(len(s) for s in lines[:line - 1]) + max(col - 1, 0)
    stack = []            # one [field, name] per open block
    target = None         # the innermost layer block open at the error offset
    prev = prev2 = None
    for m in _TOKENS.finditer(text):
        tok = m.group()
        if m.start() >= offset and target is None:
            target = next((frame for frame in reversed(stack) if frame[0] in ("layer", "layers")), False)
            if not target:
                return None
        if tok in ("{", "<"):
            stack.append([prev if prev != ":" else prev2, None])
        elif tok in ("}", ">"):
            if stack:
                closed = stack.pop()
                if closed is target:
                    return closed[1]
        elif tok[0] in "\"'" and prev == ":" and prev2 == "name" and stack and stack[-1][0] in ("layer", "layers") \
                and stack[-1][1] is None:
            stack[-1][1] = tok[1:-1]
        if tok != "\n" and tok[0] != "#":
            prev2, prev = prev, tok
    if target is None:
        target = next((frame for frame in reversed(stack) if frame[0] in ("layer", "layers")), None)
    return target[1] if target else None


def format_text(message):
    """Protobuf text, as Caffe writes prototxt."""
    return text_format.MessageToString(message)


def parse_binary(data, message, source="<bytes>"):
    try:
        message.ParseFromString(data)
    except _message.DecodeError as e:
        raise CaffeError(
            f"{source}: not a valid binary {message.DESCRIPTOR.full_name} ({e}); "
            "the file may be truncated or corrupt") from None
    missing = message.FindInitializationErrors()
    if missing:  # Caffe's ParseFromCodedStream refuses these too
        raise CaffeError(f"{source}: binary {message.DESCRIPTOR.full_name} lacks required field(s): "
                         f"{', '.join(missing)}")
    return message


def read_text(path, message_cls):
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise CaffeError(f"{path}: cannot read as text ({e})") from None
    return parse_text(text, message_cls(), path)


def read_binary(path, message_cls):
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CaffeError(f"{path}: cannot read ({e.strerror or e})") from None
    if not data:
        raise CaffeError(f"{path}: the file is empty (expected a binary {message_cls.DESCRIPTOR.full_name})")
    return parse_binary(data, message_cls(), path)


def is_text_file(path):
    """Decide text or binary by suffix; otherwise by whether the first bytes decode as text."""
    lower = os.fspath(path).lower()
    if lower.endswith(TEXT_SUFFIXES):
        return True
    if lower.endswith(BINARY_SUFFIXES):
        return False
    with open(path, "rb") as f:
        head = f.read(4096)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in head


def read_message(path, message_cls):
    """Read text or binary protobuf of `message_cls` from `path`."""
    if not os.path.exists(path):
        raise CaffeError(f"{path}: no such file")
    return read_text(path, message_cls) if is_text_file(path) else read_binary(path, message_cls)


def write_text(path, message):
    atomic_write(path, format_text(message))


def write_binary(path, message):
    try:
        data = message.SerializeToString()
    except _message.EncodeError as e:
        raise CaffeError(f"{path}: cannot write: {e}") from None
    atomic_write(path, data)


def write_message(path, message, binary=None):
    """Write text or binary; by default the path's suffix decides (text unless a binary suffix)."""
    if binary is None:
        binary = os.fspath(path).lower().endswith(BINARY_SUFFIXES)
    (write_binary if binary else write_text)(path, message)


# ----------------------------------------------------------------------------------------------
# Nets and solvers, upgraded
# ----------------------------------------------------------------------------------------------

def read_net(path):
    """Read a net (prototxt or binary caffemodel, any format Caffe upgrades) in the current format.

    Every reader of nets comes through here: a prototxt over the size limit is refused before it is
    read, and blobs stored in the file (a caffemodel used as the model) are checked before the
    upgrade, so Net, info, time, draw_net, the solver and the tools name the same problems."""
    from ..io.checks import check_stored_blobs
    from ..machine import check_text_size

    if os.path.isfile(path) and is_text_file(path):
        check_text_size(path)   # a huge prototxt fails at once, not after minutes of parsing
    net = read_message(path, pb.NetParameter)
    check_stored_blobs(net, path)
    return upgrade_net(net, source=path)


def read_solver(path):
    """Read a solver, its legacy solver_type upgraded to type (Caffe's ReadSolverParamsFromTextFile)."""
    return upgrade_solver(read_message(path, pb.SolverParameter), source=path)


__all__ = [
    "pb", "CaffeError", "parse_text", "format_text", "parse_binary", "read_text", "read_binary",
    "read_message", "write_text", "write_binary", "write_message", "read_net", "read_solver",
    "upgrade_net", "upgrade_solver", "needs_upgrade", "V0_TYPE_NAMES", "V1_TYPE_NAMES",
    "SOLVER_TYPE_NAMES",
]
