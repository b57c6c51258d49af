"""`python -m vgg_caffe.evaluate`: top-1/top-5 error of trained nets under the paper's test
protocols (single crop, dense, multi-crop, multi-crop+dense; multi-scale; fusion), printed as a
table like Tables 3 to 6 and written as JSON/CSV. The work is in vgg_caffe.eval.

    python -m vgg_caffe.evaluate --model deploy.prototxt --weights W.caffemodel --data VAL_LMDB \
        --protocol dense --scales 256,384,512 --out results.json [--precision bf16] [--compile]
"""
import argparse
import math
import os
import sys
import numpy as np
import torch
from .eval.data import open_data
from .eval.protocols import PROTOCOLS, VGG_MEAN, Model, evaluate
from .eval.tables import format_table, parse_scale, test_scales, write_results
from . import machine
from .errors import CaffeError, run_cli
from .fileio import atomic_write, check_writable
from . import precision as speed


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m vgg_caffe.evaluate",
        description="Top-1/top-5 error of trained VGG nets under the paper's test protocols "
                    "(single centre crop, dense, multi-crop, multi-crop+dense; multi-scale; fusion).")
    p.add_argument("--model", action="append", required=True,
                   help="deploy prototxt (V1 or current); repeat for fusion")
    p.add_argument("--weights", action="append", required=True, help="caffemodel/.h5, one per --model")
    p.add_argument("--name", action="append", help="row label per model (default: the net's name)")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="an LMDB of Datums, or ROOT LIST_FILE ('relative/path label' per line)")
    p.add_argument("--protocol", default="dense",
                   help=f"comma-separated, from {', '.join(PROTOCOLS)} (default dense)")
    p.add_argument("--scales", help="test scales Q, comma-separated (e.g. 256,384,512); overrides --train-scale. "
                                       "Without either, Q = the input size x 256/224 (256 for a 224 net)")
    p.add_argument("--train-scale", action="append",
                   help="the model's training scale S ('256') or range ('256,512'): gives the table's "
                        "train (S) column and, without --scales, Q = S or (S_min+S_max)/2. One per model or one for all")
    p.add_argument("--multi-scale", action="store_true",
                   help="without --scales: Q in {S-32, S, S+32}, or {S_min, (S_min+S_max)/2, S_max} when jittered")
    p.add_argument("--grid", type=int, default=5, help="multi-crop grid size per side (default 5: 25 crops)")
    p.add_argument("--no-flip", action="store_true", help="do not add horizontally flipped images (dense, multi-crop)")
    p.add_argument("--mean-value", type=float, nargs=3, default=list(VGG_MEAN), metavar=("B", "G", "R"),
                   help="mean pixel subtracted from BGR 0..255 input (default the VGG mean 103.939 116.779 123.68)")
    p.add_argument("--mean-file", help="a mean .binaryproto (its per-channel average is used as the mean pixel), "
                                       "or the mean .json compute_image_mean writes")
    p.add_argument("--no-strict", action="store_true",
                   help="evaluate even when the weights leave some learnable layers of the net out "
                        "(they keep their initial values); by default that is an error")
    p.add_argument("--score-blob", help="blob holding class scores (default: the bottom of the final Softmax)")
    p.add_argument("--batch-size", type=int, default=50, help="crops per forward pass (default 50)")
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", help="results.json (a .csv with the same rows is written beside it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out images that cannot be read or decoded (and list lines without a label), "
                        "as convert_imageset does, and list them (on stderr, and in OUT.skipped.txt with --out); "
                        "by default the first one stops the run")
    speed.add_arguments(p)
    return p


def report_skipped(skipped, out):
    """Say which images --skip-bad left out: on stderr, and beside the results with --out."""
    lines = [f"{where}\t{reason}" for where, reason in skipped]
    print(f"skipped {len(skipped)} image(s) that could not be read (--skip-bad); the first: {lines[0]}",
          file=sys.stderr)
    if out:
        report = os.path.splitext(out)[0] + ".skipped.txt"
        atomic_write(report, "".join(line + "\n" for line in lines))
        print(f"wrote {report}", file=sys.stderr)
    else:
        for line in lines[1:]:
            print(line, file=sys.stderr)


