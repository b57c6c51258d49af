#!/usr/bin/env python3
"""parse_log LOG OUTDIR: a training log -> OUTDIR/LOG.train and OUTDIR/LOG.test CSV files.

The same files as Caffe's tools/extra/parse_log.py: one row per displayed iteration (train) or per
test, columns NumIters, Seconds (since the "Solving" line), LearningRate, then one column per net
output (loss, accuracy, ...). Reads logs of `python -m vgg_caffe.solve` (stderr or --log) and of
Caffe itself. See vgg_caffe.train.log.parse_log.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vgg_caffe.errors import CaffeError, run_cli  # noqa: E402
from vgg_caffe.train.log import parse_log, write_csv


def main(argv=None):
    p = argparse.ArgumentParser(prog="parse_log", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logfile_path", help="the training log")
    p.add_argument("output_dir", help="where LOG.train and LOG.test go")
    p.add_argument("--delimiter", default=",", help="column delimiter (default ',')")
    p.add_argument("--verbose", action="store_true", help="print the paths written")
    args = p.parse_args(argv)
    if not os.path.isfile(args.logfile_path):
        raise CaffeError(f"{args.logfile_path}: no such log file")
    train, test = parse_log(args.logfile_path)
    if not train and not test:
        raise CaffeError(f"{args.logfile_path}: no 'Train net output' or 'Test net output' lines after a "
                         "'Solving' line; is this a training log?")
    base = os.path.join(args.output_dir, os.path.basename(args.logfile_path))
    for suffix, rows in ((".train", train), (".test", test)):
        write_csv(base + suffix, rows, args.delimiter)
        if args.verbose:
            print(f"wrote {base + suffix} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
