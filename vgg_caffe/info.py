"""A table of a net's layers: type, top shapes, parameters, multiply-adds and receptive fields.

    python -m vgg_caffe.info NET.prototxt [--phase TRAIN|TEST] [--input-shape data=1,3,224,224]

Without --phase the TEST net is shown, or the TRAIN net when only that one builds (a snapshot the
solver wrote from a train_val net holds the TRAIN data layer alone); a note on stderr says so.

Any prototxt (or caffemodel) Net reads, V1 included. Shapes come from the same shape inference
the runtime uses (vgg_caffe.net.Net through the layer registry), built on torch's "meta" device
so no weights are allocated: VGG-19 is summarised instantly. Data layers that read a database
(Data, ImageData, the VGG Python layer, ...) are not opened: their declared batch size and crop
give the shapes (3 channels unless --input-shape says otherwise), so a TRAIN net can be shown
without its LMDB. Parameters are the learnable blobs' element counts (Table 2 of the paper
counts the same), multiply-adds those of one forward pass at the shapes shown.

The receptive field of a blob is the input window one of its units sees (size) and how far that
window moves for one step along the blob (jump), along the height axis, from each layer's
(kernel, stride, pad): size' = size + (k - 1) * jump, jump' = jump * stride.
"""
import argparse
import json
import math
import sys
from dataclasses import dataclass

import torch

from . import machine
from .errors import CaffeError, run_cli
from .net import Net, filter_net, load_net_param, phase_value
from .proto import pb


class UndeclaredShape(CaffeError):
    """A data layer whose top shapes only its source knows (no crop_size, no batch_size)."""


@dataclass
class Row:
    name: str
    type: str
    tops: list          # [(top name, shape)]
    params: int
    macs: int
    rf: tuple           # (size, jump) of the first top


def parse_shape_arg(text):
    """'data=1,3,224,224' -> ('data', (1, 3, 224, 224))."""
    name, sep, dims = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        shape = tuple(int(d) for d in dims.replace("x", ",").split(","))
        if not shape or min(shape) < 1:
            raise ValueError
    except ValueError:
        raise CaffeError(f"--input-shape {text!r}: expected BLOB=D1,D2,... with positive integers "
                         "(e.g. data=1,3,224,224)") from None
    return name, shape


def _declared_shapes(lp, source):
    """Top shapes a data layer declares in its parameters, without opening its source."""
    batch, channels, height, width = None, 3, None, None
    if lp.type == "Python":
        try:
            opts = json.loads(lp.python_param.param_str or "{}")
        except json.JSONDecodeError:
            opts = {}
        if isinstance(opts, dict):
            batch, crop = opts.get("batch_size"), opts.get("crop_size")
            height = width = crop
    elif lp.HasField("data_param") or lp.type == "Data":
        batch = lp.data_param.batch_size
        height = width = lp.transform_param.crop_size or None
    elif lp.type == "ImageData":
        p = lp.image_data_param
        batch = p.batch_size
        channels = 3 if p.is_color else 1
        crop = lp.transform_param.crop_size or p.crop_size
        height, width = (crop, crop) if crop else (p.new_height or None, p.new_width or None)
    if not (batch and height and width):
        raise UndeclaredShape(f"{source}: data layer '{lp.name}' ({lp.type}) does not declare its batch size and "
                              f"image size; pass them with --input-shape {lp.top[0]}=N,C,H,W")
    return [(batch, channels, height, width)] + [(batch,)] * (len(lp.top) - 1)


def _is_declared_data_layer(lp):
    """A layer that produces tops from a source: no bottoms (Input aside, whose shapes are in the
    prototxt). Decided from the prototxt alone, so a Python layer's module is not even imported."""
    return lp.type != "Input" and not len(lp.bottom) and len(lp.top) > 0


