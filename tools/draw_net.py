"""Draw a net's graph, like Caffe's python/draw_net.py, as a picture a person can read.

    python tools/draw_net.py NET.prototxt OUT.png [--style compact|caffe] [--rankdir TB|LR|BT|RL]
                             [--phase TRAIN|TEST|ALL] [--renderer matplotlib|graphviz]

Pictures (.png, .svg, .pdf) are compact by default: one box per layer, in-place layers (ReLU,
Dropout, ...) folded into the label of the layer they rewrite ("conv3_1  3×3/1, 256 + ReLU"),
each box showing its top's shape, blocks (up to each pooling, concat or eltwise) shaded, and the
graph wrapped into columns (rows for --rankdir LR) so VGG-19 or GoogLeNet fits a page, text at
9 pt, readable at 100%. --style caffe draws Caffe's graph instead: layers as boxes labelled
with name, type and geometry, blobs as octagons, an edge from each bottom blob to its layer and
from the layer to each top (an in-place layer gets a new node for the blob it rewrites, so the
graph stays acyclic). OUT.dot / .gv get Caffe's graph as Graphviz text (the compact one with
--style compact). Pictures are drawn with matplotlib (vgg_caffe.draw), so the same file comes out
with or without Graphviz; --renderer graphviz hands the text to `dot` instead (installed
separately: apt-get install graphviz; it lays the graph out as one long strip). Any prototxt,
V1 included; --phase ALL (the default, as Caffe) draws every layer.
"""
import argparse
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vgg_caffe import draw as drawing  # noqa: E402
from vgg_caffe.errors import CaffeError, run_cli  # noqa: E402
from vgg_caffe.fileio import atomic_write  # noqa: E402
from vgg_caffe.proto import pb  # noqa: E402

IMAGES = ("png", "svg", "pdf")


def draw(model, out, rankdir=None, phase=None, renderer="auto", style="auto"):
    """Write `out` (.dot, or an image); returns the renderer used ('dot-text', 'graphviz', 'matplotlib').

    style "auto": Caffe's graph for .dot/.gv, the compact picture for images. rankdir None: TB
    for compact pictures, LR (Caffe's default) otherwise."""
    from vgg_caffe.info import validate_net
    from vgg_caffe.net import load_net_param

    fmt = os.path.splitext(out)[1].lstrip(".").lower()
    if fmt not in ("dot", "gv") + IMAGES:
        raise CaffeError(f"{out}: unknown output format '.{fmt}'; expected .dot, .png, .svg or .pdf")
    net_param, source = load_net_param(model)
    validate_net(net_param, source, phase)   # what Net would refuse, draw_net refuses too
    if style == "auto":
        style = "caffe" if fmt in ("dot", "gv") else "compact"
    if rankdir is None:
        rankdir = "TB" if style == "compact" and fmt in IMAGES and renderer != "graphviz" else "LR"
    if fmt in ("dot", "gv"):
        atomic_write(out, drawing.dot_text(net_param, style, phase, rankdir, source))
        return "dot-text"
    if renderer == "graphviz":
        if not shutil.which("dot"):
            raise CaffeError("--renderer graphviz: Graphviz `dot` is not installed (apt-get install graphviz, "
                             "or leave --renderer at its default: matplotlib)")
        text = drawing.dot_text(net_param, style, phase, rankdir, source)
        result = subprocess.run(["dot", f"-T{fmt}"], input=text.encode(), capture_output=True)
        if result.returncode != 0:
            raise CaffeError(f"{out}: Graphviz dot failed: {result.stderr.decode(errors='replace').strip()}")
        atomic_write(out, result.stdout)
        return "graphviz"
    atomic_write(out, drawing.picture(net_param, fmt, style, phase, rankdir, source))
    return "matplotlib"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="draw_net", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input_net_proto_file")
    ap.add_argument("output_image_file", help=".png, .svg, .pdf or .dot")
    ap.add_argument("--style", default="auto", choices=["auto", "compact", "caffe"],
                    help="compact (pictures' default) or caffe (layers and blobs; .dot's default)")
    ap.add_argument("--rankdir", default=None, choices=["LR", "TB", "BT", "RL"],
                    help="direction of the data flow (default TB for compact pictures, else LR)")
    ap.add_argument("--phase", default="ALL", type=str.upper, choices=["TRAIN", "TEST", "ALL"],
                    help="draw only the layers of this phase (default ALL)")
    ap.add_argument("--renderer", default="auto", choices=["auto", "graphviz", "matplotlib"],
                    help="pictures: matplotlib (auto; wrapped layout) or Graphviz's dot (one strip)")
    args = ap.parse_args(argv)
    phase = None if args.phase == "ALL" else pb.Phase.Value(args.phase)
    used = draw(args.input_net_proto_file, args.output_image_file, args.rankdir, phase, args.renderer, args.style)
    print(f"Drawing net to {args.output_image_file} ({used})")


if __name__ == "__main__":
    run_cli(main)
