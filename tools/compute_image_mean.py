#!/usr/bin/env python3
"""compute_image_mean DB [OUT.binaryproto]: Caffe's per-pixel mean BlobProto of an LMDB of Datums.

Also prints the mean pixel per channel (B, G, R) and saves it as JSON (default: OUT with .json
instead of its extension; --mean_pixel_out to choose). Encoded records are decoded. Records of
different sizes need --mean_pixel_only (no per-pixel mean then).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools._flags import normalise  # noqa: E402
from vgg_caffe.errors import CaffeError, run_cli  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(prog="compute_image_mean", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("db")
    p.add_argument("out", nargs="?", help="output mean BlobProto (.binaryproto)")
    p.add_argument("--backend", default="lmdb", help="lmdb (leveldb is not supported)")
    p.add_argument("--mean_pixel_out", help="JSON file for the mean pixel (default: OUT as .json)")
    p.add_argument("--mean_pixel_only", action="store_true",
                   help="records may differ in size; compute only the mean pixel")
    p.add_argument("--limit", type=int, default=0, help="use only the first N records")
    a = p.parse_args(normalise(sys.argv[1:] if argv is None else argv, ("mean_pixel_only",),
                               ("backend", "mean_pixel_out", "limit")))
    if a.backend.lower() != "lmdb":
        raise CaffeError(f"--backend {a.backend}: only lmdb is supported")
    from vgg_caffe.data import mean as mean_lib
    mean, pixel, count = mean_lib.compute(a.db, per_pixel=not a.mean_pixel_only, limit=a.limit)
    pixel_path = a.mean_pixel_out or (os.path.splitext(a.out)[0] + ".json" if a.out else None)
    mean_lib.write(mean, pixel, count, a.out, pixel_path)
    print(f"Processed {count} records.")
    for c, v in enumerate(pixel):
        print(f"mean_value channel [{c}]: {v:.6f}")
    if a.out and mean is not None:
        print(f"Wrote {a.out} (1, {', '.join(map(str, mean.shape))})")
    if pixel_path:
        print(f"Wrote {pixel_path}")


if __name__ == "__main__":
    run_cli(main)