def shape_net(model, phase="TEST", input_shapes=None, level=0, stages=(), source=None):
    """A Net (weights on the meta device) of `model` in `phase`, data layers replaced by Input
    layers of their declared or given shapes.

    phase=None picks it: TEST, or TRAIN when only the TRAIN net builds (a caffemodel the solver
    wrote from a train_val net keeps only the TRAIN data layer); the Net's `phase_note` then says
    so. When neither builds, the TEST error is raised, with a hint to pass --phase TRAIN unless
    the TRAIN net fails the same way (a mistake in the file, not in the phase).
    source: the file to name in errors when `model` is a NetParameter."""
    net_param, loaded_from = load_net_param(model)
    source = source or loaded_from
    for lp in net_param.layer:  # a caffemodel's weights are not needed for shapes
        del lp.blobs[:]
    if phase is not None:
        return _shape_net(net_param, source, phase_value(phase), input_shapes, level, stages)
    try:
        return _shape_net(net_param, source, pb.TEST, input_shapes, level, stages)
    except CaffeError as e:
        test_error = str(e)
    try:
        net = _shape_net(net_param, source, pb.TRAIN, input_shapes, level, stages)
    except CaffeError as e:
        if str(e) == test_error:   # not a matter of phase: the same error either way
            raise
        raise CaffeError(f"{test_error} (in the default TEST phase; pass --phase TRAIN to show the "
                         "training net)") from None
    reason = test_error[len(source) + 2:] if test_error.startswith(f"{source}: ") else test_error
    net.phase_note = f"{source}: showing the TRAIN net, as the TEST net does not build ({reason}); pass --phase to choose"
    return net


def _shape_net(net_param, source, phase, input_shapes, level, stages):
    input_shapes = dict(input_shapes or {})
    kept = pb.NetParameter(name=net_param.name)
    stand_ins = {}   # layer name -> its own type, for the layers shown through an Input stand-in
    for lp in filter_net(net_param, phase, level, stages, source):
        layer = kept.layer.add()
        layer.CopyFrom(lp)
        del layer.include[:]
        del layer.exclude[:]
        if _is_declared_data_layer(lp):
            if all(t in input_shapes for t in lp.top):
                shapes = [input_shapes[t] for t in lp.top]
            else:
                shapes = _declared_shapes(lp, source)
            stand_in = pb.LayerParameter(name=lp.name, type="Input", top=lp.top)
            for shape in shapes:
                stand_in.input_param.shape.add().dim.extend(shape)
            layer.CopyFrom(stand_in)
            stand_ins[lp.name] = lp.type
    known = {t for lp in kept.layer if lp.type == "Input" for t in lp.top}
    unknown = set(input_shapes) - known
    if unknown:
        raise CaffeError(f"{source}: --input-shape names {', '.join(sorted(unknown))}, but the net's inputs "
                         f"are {', '.join(sorted(known)) or 'none'}")
    with torch.device("meta"):
        # fill=False: shapes are all info needs (filling would draw every weight on the CPU).
        net = Net(kept, phase, level=level, stages=stages, input_shapes=input_shapes, source=source, fill=False)
    net.source = source
    net.stand_ins = stand_ins
    net.phase_note = None
    return net


def validate_net(net_param, source, phase=None):
    """Refuse what Net refuses, for tools that show a net without building it (tools/draw_net.py).

    The net is built as `info` builds it (`phase`, or None: TEST, else TRAIN), so its errors are
    Net's, word for word. The build is skipped when the prototxt alone cannot give the shapes (a
    data layer that does not declare its image size; a Python layer with bottoms, whose module a
    drawing need not import). Then, for the layers of every phase, the checks that need no shapes
    (vgg_caffe.layers.base.check_static: known type, geometry, num_output, input dims, fillers)
    and each phase's filter rules and one producer per top."""
    from .layers.base import check_static

    if not any(lp.type == "Python" and len(lp.bottom) for lp in net_param.layer):
        _validate_by_building(net_param, source, phase)
    for lp in net_param.layer:
        check_static(lp, source)
    for ph in (pb.TRAIN, pb.TEST) if phase is None else (phase_value(phase),):
        made = {}
        for lp in filter_net(net_param, ph, 0, (), source):
            for k, t in enumerate(lp.top):
                if (t in made and t not in lp.bottom) or t in lp.top[:k]:
                    raise CaffeError(f"{source}: layer '{lp.name}' ({lp.type}): top '{t}' is already produced by "
                                     f"layer '{made.get(t, lp.name)}' (in the {pb.Phase.Name(ph)} net); a blob has "
                                     "one producer (an in-place layer names it as its bottom too)")
                made[t] = lp.name


