"""Upgrade a net from Caffe's V1 format to the current one (Caffe's upgrade_net_proto_text and
upgrade_net_proto_binary in one tool).

    python tools/upgrade_net_proto.py IN.prototxt OUT.prototxt
    python tools/upgrade_net_proto.py IN.caffemodel OUT.caffemodel

`layers { type: CONVOLUTION blobs_lr: 1 weight_decay: 1 }` becomes `layer { type: "Convolution"
param { lr_mult: 1 decay_mult: 1 } }`, the net's input / input_dim become an Input layer, and old
data-layer transform fields move to transform_param (vgg_caffe.proto.upgrade_net). A binary
caffemodel keeps its blobs exactly as stored (legacy 4-d dims included). The output is written in
the input's format unless OUT's suffix names the other one (.prototxt text, .caffemodel binary).
A file already in the current format is copied through, as Caffe does, with a note.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vgg_caffe.errors import run_cli  # noqa: E402
from vgg_caffe.io.checks import check_stored_blobs  # noqa: E402
from vgg_caffe.proto import (BINARY_SUFFIXES, TEXT_SUFFIXES, is_text_file, needs_upgrade, pb,  # noqa: E402
                             read_message, upgrade_net, write_message)


def upgrade_file(src, dst):
    """Upgrade `src` into `dst`; returns (upgraded?, wrote binary?)."""
    net = read_message(src, pb.NetParameter)
    check_stored_blobs(net, src)   # damaged blobs are named, not copied through
    changed = needs_upgrade(net)
    out = upgrade_net(net, source=src)
    lower = os.fspath(dst).lower()
    if lower.endswith(BINARY_SUFFIXES):
        binary = True
    elif lower.endswith(TEXT_SUFFIXES):
        binary = False
    else:
        binary = not is_text_file(src)
    write_message(dst, out, binary=binary)
    return changed, binary


def main(argv=None):
    ap = argparse.ArgumentParser(prog="upgrade_net_proto.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="V1 (or current) net: prototxt or caffemodel")
    ap.add_argument("output", help="where to write the current-format net")
    args = ap.parse_args(argv)
    changed, binary = upgrade_file(args.input, args.output)
    note = "upgraded" if changed else "already in the current format; copied"
    print(f"{args.input}: {note} -> {args.output} ({'binary' if binary else 'text'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
