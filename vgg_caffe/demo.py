"""The whole job on embedded data, in a few minutes on a laptop CPU (what `make demo` runs).

    python -m vgg_caffe.demo [--out demo_out] [--quick] [--config A] [--width-div 16] [--crop 64]
                             [--precision fp32|tf32|bf16] [--compile]

1. Data: real photos that scikit-image ships (astronaut, chelsea, coffee, ...) are the classes.
   Each record is a random box of its photo (random position, size and aspect ratio), rescaled so
   its smallest side is 2 x crop; training and validation boxes are drawn with different seeds.
   They go through the project's convert_imageset (--shuffle) into two LMDBs of raw Datums.
2. Net: vgg_caffe.netgen writes configuration A (or any other) with every width divided
   (--width-div 16) and a 64x64 crop, so the last feature map is 2x2 and the dense fc6 a 2x2
   convolution; S is jittered in [64, 128] (the paper's multi-scale training [256, 512], scaled
   to the crop: S_min = crop), Glorot initialisation.
3. Training: the solver (python -m vgg_caffe.solve) with Caffe's SGD, the VGG data layer's
   isotropic rescale, random crop, flip and colour shift; the log in Caffe's format.
4. Evaluation: vgg_caffe.evaluate on the validation LMDB: single centre crop and dense at
   Q = 96, then dense, multi-crop and both at Q in {64, 96, 128} (the paper's {S_min,
   (S_min+S_max)/2, S_max}; multiples of 32, so no pooling window is clipped, as with the paper's
   256, 384, 512); the error table is printed and saved.
5. Plot: tools/plot_training_log.py draws loss, accuracy and learning rate.

Everything lands in --out: images/, train_lmdb/, val_lmdb/, nets/, snapshots/, train.log,
training.png, results.json/.csv. The figures are not the paper's (8 photos, not ImageNet).
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np

from .errors import CaffeError, run_cli

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
          "camera", "coins")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def photo(name):
    """A scikit-image sample photo as BGR uint8 (grey ones repeated to three channels)."""
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[:, :, 2::-1])


def random_views(img, count, rng, stored_side):
    """`count` random boxes of `img` (40-90% of its smallest side, aspect 3:4 to 4:3, anywhere),
    each rescaled so its smallest side is `stored_side`."""
    h, w = img.shape[:2]
    out = []
    for _ in range(count):
        side = rng.uniform(0.4, 0.9) * min(h, w)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        bh, bw = int(min(h, side / np.sqrt(aspect))), int(min(w, side * np.sqrt(aspect)))
        y, x = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
        box = img[y:y + bh, x:x + bw]
        s = stored_side / min(bh, bw)
        out.append(cv2.resize(box, (max(stored_side, round(bw * s)), max(stored_side, round(bh * s))),
                              interpolation=cv2.INTER_AREA))
    return out


def make_dataset(out, per_class, seed, split, stored_side):
    """Write the views as PNGs plus a convert_imageset list file; returns the list's path."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(out, "images", split)
    lines = []
    for label, name in enumerate(PHOTOS):
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        for i, view in enumerate(random_views(photo(name), per_class, rng, stored_side)):
            rel = f"{name}/{split}_{i:04d}.png"
            cv2.imwrite(os.path.join(folder, rel), view)
            lines.append(f"{rel} {label}")
    listfile = os.path.join(out, f"{split}.txt")
    with open(listfile, "w") as f:
        f.write("\n".join(lines) + "\n")
    return folder, listfile


def build_lmdb(folder, listfile, db):
    from .data.convert import Options, convert_imageset

    if os.path.exists(db):
        shutil.rmtree(db)
    convert_imageset(folder + os.sep, listfile, db, Options(shuffle=True, seed=1), progress=False,
                     log=lambda *a, **k: None)
    return db


def final_weights(prefix):
    found = glob.glob(glob.escape(prefix) + "_iter_*.caffemodel")
    if not found:
        raise CaffeError(f"training wrote no {prefix}_iter_N.caffemodel")
    return max(found, key=lambda p: int(re.search(r"_iter_(\d+)\.caffemodel$", p).group(1)))


_START = time.time()


