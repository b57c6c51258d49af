#!/usr/bin/env python3
"""extract_features: blobs of a trained net, one record per image, as Caffe's tool writes them.

    extract_features.py WEIGHTS MODEL BLOB1[,BLOB2...] DB1[,DB2...] NUM_MINI_BATCHES [lmdb] [CPU|GPU] [DEVICE_ID]
                        [--format lmdb|npy|hdf5]

As tools/extract_features.cpp: MODEL is built in the TEST phase with WEIGHTS copied in by layer
name; it runs NUM_MINI_BATCHES forward passes, its data layers supplying the batches; after each,
every image n of each named blob becomes a Datum with channels, height and width the blob's
legacy C, H, W (a (N, 4096) fc7 gives channels 4096, height 1, width 1) and float_data its values
in C*H*W order, stored under the 10-digit key of its index ("0000000000", "0000000001", ...) in
that blob's database, committed every 1000 records. The databases must not exist yet (db::NEW).
Only LMDB is written (LevelDB is refused). --format npy writes DB as one float32 .npy array of
shape (images, *blob shape[1:]); --format hdf5 an .h5 file holding a dataset named after the blob.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vgg_caffe.errors import CaffeError, run_cli  # noqa: E402

COMMIT_EVERY = 1000


def build_parser():
    p = argparse.ArgumentParser(prog="extract_features.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("weights", help="the trained .caffemodel (or .h5)")
    p.add_argument("model", help="the feature-extraction prototxt (with a data layer)")
    p.add_argument("blobs", help="blob names separated by ','")
    p.add_argument("dbs", help="output databases (or files), one per blob, separated by ','")
    p.add_argument("num_mini_batches", type=int, help="forward passes to run")
    p.add_argument("rest", nargs="*", metavar="[lmdb] [CPU|GPU] [DEVICE_ID]",
                   help="Caffe's optional trailing arguments: db type, mode, device id")
    p.add_argument("--format", choices=("lmdb", "npy", "hdf5"), help="output format (default: the db type, lmdb)")
    return p


def parse_rest(rest):
    """Caffe's trailing arguments: [db_type] [CPU|GPU] [DEVICE_ID] -> (db type, device string)."""
    rest = list(rest)
    db_type = "lmdb"
    if rest and rest[0].upper() not in ("CPU", "GPU"):
        db_type = rest.pop(0).lower()
        if db_type == "leveldb":
            raise CaffeError("db type leveldb: LevelDB is not supported; use lmdb (or --format npy / hdf5)")
        if db_type != "lmdb":
            raise CaffeError(f"db type {db_type!r}: unknown; expected lmdb")
    device = "cpu"
    if rest:
        mode = rest.pop(0).upper()
        if mode not in ("CPU", "GPU"):
            raise CaffeError(f"mode {mode!r}: expected CPU or GPU")
        if mode == "GPU":
            index = rest.pop(0) if rest else "0"
            if not index.isdigit():
                raise CaffeError(f"DEVICE_ID {index!r}: expected a non-negative integer")
            device = f"cuda:{index}"
    if rest:
        raise CaffeError(f"unexpected arguments: {' '.join(rest)} (usage: ... NUM_MINI_BATCHES [lmdb] [CPU|GPU] [DEVICE_ID])")
    return db_type, device


def legacy_chw(shape, blob):
    """Caffe's Blob::channels/height/width: axes 1..3, 1 where the blob has fewer axes."""
    if len(shape) > 4:
        raise CaffeError(f"blob '{blob}' has {len(shape)} axes {tuple(shape)}; a Datum holds at most N x C x H x W "
                         "(use --format npy or hdf5)")
    dims = list(shape[1:]) + [1] * (4 - len(shape))
    return dims[0], dims[1], dims[2]


