#!/usr/bin/env python3
"""make_imagenet_lists ROOT OUTDIR: train.txt, val.txt and labels.txt for convert_imageset.

ILSVRC-2012 layout (ROOT/train/<wnid>/*.JPEG, ROOT/val/*.JPEG): labels are sorted-wnid indices;
val labels from --val_ground_truth (devkit ILSVRC2012_validation_ground_truth.txt) with --meta
(devkit meta.mat, needs scipy) or --synsets (text: line k = wnid of ILSVRC2012_ID k), or from
--val_csv ("filename,wnid ..." lines, e.g. LOC_val_solution.csv); a val/ sorted into wnid folders
needs nothing. Lists are relative to ROOT/train and ROOT/val.
Any other class-per-folder tree: train.txt / val.txt relative to ROOT, split per class by
--val_fraction with --seed. See vgg_caffe/data/lists.py.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vgg_caffe.errors import CaffeError, run_cli  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(prog="make_imagenet_lists", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root")
    p.add_argument("outdir")
    p.add_argument("--val_ground_truth", help="ILSVRC2012_validation_ground_truth.txt")
    p.add_argument("--meta", help="devkit meta.mat (ILSVRC2012_ID -> WNID; needs scipy)")
    p.add_argument("--synsets", help="text file: line k = wnid of ILSVRC2012_ID k (or 'ID wnid')")
    p.add_argument("--val_csv", help="'filename,wnid ...' lines for the val images")
    p.add_argument("--val_fraction", type=float, default=0.0, help="generic trees: share of each class for val")
    p.add_argument("--seed", type=int, default=0, help="seed of the --val_fraction split")
    a = p.parse_args(argv)
    from vgg_caffe.data import lists
    os.makedirs(a.outdir, exist_ok=True)
    train_dir, val_dir = os.path.join(a.root, "train"), os.path.join(a.root, "val")
    words = {}
    if os.path.isdir(train_dir):
        train, classes = lists.scan_tree(train_dir)
        index = {c: i for i, c in enumerate(classes)}
        val = None
        if a.val_ground_truth:
            if not (a.meta or a.synsets):
                raise CaffeError("--val_ground_truth needs --meta (meta.mat) or --synsets (a wnid per ILSVRC2012_ID)")
            mapping = lists.read_id_to_wnid(a.meta, a.synsets)
            words = {w: text for w, text in mapping.values()}
            val = lists.val_from_ground_truth(val_dir, a.val_ground_truth, mapping, index)
        elif a.val_csv:
            val = lists.val_from_csv(val_dir, a.val_csv, index)
        elif os.path.isdir(val_dir) and lists.class_folders(val_dir):
            val, _ = lists.scan_tree(val_dir, classes)
        elif os.path.isdir(val_dir):
            print("note: val/ found but no --val_ground_truth/--val_csv: no val.txt written", file=sys.stderr)
        layout = "ILSVRC-2012 (lists relative to train/ and val/)"
    else:
        items, classes = lists.scan_tree(a.root)
        train, val = lists.split(items, a.val_fraction, a.seed) if a.val_fraction else (items, None)
        layout = "class-per-folder (lists relative to ROOT)"
    lists.write_list(os.path.join(a.outdir, "train.txt"), train)
    if val is not None:
        lists.write_list(os.path.join(a.outdir, "val.txt"), val)
    from vgg_caffe.fileio import atomic_write
    atomic_write(os.path.join(a.outdir, "labels.txt"),
                 "".join(f"{c} {words[c]}\n" if words.get(c) else f"{c}\n" for c in classes))
    print(f"{layout}: {len(classes)} classes, {len(train)} train"
          + (f", {len(val)} val" if val is not None else "") + f" -> {a.outdir}")


if __name__ == "__main__":
    run_cli(main)