def step(message):
    print(f"== [{time.time() - _START:5.1f} s] {message}", file=sys.stderr, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m vgg_caffe.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="demo_out", help="output directory (default demo_out)")
    ap.add_argument("--quick", action="store_true", help="a reduced run (for tests): fewer records and iterations")
    ap.add_argument("--config", default="A", help="VGG configuration of Table 1 (default A)")
    ap.add_argument("--width-div", type=int, default=16, help="divide every layer width by this (default 16)")
    ap.add_argument("--crop", type=int, default=64, help="crop size (default 64); S is jittered in [crop, 2 crop]")
    ap.add_argument("--iters", type=int, help="training iterations (default 400; 20 with --quick)")
    ap.add_argument("--seed", type=int, default=1,
                    help="the solver's random_seed: the Glorot initialisation (default 1)")
    ap.add_argument("--test-interval", type=int,
                    help="iterations between validation tests, which drive the plateau policy (default iters / 4)")
    ap.add_argument("--plateau-patience", type=int, default=2,
                    help="tests without a better validation accuracy before the rate drops x0.1 (default 2)")
    ap.add_argument("--clip-gradients", type=float, default=-1,
                    help="Caffe's clip_gradients: scale the gradients down to this L2 norm (default -1: off)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: the nets are tiny, and on a busy machine more threads "
                         "spin and cost several times the CPU time)")
    from . import precision as speed

    speed.add_arguments(ap)
    args = ap.parse_args(argv)
    from .machine import torch_device

    torch_device(args.device)   # --device cuda without CUDA fails now, not after the data is built
    import torch

    from .vgg import netgen
    from . import solve
    from . import eval as ev

    global _START
    _START = time.time()
    torch.set_num_threads(args.threads)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    train_n, val_n = (8, 3) if args.quick else (80, 20)
    iters = args.iters or (20 if args.quick else 400)

    step(f"data: {len(PHOTOS)} scikit-image photos as classes, {train_n}/{val_n} random views each (train/val)")
    crop = args.crop
    train_scale = (crop, 2 * crop)   # S jittered in [S_min, S_max], as the paper's multi-scale training
    stored = 2 * crop                # records keep room for the largest Q
    train_db = build_lmdb(*make_dataset(out, train_n, 1, "train", stored), os.path.join(out, "train_lmdb"))
    val_db = build_lmdb(*make_dataset(out, val_n, 2, "val", stored), os.path.join(out, "val_lmdb"))

    step(f"net: configuration {args.config}, widths / {args.width_div}, crop {crop}, S in {list(train_scale)}")
    test_batch = 20 if not args.quick else 12
    val_count = val_n * len(PHOTOS)
    for path in glob.glob(os.path.join(out, "snapshots", "*")):
        os.remove(path)   # a previous run's snapshots must not be mistaken for this one's
    paths = netgen.write_all(
        os.path.join(out, "nets"), args.config, width_div=args.width_div, crop=crop, num_classes=len(PHOTOS),
        train_source=train_db, test_source=val_db, batch_size=32, test_batch_size=test_batch,
        scale=train_scale, filler="xavier", snapshot_dir=os.path.join(out, "snapshots"), solver_mode="CPU",
        max_iter=iters, test_iter=val_count // test_batch, test_interval=args.test_interval or max(10, iters // 4),
        display=10, snapshot=0, base_lr=0.005, plateau_patience=args.plateau_patience, random_seed=args.seed,
        extra_solver={"test_initialization": False,
                      **({"clip_gradients": args.clip_gradients} if args.clip_gradients > 0 else {})})

    step(f"training: {iters} iterations of Caffe's SGD (log: train.log)")
    log = os.path.join(out, "train.log")
    if os.path.exists(log):
        os.remove(log)
    solve.main([paths["solver_S256"], "--log", log, "--device", args.device, "--no-progress",
                "--precision", args.precision] + (["--compile"] if args.torch_compile else []))
    weights = final_weights(os.path.join(out, "snapshots", f"{args.config}_S256"))

    step("evaluation on the validation LMDB (the paper's protocols, Sect. 3.2)")
    model = ev.Model(paths["deploy"], weights, args.device, batch_size=100, name=args.config)
    multi = ev.test_scales(train_scale, True, crop)
    rows = []
    with speed.from_arguments(args, args.device):   # the nets evaluate in --precision too
        for protocols, scales in ((["single", "dense"], [ev.test_scales(train_scale, False, crop)[0]]),
                                  (["dense", "multi-crop", "multi-crop+dense"], multi)):
            count, images = ev.open_data([val_db])
            found, _, _ = ev.evaluate([(model, train_scale)], images, count, protocols, [scales], progress=False)
            rows += found
    print(ev.format_table(rows))
    ev.write_results(os.path.join(out, "results.json"), rows,
                     dict(models=[dict(model=paths["deploy"], weights=weights)], data=[val_db],
                          note=f"{len(PHOTOS)} scikit-image photos as classes; not ImageNet"))

    step("plot: training.png")
    png = os.path.join(out, "training.png")
    plot = os.path.join(ROOT, "tools", "plot_training_log.py")
    if os.path.exists(plot):
        subprocess.run([sys.executable, plot, log, png], check=True)
    else:
        print(f"(no {plot}: plot skipped)", file=sys.stderr)
    step(f"done; everything is in {out}")
    return rows


if __name__ == "__main__":
    run_cli(main)
