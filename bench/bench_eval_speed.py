"""Evaluation overhead: dense and multi-crop multi-scale evaluation against the bare net forward
passes over the same inputs.

A VGG-16 (configuration D) deploy net with every width divided by --width-div (default 4, so a
pass costs 1/16 of VGG-16's; the protocol code's cost does not shrink with it, so this is the
harder case), filled from its fillers, on real photos (scikit-image samples); Q in {256, 384, 512}:
  dense       vgg_caffe.eval's dense protocol (whole rescaled image and its flip through the
              fully-convolutional net, spatial average, soft-max, averages) against the dense net's
              forward passes alone on the same rescaled images and flips, made beforehand;
  multi-crop  the 5x5 grid of crops plus flips at each Q against the crop net's forward passes alone
              on the same batches of crops (batch --batch), stacked beforehand.
Both sides interleaved, medians of --repeats. Target (issue 14): protocol time within 10% of the
bare forward time (ratio <= 1.10).

    python -m bench.bench_eval_speed [--images 3] [--width-div 4] [--threads 2] [--precision fp32]

Results: bench/results/eval_speed.json.
"""
import argparse
import json
import os
import time

import cv2
import numpy as np
import torch

from bench._report import result_path, write
from bench.bench_overhead import interleaved
from bench.bench_precision import PHOTOS
from vgg_caffe import eval as ev
from vgg_caffe.errors import run_cli
from vgg_caffe.vgg import netgen

RESULTS = result_path("eval_speed")
SCALES = (256, 384, 512)


def photos(count):
    import skimage.data

    out = []
    for name in PHOTOS[:count]:
        img = np.asarray(getattr(skimage.data, name)())
        img = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img[:, :, :3]
        out.append(np.ascontiguousarray(img[:, :, ::-1]).astype(np.uint8))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--width-div", type=int, default=4)
    ap.add_argument("--batch", type=int, default=50, help="crops per forward pass (evaluate's default)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"))
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    load_start = round(os.getloadavg()[0], 2)
    deploy = netgen.deploy_net("D", netgen.Options(width_div=args.width_div, crop=224, filler="xavier"))
    model = ev.Model(deploy, None, "cpu", batch_size=args.batch, name="D/%d" % args.width_div)
    model.net.precision = model.dense.precision = args.precision
    images = photos(args.images)

    # The inputs the protocols make, made here once, for the bare passes.
    inputs = {q: [ev.protocols.to_input(ev.protocols.rescale(img, q), model.mean) for img in images] for q in SCALES}
    dense_batches = [torch.from_numpy(np.ascontiguousarray(np.stack([x, x[:, :, ::-1]])))
                     for q in SCALES for x in inputs[q]]
    crop_batches = []
    for q in SCALES:
        flat = [c for x in inputs[q] for c in ev.protocols.crops(x, model.crop, 5, True)]
        crop_batches += [torch.from_numpy(np.ascontiguousarray(np.stack(flat[i:i + args.batch])))
                         for i in range(0, len(flat), args.batch)]

    def bare(net, batches):
        def run():
            t0 = time.perf_counter()
            with torch.no_grad():
                for b in batches:
                    net(**{model.input: b})
            return time.perf_counter() - t0
        return run

    def protocol(name):
        def run():
            t0 = time.perf_counter()
            model.posteriors(images, [name], SCALES, grid=5, flip=True)
            return time.perf_counter() - t0
        return run

    timed = interleaved({"dense_protocol": protocol("dense"), "dense_bare_forward": bare(model.dense, dense_batches),
                         "multicrop_protocol": protocol("multi-crop"),
                         "multicrop_bare_forward": bare(model.net, crop_batches)}, args.repeats)
    ratio = {"dense": timed["dense_protocol"]["median_s"] / timed["dense_bare_forward"]["median_s"],
             "multi_crop": timed["multicrop_protocol"]["median_s"] / timed["multicrop_bare_forward"]["median_s"]}
    fastest = {"dense": min(timed["dense_protocol"]["all_s"]) / min(timed["dense_bare_forward"]["all_s"]),
               "multi_crop": min(timed["multicrop_protocol"]["all_s"]) / min(timed["multicrop_bare_forward"]["all_s"])}
    report = {"bench": "eval_speed", "net": f"VGG-16 (D) deploy, widths / {args.width_div}, xavier fill",
              "images": args.images, "scales": list(SCALES), "grid": 5, "flip": True, "batch": args.batch,
              "threads": args.threads, "precision": args.precision, "repeats": args.repeats,
              "load_average_1min_at_start": load_start, "crops": sum(len(b) for b in crop_batches),
              "protocol_over_bare_forward": ratio, "protocol_over_bare_forward_fastest_runs": fastest,
              "target_within_10_percent": {k: v <= 1.10 for k, v in ratio.items()}, "timings": timed}
    write(args.out, report)
    print(json.dumps({k: v for k, v in report.items() if k != "timings"}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_cli(main)
