"""Prototxt and binary protobuf I/O: errors that point at the mistake, and stable round trips.

Every generated prototxt must survive text -> message -> text unchanged (comments aside) and
message -> binary -> message unchanged, through the same read/write functions the tools use.
"""
import glob
import os
import re

import pytest

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net
from vgg_caffe.proto import (format_text, parse_text, pb, read_message, read_net, read_solver, write_message)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERATED = sorted(glob.glob(os.path.join(ROOT, "prototxt", "*", "*.prototxt")))


def test_generated_files_exist():
    assert len(GENERATED) == 6 * 8


def _message_class(path):
    return pb.SolverParameter if os.path.basename(path).startswith("solver") else pb.NetParameter


def _strip_comments(text):
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: os.path.relpath(p, ROOT))
def test_text_and_binary_round_trips(path, tmp_path):
    cls = _message_class(path)
    message = read_message(path, cls)
    text = format_text(message)
    assert text == _strip_comments(open(path).read())          # text -> message -> text
    assert parse_text(text, cls()) == message                  # and back
    data = message.SerializeToString()
    assert cls.FromString(data) == message                     # message -> binary -> message
    out = tmp_path / "copy.binaryproto"
    write_message(out, message)
    assert out.read_bytes() == data and read_message(out, cls) == message
    assert format_text(read_message(out, cls)) == text         # binary -> text is the same text


def _error(tmp_path, text, cls=pb.NetParameter, name="bad.prototxt"):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CaffeError) as info:
        read_message(str(path), cls)
    return str(info.value), str(path)


def test_malformed_prototxt_names_file_line_column_and_type(tmp_path):
    text = 'name: "x"\nlayer {\n  name: "conv1"\n  type: "Convolution"\n  convolution_param { num_output: ten }\n}\n'
    message, path = _error(tmp_path, text)
    col = text.splitlines()[4].index("ten") + 1
    assert message.startswith(f"{path}:5:{col}:"), message
    assert "caffe.NetParameter" in message and "num_output" in message
    # An unclosed brace is reported at the end of the file.
    message, path = _error(tmp_path, 'layer {\n  name: "a"\n')
    assert re.match(rf"{re.escape(path)}:\d+:\d+: ", message) and "caffe.NetParameter" in message
    # Solvers name their own message type.
    message, path = _error(tmp_path, "base_lr: 0.01\nmax_iter: many\n", pb.SolverParameter, "solver.prototxt")
    assert message.startswith(f"{path}:2:") and "caffe.SolverParameter" in message


def test_unknown_field_lists_known_fields(tmp_path):
    text = 'layer {\n  name: "c"\n  type: "Convolution"\n  convolution_param {\n    num_output: 8\n    kernal_size: 3\n  }\n}\n'
    message, path = _error(tmp_path, text)
    assert message.startswith(f"{path}:6:5:"), message
    assert "kernal_size" in message and "caffe.ConvolutionParameter" in message
    known = message.split("fields of caffe.ConvolutionParameter: ")[1].split(", ")
    assert {"kernel_size", "num_output", "pad", "stride", "weight_filler"} <= set(known)
    assert known == sorted(pb.ConvolutionParameter.DESCRIPTOR.fields_by_name)
    message, _ = _error(tmp_path, "base_lr: 0.1\nlr_polcy: \"step\"\n", pb.SolverParameter)
    assert "lr_policy" in message.split("fields of caffe.SolverParameter: ")[1]


def test_binary_errors(tmp_path):
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    with pytest.raises(CaffeError, match="empty"):
        read_net(str(empty))
    good = pb.NetParameter(name="n", layer=[pb.LayerParameter(name="a", type="Input", top=["x"])])
    truncated = tmp_path / "cut.caffemodel"
    truncated.write_bytes(good.SerializeToString()[:-3])
    with pytest.raises(CaffeError, match=r"cut\.caffemodel: not a valid binary caffe\.NetParameter"):
        read_net(str(truncated))
    with pytest.raises(CaffeError, match="no such file"):
        read_net(str(tmp_path / "missing.prototxt"))


def test_unknown_layer_type_through_net(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'
                    'layer { name: "conv" type: "Convolutoin" bottom: "data" top: "conv" }\n')
    with pytest.raises(CaffeError) as info:
        Net(str(path))
    message = str(info.value)
    assert "layer 'conv'" in message and "unknown layer type 'Convolutoin'" in message
    known = message.split("known types: ")[1].split(", ")
    assert {"Convolution", "Input", "Pooling", "ReLU", "InnerProduct"} <= set(known)


def test_solver_reads_nested_net_param(tmp_path):
    """A solver may embed its net (net_param); both levels parse and round-trip."""
    deploy = os.path.join(ROOT, "prototxt", "A", "deploy.prototxt")
    solver = pb.SolverParameter(base_lr=0.01, max_iter=10)
    solver.net_param.CopyFrom(read_net(deploy))
    path = tmp_path / "solver.prototxt"
    write_message(path, solver)
    assert read_solver(str(path)) == solver


