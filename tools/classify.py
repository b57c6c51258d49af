#!/usr/bin/env python3
"""classify: the top-5 classes of images, as Caffe's examples/cpp_classification does it.

    classify.py MODEL WEIGHTS MEAN LABELS IMAGE [IMAGE ...] [--top 5] [--csv OUT.csv] [--json OUT.json]
                [--output-blob prob] [--batch-size 10] [--gpu N]

MODEL is a deploy prototxt, WEIGHTS its .caffemodel (or .h5). MEAN is a mean .binaryproto (as
compute_image_mean writes; cpp_classification subtracts its per-channel average), the mean.json
compute_image_mean writes beside it (its mean pixel), a .npy mean
array (python/classify.py's --mean_file; also reduced to its per-channel average), comma-separated
per-channel values ("104,117,123", BGR), or "none". LABELS has one class name per line
(synset_words.txt: "n01440764 tench, Tinca tinca"), as many as the net's classes.

Each image is read as stored (cv::imread -1) and converted to the net's channel count (BGR or
gray), resized to the input's height x width with cv::resize (bilinear), taken as float, minus the
mean; the net's first output blob (Caffe's order: sorted by name), e.g. "prob", gives the scores.
Printed per image, as the example prints them:
    ---------- Prediction for IMAGE ----------
    0.8213 - "n02123045 tabby, tabby cat"
--csv writes one row per image and rank (image, rank, index, label, score); --json a list of
{"image", "predictions": [{"rank", "index", "label", "score"}]}.
"""
import argparse
import csv
import io
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vgg_caffe.errors import CaffeError, run_cli  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(prog="classify.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("model", help="deploy prototxt")
    p.add_argument("weights", help="trained .caffemodel or .h5")
    p.add_argument("mean", help="mean .binaryproto, compute_image_mean's mean.json, .npy, comma-separated channel values (BGR), or none")
    p.add_argument("labels", help="labels file, one class per line (synset_words.txt)")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top", type=int, default=5, help="classes to report per image (default 5)")
    p.add_argument("--csv", help="also write the predictions as CSV here")
    p.add_argument("--json", help="also write the predictions as JSON here")
    p.add_argument("--output-blob", help="score blob (default: the net's first output, e.g. prob)")
    p.add_argument("--batch-size", type=int, default=10, help="images per forward pass (default 10)")
    p.add_argument("--gpu", type=int, help="run on this CUDA device (default: the CPU)")
    return p


def read_labels(path, classes):
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError as e:
        raise CaffeError(f"{path}: cannot read the labels file ({e.strerror})") from None
    if lines and lines[-1] == "":
        lines.pop()
    labels = [ln.rstrip("\r") for ln in lines]
    if len(labels) != classes:
        raise CaffeError(f"{path}: {len(labels)} labels but the net's output has {classes} classes "
                         "(one label per line, in class order)")
    return labels


def _mean_json(path):
    """The mean pixel of the JSON compute_image_mean writes (mean_pixel_bgr, or mean_pixel)."""
    import json
    try:
        with open(path) as f:
            info = json.load(f)
        values = info.get("mean_pixel_bgr", info.get("mean_pixel"))
        pixel = np.array([float(v) for v in values], np.float32)
    except (OSError, ValueError, TypeError, AttributeError):
        raise CaffeError(f"{path}: expected compute_image_mean's JSON with mean_pixel_bgr: [B, G, R]") from None
    return pixel.reshape(-1, 1)


def read_mean(text, channels):
    """The mean pixel to subtract, one value per channel."""
    if text.lower() == "none":
        return np.zeros(channels, np.float32)
    if os.path.exists(text):
        if text.lower().endswith(".npy"):
            arr = np.load(text).astype(np.float32)
        elif text.lower().endswith(".json"):
            # compute_image_mean writes only this JSON when its records differ in size
            arr = _mean_json(text)
        else:
            from vgg_caffe.data.mean import read_mean_file
            arr = read_mean_file(text)
        arr = arr.reshape(arr.shape[-3] if arr.ndim >= 3 else arr.shape[0], -1)
        pixel = arr.mean(axis=1)
    else:
        try:
            pixel = np.array([float(v) for v in text.split(",")], np.float32)
        except ValueError:
            raise CaffeError(f"mean {text!r}: not a file, and not comma-separated numbers (e.g. 104,117,123)") from None
        if pixel.size == 1:
            pixel = np.repeat(pixel, channels)
    if pixel.size != channels:
        raise CaffeError(f"mean {text}: {pixel.size} channel value(s) but the net takes {channels} channels")
    return pixel.astype(np.float32)


def load(path, channels, height, width, mean):
    """cpp_classification's Preprocess: channel conversion, resize, float, minus the mean; CHW."""
    import cv2

    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CaffeError(f"{path}: unable to decode image")
    have = 1 if img.ndim == 2 else img.shape[2]
    if have != channels:
        codes = {(3, 1): cv2.COLOR_BGR2GRAY, (4, 1): cv2.COLOR_BGRA2GRAY, (4, 3): cv2.COLOR_BGRA2BGR,
                 (1, 3): cv2.COLOR_GRAY2BGR}
        if (have, channels) not in codes:
            raise CaffeError(f"{path}: {have}-channel image, the net takes {channels} channels")
        img = cv2.cvtColor(img, codes[(have, channels)])
    if img.shape[:2] != (height, width):
        img = cv2.resize(img, (width, height))
    img = img.astype(np.float32).reshape(height, width, channels) - mean
    return img.transpose(2, 0, 1)


def classify(net, paths, mean, blob, batch_size):
    """(N, classes) scores of the images at `paths`."""
    import torch

    name = net.input_names[0]
    _, c, h, w = net.blob_shapes[name]
    scores = []
    with torch.no_grad():
        for start in range(0, len(paths), batch_size):
            batch = np.stack([load(p, c, h, w, mean) for p in paths[start:start + batch_size]])
            net(**{name: torch.from_numpy(batch).to(net._device())})
            scores.append(net.blobs[blob].detach().float().cpu().numpy().reshape(len(batch), -1))
    return np.concatenate(scores)


def top(scores, labels, n):
    """[(index, label, score)] best first (ties keep class order)."""
    order = np.argsort(-scores, kind="stable")[:min(n, len(labels))]
    return [(int(k), labels[k], float(scores[k])) for k in order]


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.top < 1 or args.batch_size < 1:
        raise CaffeError("--top and --batch-size must be positive")
    import torch

    from vgg_caffe.fileio import check_writable
    from vgg_caffe.net import Net

    for path in (args.csv, args.json):
        if path:
            check_writable(path, "predictions")
    net = Net(args.model, "TEST", weights=args.weights)
    if len(net.input_names) != 1 or len(net.blob_shapes[net.input_names[0]]) != 4:
        raise CaffeError(f"{args.model}: classify needs a net with one N x C x H x W input (a deploy prototxt); "
                         f"inputs: {', '.join(net.input_names) or 'none'}")
    if args.gpu is not None:
        if not torch.cuda.is_available() or args.gpu >= torch.cuda.device_count():
            raise CaffeError(f"--gpu {args.gpu}: no such CUDA device")
        net.to(torch.device("cuda", args.gpu))
    if not net.output_names and not args.output_blob:
        raise CaffeError(f"{args.model}: the net has no output blob to read scores from")
    blob = args.output_blob or min(net.output_names)   # Caffe's output_blobs()[0]: names sorted
    if blob not in net.blob_shapes:
        raise CaffeError(f"{args.model}: no blob named '{blob}'; outputs: {', '.join(net.output_names)}")
    shape = net.blob_shapes[blob]
    labels = read_labels(args.labels, int(np.prod(shape[1:])))
    mean = read_mean(args.mean, net.blob_shapes[net.input_names[0]][1])
    scores = classify(net, args.images, mean, blob, args.batch_size)
    results = []
    for path, row in zip(args.images, scores):
        best = top(row, labels, args.top)
        print(f"---------- Prediction for {path} ----------")
        for _, label, score in best:
            print(f"{score:.4f} - \"{label}\"")
        results.append({"image": path, "predictions": [
            {"rank": r + 1, "index": k, "label": label, "score": score} for r, (k, label, score) in enumerate(best)]})
    write_outputs(results, args.csv, args.json)
    return 0


def write_outputs(results, csv_path, json_path):
    from vgg_caffe.fileio import atomic_write

    if csv_path:
        text = io.StringIO()
        w = csv.writer(text, lineterminator="\n")
        w.writerow(["image", "rank", "index", "label", "score"])
        for r in results:
            for p in r["predictions"]:
                w.writerow([r["image"], p["rank"], p["index"], p["label"], repr(p["score"])])
        atomic_write(csv_path, text.getvalue())
    if json_path:
        atomic_write(json_path, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(run_cli(main))
