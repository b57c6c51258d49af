"""Net surgery: a trained net's prototxt and weights to the fully-convolutional (dense) pair and back.

    python tools/net_surgery.py to-dense --model deploy.prototxt --weights W.caffemodel \
        --out-model deploy_dense.prototxt --out-weights W_dense.caffemodel
    python tools/net_surgery.py to-fc --model deploy_dense.prototxt --weights W_dense.caffemodel \
        --out-model deploy.prototxt --out-weights W.caffemodel

to-dense turns every InnerProduct layer (or those named by --layers) into a Convolution: the first
gets a kernel the size of the feature map it used to flatten (7x7 for VGG's fc6 at 224), the later
ones 1x1; weights are reshaped, names kept. to-fc undoes it for every convolution whose kernel
covers its whole bottom at the declared input size. V1 prototxt and caffemodels (the released VGG
files) are read; the current format is written. This is the recipe of Caffe's net_surgery example,
done by vgg_caffe.eval.dense.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vgg_caffe.eval.dense import convert_files
from vgg_caffe.errors import run_cli  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(prog="net_surgery.py", description=__doc__.split("\n\n")[0])
    p.add_argument("direction", choices=("to-dense", "to-fc"))
    p.add_argument("--model", required=True, help="input prototxt (V1 or current format)")
    p.add_argument("--weights", help="input .caffemodel or .h5 (optional: convert the prototxt alone)")
    p.add_argument("--out-model", required=True, help="output prototxt")
    p.add_argument("--out-weights", help="output .caffemodel or .h5 (required with --weights)")
    p.add_argument("--layers", help="comma-separated layer names to convert (default: all that apply)")
    args = p.parse_args(argv)
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None
    changes = convert_files(args.direction, args.model, args.weights, args.out_model, args.out_weights, layers)
    for c in changes:
        shape = "x".join(str(d) for d in c.weight_shape)
        print(f"{c.name}: -> {c.new_type}, weight {shape}", file=sys.stderr)
    print(f"wrote {args.out_model}" + (f" and {args.out_weights}" if args.weights else ""), file=sys.stderr)
    return changes


if __name__ == "__main__":
    run_cli(main)