def _validate_by_building(net_param, source, phase):
    # As info: one phase that builds is enough (a solver's snapshot keeps only its TRAIN data layer).
    errors = []
    for ph in ("TEST", "TRAIN") if phase is None else (phase,):
        try:
            shape_net(net_param, ph, source=source)
            return
        except UndeclaredShape:
            return
        except CaffeError as e:
            errors.append(e)
    raise errors[0]


def summarize(model, phase="TEST", input_shapes=None):
    """(rows, totals) for `model`; totals has params (each shared blob once), macs and outputs,
    and `note` (None, or why phase=None showed the TRAIN net)."""
    net = shape_net(model, phase, input_shapes)
    rf = {}
    rows = []
    for name, layer in zip(net.layer_names, net.layers.values()):
        lp = layer.param
        if layer.is_data:
            field = (1, 1)
        else:
            sizes = [rf.get(b, (1, 1)) for b in lp.bottom]
            size, jump = max(sizes) if sizes else (1, 1)
            k, s, _ = layer.receptive()
            field = (size + (k - 1) * jump, jump * s)
        for t in lp.top:
            rf[t] = field
        rows.append(Row(name, net.stand_ins.get(name, lp.type), list(zip(lp.top, layer.top_shapes)),
                        int(layer.param_count()), int(layer.multiply_adds()), field))
    totals = {"params": sum(int(p.numel()) for _, _, p, _ in net.learnable()),
              "macs": sum(r.macs for r in rows), "outputs": list(net.output_names),
              "name": net.net_param.name, "phase": net.phase_name, "note": net.phase_note}
    totals["memory_note"] = _memory_note(net.source, rows, totals["params"])
    return rows, totals


def _memory_note(source, rows, params):
    """A warning when the net, shown here on the meta device, could not be built on this machine:
    its parameters, or its largest top, need more memory than is available (vgg_caffe.machine)."""
    itemsize = torch.get_default_dtype().itemsize
    tops = [(math.prod(shape) * itemsize, f"top '{top}' of layer '{r.name}'") for r in rows for top, shape in r.tops]
    biggest = max(tops, default=(0, ""))
    room = machine.available_bytes()
    if room is None:
        return None
    for need, what in ((params * itemsize, "the learnable blobs"), biggest):
        if need > room:
            return (f"{source}: {what} need {machine.human(need)}, more than the {machine.human(room)} of memory "
                    "available here: Net, time and solve would refuse to build this net")
    return None


def _shape(shape):
    return "x".join(str(d) for d in shape) if len(shape) else "scalar"


def format_table(rows, totals):
    header = ("layer", "type", "top shape", "params", "mult-adds", "RF", "jump")
    body = []
    for r in rows:
        shapes = ", ".join(_shape(s) if len(r.tops) == 1 else f"{t} {_shape(s)}" for t, s in r.tops)
        body.append((r.name, r.type, shapes, f"{r.params:,}" if r.params else "",
                     f"{r.macs:,}" if r.macs else "", str(r.rf[0]), str(r.rf[1])))
    body.append(("total", "", "", f"{totals['params']:,}", f"{totals['macs']:,}", "", ""))
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    right = {3, 4, 5, 6}

    def line(row):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [f"net {totals['name'] or '(unnamed)'}, phase {totals['phase']}", line(header), rule]
    out += [line(r) for r in body[:-1]] + [rule, line(body[-1])]
    out.append(f"outputs: {', '.join(totals['outputs'])}")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m vgg_caffe.info", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a net prototxt (current or V1 format) or caffemodel")
    ap.add_argument("--phase", choices=("TRAIN", "TEST"),
                    help="default TEST, or TRAIN when only the TRAIN net builds (a solver's snapshot)")
    ap.add_argument("--input-shape", action="append", default=[], metavar="BLOB=N,C,H,W",
                    help="shape of an input or data top (repeatable)")
    args = ap.parse_args(argv)
    shapes = dict(parse_shape_arg(s) for s in args.input_shape)
    rows, totals = summarize(args.model, args.phase, shapes)
    for note in (totals["note"], totals["memory_note"]):
        if note:
            print(f"note: {note}", file=sys.stderr)
    print(format_table(rows, totals))
    return 0


if __name__ == "__main__":
    run_cli(main)
