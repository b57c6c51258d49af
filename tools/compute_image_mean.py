#!/usr/bin/env python3
"""compute_image_mean DB [OUT.binaryproto]: Caffe's per-pixel mean BlobProto of an LMDB of Datums.

Also prints the mean pixel per channel (B, G, R) and saves it as JSON (default: OUT with .json
instead of its extension; --mean_pixel_out to choose). Encoded records are decoded. When the
records differ in size (convert_imageset --min_side keeps each photo's aspect ratio) no per-pixel
mean exists: the mean pixel, the per-channel mean over every pixel (what VGG subtracts, as
transform_param mean_value), is computed and written to the JSON, OUT is not written, and the tool
says so. --mean_pixel_only asks for that alone; --check_size makes a size change an error, as in
Caffe.
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
                   help="compute only the mean pixel (records may differ in size)")
    p.add_argument("--check_size", action="store_true",
                   help="records of another size are an error (Caffe's behaviour) instead of giving the mean pixel only")
    p.add_argument("--limit", type=int, default=0, help="use only the first N records")
    a = p.parse_args(normalise(sys.argv[1:] if argv is None else argv, ("mean_pixel_only", "check_size"),
                               ("backend", "mean_pixel_out", "limit")))
    if a.backend.lower() != "lmdb":
        raise CaffeError(f"--backend {a.backend}: only lmdb is supported")
    if a.mean_pixel_only and a.check_size:
        raise CaffeError("--mean_pixel_only and --check_size exclude each other")
    from vgg_caffe.data import mean as mean_lib
    from vgg_caffe.fileio import check_writable

    pixel_path = a.mean_pixel_out or (os.path.splitext(a.out)[0] + ".json" if a.out else None)
    for path in (a.out, pixel_path):   # before reading the whole database
        if path:
            check_writable(path, "mean")
    mode = False if a.mean_pixel_only else (True if a.check_size else "auto")
    r = mean_lib.compute_mean(a.db, per_pixel=mode, limit=a.limit)
    mean_lib.write(r.mean, r.pixel, r.count, a.out, pixel_path)
    print(f"Processed {r.count} records.")
    for c, v in enumerate(r.pixel):
        print(f"mean_value channel [{c}]: {v:.6f}")
    if a.out and r.mean is not None:
        print(f"Wrote {a.out} (1, {', '.join(map(str, r.mean.shape))})")
    if r.mixed:
        first, shape, other, size = r.mixed
        kept = f"; {a.out} was not written" + (" (the file there from before is left unchanged)"
                                               if os.path.exists(a.out) else "") if a.out else ""
        values = " ".join(f"mean_value: {v:.3f}" for v in r.pixel)
        print(f"note: the records differ in size ({first}: {shape}, {other}: {size}), so no per-pixel mean "
              f"image exists{kept}. The mean pixel (per-channel mean over all pixels, what VGG subtracts) is "
              + (f"in {pixel_path}" if pixel_path else "printed above")
              + f"; use it as transform_param {{ {values} }} or the VGG layer's mean_value", file=sys.stderr)
    if pixel_path:
        print(f"Wrote {pixel_path}")


if __name__ == "__main__":
    run_cli(main)