# Caffe reads prototxt with TextFormat::Parse, which refuses a non-repeated field given twice;
# protobuf's Merge would silently keep the last value. Each case: text, the repeated field, the
# message it belongs to, the enclosing layer (or None), the line of the second occurrence.
DUPLICATES = [
    ('layer {\n  name: "conv1"\n  type: "Convolution"\n  convolution_param {\n    num_output: 8\n'
     '    kernel_size: 3\n    num_output: 16\n  }\n}\n', "num_output", "caffe.ConvolutionParameter", "conv1", 7),
    ('name: "a"\nlayer { name: "x" type: "ReLU" }\nname: "b"\n', "name", "caffe.NetParameter", None, 3),
    ('layer { type: "ReLU"\n  name: "late"  type: "TanH" }\n', "type", "caffe.LayerParameter", "late", 2),
    ('layer { name: "p"\n  pooling_param { pool: MAX }\n  pooling_param { stride: 2 } }\n', "pooling_param",
     "caffe.LayerParameter", "p", 3),
    ('layers { name: "v1" type: RELU\n  relu_param { negative_slope: 0.1 negative_slope: 0.2 } }\n',
     "negative_slope", "caffe.ReLUParameter", "v1", 2),
]


@pytest.mark.parametrize("text,field,owner,layer,line", DUPLICATES)
def test_non_repeated_field_twice_is_refused(tmp_path, text, field, owner, layer, line):
    # The column: where the field's name last starts on that line, found in the text itself.
    col = [m.start() + 1 for m in re.finditer(rf"\b{field}\b", text.splitlines()[line - 1])][-1]
    message, path = _error(tmp_path, text)
    assert message.startswith(f"{path}:{line}:{col}:"), message
    assert f'field "{field}" of {owner} is given more than once' in message
    assert (f"layer '{layer}'" in message) == (layer is not None), message
    # Merge (last one wins) would have accepted the text: the refusal is ours, as in Caffe.
    from google.protobuf import text_format
    text_format.Merge(text, pb.NetParameter())


def test_repeated_fields_may_repeat_and_solvers_are_strict_too(tmp_path):
    net = parse_text('layer { name: "c" bottom: "a" bottom: "b" param { lr_mult: 1 } param { lr_mult: 2 } }',
                     pb.NetParameter())
    assert list(net.layer[0].bottom) == ["a", "b"] and [p.lr_mult for p in net.layer[0].param] == [1, 2]
    message, path = _error(tmp_path, "base_lr: 0.01\nmax_iter: 10\nbase_lr: 0.1\n", pb.SolverParameter, "s.prototxt")
    assert message.startswith(f"{path}:3:1:") and '"base_lr" of caffe.SolverParameter' in message


def test_parse_text_merges_into_a_prepared_message():
    """Text is checked on its own, then merged: scalars replace, repeated fields append."""
    base = pb.SolverParameter(base_lr=0.1, max_iter=5, test_iter=[3])
    out = parse_text("base_lr: 0.5\ntest_iter: 7\n", base)
    assert out is base and (base.base_lr, base.max_iter, list(base.test_iter)) == (0.5, 5, [3, 7])
    with pytest.raises(CaffeError, match="given more than once"):
        parse_text("max_iter: 1 max_iter: 2", base)
    assert base.max_iter == 5   # a refused text leaves the message as it was


def test_required_fields_are_enforced(tmp_path):
    """ClipParameter's min and max are required, as Caffe's TextFormat::Parse and binary parsing check."""
    message, path = _error(tmp_path, 'layer { name: "a" type: "ReLU" }\n'
                                     'layer { name: "clip" type: "Clip" clip_param { min: 0 } }\n')
    assert message.startswith(f"{path}: required field(s) missing: layer[1] 'clip': clip_param.max"), message
    ok = parse_text('layer { name: "clip" type: "Clip" clip_param { min: 0 max: 6 } }', pb.NetParameter())
    assert (ok.layer[0].clip_param.min, ok.layer[0].clip_param.max) == (0, 6)
    partial = pb.NetParameter(layer=[pb.LayerParameter(name="clip", clip_param=pb.ClipParameter(min=0))])
    bad = tmp_path / "partial.caffemodel"
    bad.write_bytes(partial.SerializePartialToString())
    with pytest.raises(CaffeError, match=r"partial\.caffemodel: binary caffe\.NetParameter lacks required .*clip_param\.max"):
        read_net(str(bad))
    with pytest.raises(CaffeError, match=r"out\.caffemodel: cannot write.*clip_param\.max"):
        write_message(tmp_path / "out.caffemodel", partial)