def mean_from_file(path):
    """The mean pixel (B, G, R) of a mean .binaryproto (its per-channel average), or of the JSON
    compute_image_mean writes beside it (mean_pixel_bgr)."""
    from .proto import pb, read_message

    if path.lower().endswith(".json"):
        import json
        try:
            with open(path) as f:
                values = json.load(f)["mean_pixel_bgr"]
            if len(values) != 3:
                raise ValueError
            return tuple(float(v) for v in values)
        except (OSError, ValueError, KeyError, TypeError):
            raise CaffeError(f"{path}: expected compute_image_mean's JSON with mean_pixel_bgr: [B, G, R]") from None
    blob = read_message(path, pb.BlobProto)
    shape = list(blob.shape.dim) or [blob.num, blob.channels, blob.height, blob.width]
    data = np.asarray(blob.data, np.float32)
    channels = shape[-3] if len(shape) >= 3 else 0
    if channels != 3 or data.size != math.prod(shape):
        raise CaffeError(f"{path}: expected a 3-channel mean blob, found shape {shape} with {data.size} values")
    return tuple(float(v) for v in data.reshape(3, -1).mean(1))


def main(argv=None):
    args = build_parser().parse_args(argv)
    machine.torch_device(args.device)   # a clear error for --device cuda without CUDA, before any work
    if args.out:
        check_writable(args.out, "results")
    with speed.from_arguments(args, args.device):   # --precision, --compile for every net built
        return run(args)


def run(args):
    if len(args.model) != len(args.weights):
        raise CaffeError(f"{len(args.model)} --model but {len(args.weights)} --weights; give one weights file per model")
    n = len(args.model)
    names = args.name or [None] * n
    train = [parse_scale(s) for s in (args.train_scale or [])]
    if len(train) == 1:
        train = train * n
    if train and len(train) != n:
        raise CaffeError(f"{len(train)} --train-scale for {n} models; give one, or one per model")
    protocols = [s.strip() for s in args.protocol.split(",") if s.strip()]
    if args.threads:
        torch.set_num_threads(args.threads)
    mean = mean_from_file(args.mean_file) if args.mean_file else tuple(args.mean_value)
    models = []
    for i in range(n):
        m = Model(args.model[i], args.weights[i], args.device, mean, args.batch_size, args.score_blob,
                  names[i] if i < len(names) else None, strict=not args.no_strict)
        models.append((m, train[i] if train else None))
    if args.scales:
        try:
            fixed = [int(q) for q in args.scales.split(",") if q.strip()]
        except ValueError:
            raise CaffeError(f"--scales {args.scales!r}: expected integers like 256,384,512") from None
        scales = [fixed] * n
    else:
        # Without a training scale, assume the paper's S = 256 for a 224 crop, scaled to the crop.
        scales = [test_scales(s if s is not None else int(round(m.crop[0] * 256 / 224)), args.multi_scale,
                              m.crop[0]) for m, s in models]
    skipped = [] if args.skip_bad else None
    count, images = open_data(args.data, args.limit, skipped)
    rows, _, _ = evaluate(models, images, count, protocols, scales, args.grid, not args.no_flip,
                          progress=not args.quiet)
    print(format_table(rows))
    if skipped:
        report_skipped(skipped, args.out)
    if args.out:
        meta = dict(models=[dict(model=a, weights=w) for a, w in zip(args.model, args.weights)],
                    data=args.data, protocols=protocols, grid=args.grid, flip=not args.no_flip,
                    mean_value=list(mean))
        for path in write_results(args.out, rows, meta):
            print(f"wrote {path}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    run_cli(main)