class LmdbSink:
    """One blob's records as float Datums under Caffe's keys."""

    def __init__(self, path, blob):
        from vgg_caffe.data.db import Writer

        self.writer = Writer(path, commit_every=COMMIT_EVERY)
        self.blob, self.count = blob, 0

    def add(self, batch):
        from vgg_caffe.proto import pb

        c, h, w = legacy_chw(batch.shape, self.blob)
        for row in batch.reshape(batch.shape[0], -1):
            record = pb.Datum(channels=c, height=h, width=w)
            record.float_data.extend(row.tolist())
            self.writer.put(f"{self.count:010d}", record.SerializeToString())
            self.count += 1
            if self.count % COMMIT_EVERY == 0:
                print(f"Extracted features of {self.count} query images for feature blob {self.blob}", file=sys.stderr)

    def close(self):
        self.writer.close()


class ArraySink:
    """One blob's records gathered into an array, written as .npy or as an HDF5 dataset."""

    def __init__(self, path, blob, fmt):
        self.path, self.blob, self.fmt, self.parts, self.count = path, blob, fmt, [], 0

    def add(self, batch):
        self.parts.append(batch)
        self.count += batch.shape[0]

    def close(self):
        from vgg_caffe.fileio import atomic_open

        data = np.concatenate(self.parts).astype(np.float32)
        if self.fmt == "npy":
            with atomic_open(self.path, "wb") as f:
                np.save(f, data)
            return
        import h5py
        with atomic_open(self.path, "w+b") as f, h5py.File(f, "w") as h:
            h.create_dataset(self.blob, data=data)


def main(argv=None):
    args = build_parser().parse_args(argv)
    db_type, device = parse_rest(args.rest)
    fmt = args.format or db_type
    blobs = args.blobs.split(",")
    dbs = args.dbs.split(",")
    if len(blobs) != len(dbs):
        raise CaffeError(f"{len(blobs)} blob name(s) but {len(dbs)} database name(s): "
                         "the number of blob names and dataset names must be equal")
    if args.num_mini_batches < 1:
        raise CaffeError(f"NUM_MINI_BATCHES must be positive, got {args.num_mini_batches}")
    from vgg_caffe.fileio import check_writable

    for path in dbs:
        if os.path.exists(path):
            raise CaffeError(f"{path}: already exists (extract_features creates new outputs; delete it first)")
        check_writable(os.path.join(path, "data.mdb") if fmt == "lmdb" else path, "features")
    import torch

    from vgg_caffe.net import Net

    if device != "cpu" and not torch.cuda.is_available():
        raise CaffeError(f"GPU mode: no CUDA device is available (asked for {device})")
    print(f"Using {'CPU' if device == 'cpu' else 'GPU ' + device}", file=sys.stderr)
    net = Net(args.model, "TEST")
    unknown = [b for b in blobs if b not in net.blob_shapes]
    if unknown:
        raise CaffeError(f"{args.model}: unknown feature blob name {unknown[0]} in the network; "
                         f"blobs: {', '.join(net.blob_shapes)}")
    if not net.data_layers or any(not hasattr(layer, "batch") for layer in net.data_layers):
        raise CaffeError(f"{args.model}: the net's inputs must come from data layers (Data, ImageData, HDF5Data, "
                         "...) so that each forward pass reads the next batch; an Input layer has nothing to read")
    print(f"Copying weights: {net.copy_from(args.weights, strict=False)}", file=sys.stderr)
    net.to(device)
    sinks = [LmdbSink(path, blob) if fmt == "lmdb" else ArraySink(path, blob, fmt) for blob, path in zip(blobs, dbs)]
    print("Extracting Features", file=sys.stderr)
    with torch.no_grad():
        for _ in range(args.num_mini_batches):
            net()
            for blob, sink in zip(blobs, sinks):
                values = net.blobs[blob].detach().float().cpu().numpy()
                sink.add(values.reshape(1) if values.ndim == 0 else values)   # a loss: num 1, as Caffe
    for blob, sink in zip(blobs, sinks):
        sink.close()
        print(f"Extracted features of {sink.count} query images for feature blob {blob}", file=sys.stderr)
    print("Successfully extracted the features!", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
