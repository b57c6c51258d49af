#!/usr/bin/env python3
"""convert_imageset ROOT/ LISTFILE DB: images listed as "path label" -> an LMDB of Caffe Datums.

Caffe's flags (-gray, -shuffle, -backend lmdb, -resize_width/-resize_height, -check_size, -encoded,
-encode_type) plus the VGG additions: --min_side N (isotropic rescale, smaller side N), --workers N,
--resume, --seed (shuffle seed). Unreadable images are skipped and listed in DB.skipped.txt.
See vgg_caffe/data/convert.py for the exact behaviour.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools._flags import normalise  # noqa: E402
from vgg_caffe.errors import CaffeError, run_cli  # noqa: E402

BOOLS = ("gray", "shuffle", "check_size", "encoded", "resume", "quiet")
VALUES = ("backend", "resize_width", "resize_height", "encode_type", "min_side", "workers", "seed",
          "commit_every", "map_size")


def main(argv=None):
    p = argparse.ArgumentParser(prog="convert_imageset", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="folder the list's paths are relative to")
    p.add_argument("listfile", help='text file of "relative/path label" lines')
    p.add_argument("db", help="output LMDB directory (must not exist unless --resume)")
    p.add_argument("--gray", action="store_true", help="store single-channel images")
    p.add_argument("--shuffle", action="store_true", help="shuffle the lines (seeded by --seed)")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    p.add_argument("--backend", default="lmdb", help="lmdb (leveldb is not supported)")
    p.add_argument("--resize_width", type=int, default=0)
    p.add_argument("--resize_height", type=int, default=0)
    p.add_argument("--min_side", type=int, default=0, help="isotropic rescale: smaller side becomes N")
    p.add_argument("--check_size", action="store_true", help="fail unless all images have one size")
    p.add_argument("--encoded", action="store_true", help="store encoded image bytes")
    p.add_argument("--encode_type", default="", help="re-encode as jpg, png, bmp, tif, webp, ... (implies --encoded, "
                                                   "as in Caffe; an unknown type is an error)")
    p.add_argument("--workers", type=int, default=1, help="decoding processes (output is identical)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted conversion")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--commit_every", type=int, default=1000, help=argparse.SUPPRESS)
    p.add_argument("--map_size", type=int, default=1 << 26, help=argparse.SUPPRESS)
    a = p.parse_args(normalise(sys.argv[1:] if argv is None else argv, BOOLS, VALUES))
    if a.backend.lower() != "lmdb":
        raise CaffeError(f"--backend {a.backend}: only lmdb is supported (LevelDB is not; use --backend lmdb)")
    if a.workers < 1:
        raise CaffeError("--workers must be >= 1")
    from vgg_caffe.data.convert import Options, convert_imageset
    opts = Options(gray=a.gray, shuffle=a.shuffle, seed=a.seed, resize_height=a.resize_height,
                   resize_width=a.resize_width, min_side=a.min_side, encoded=a.encoded,
                   encode_type=a.encode_type, check_size=a.check_size)
    convert_imageset(a.root, a.listfile, a.db, opts, workers=a.workers, resume=a.resume,
                     commit_every=a.commit_every, map_size=a.map_size, progress=not a.quiet)


if __name__ == "__main__":
    run_cli(main)
