"""The paper's test protocols (Sect. 3.2 and 4, Tables 3 to 6) and its error tables.

    python -m vgg_caffe.evaluate --model deploy.prototxt --weights W.caffemodel --data VAL_LMDB \
        --protocol dense --scales 256,384,512 --out results.json

Every protocol starts from an isotropic rescale of the image so that its smallest side is Q, with
Caffe's input convention (BGR, 0..255, minus the mean pixel):
  single      one centre crop of the model's input size (224 for the released nets);
  dense       the fully-convolutional net (vgg_caffe.dense: fc6 -> kxk conv, fc7/fc8 -> 1x1) run on
              the whole rescaled image; the class score map is spatially averaged (sum-pooled and
              normalised), then soft-maxed; the posteriors of the image and its horizontal flip are
              averaged. This is the paper's order: "the class score map is spatially averaged
              (sum-pooled) ... the soft-max class posteriors of the original and flipped images
              are averaged";
  multi-crop  a regular 5x5 grid of crops and their flips (50 per scale, 150 over 3 scales), the
              soft-max posteriors of all crops averaged;
  multi-crop+dense  the average of the multi-crop and dense posteriors.
Several scales average the posteriors over Q; several models (--model/--weights repeated) are
fused by averaging their posteriors. The "scores" are the input of the net's final Softmax layer
(its "prob"), or the net's output when it has no Softmax; we apply the soft-max ourselves.
Top-k error counts an image wrong when k or more other classes score at least as high as the true
one (Caffe's Accuracy layer: ties count against the prediction).
"""
import argparse
import csv
import io
import json
import math
import os
import sys
import time
from collections import OrderedDict

import numpy as np
import torch

from .errors import CaffeError, run_cli
from .fileio import atomic_write

VGG_MEAN = (103.939, 116.779, 123.68)  # B, G, R
PROTOCOLS = ("single", "dense", "multi-crop", "multi-crop+dense")


# ----------------------------------------------------------------------------------------------
# Images in
# ----------------------------------------------------------------------------------------------

def lmdb_images(path, limit=None):
    """(count, iterator of (key, HxWx3 BGR image, label)) over an LMDB of Caffe Datums (raw,
    float or encoded), read with the data package's reader in key order."""
    from .data import datum as datum_io
    from .data.db import Reader

    reader = Reader(path)
    count = min(len(reader), limit) if limit else len(reader)

    def records():
        for i, (key, value) in enumerate(reader.items()):
            if i >= count:
                break
            name = key.decode(errors="replace")
            where = f"{path}: record {name!r}"
            d = datum_io.parse(value, where)
            yield name, three_channels(datum_io.to_image(d, "color", where), where), int(d.label)

    return count, records()


def three_channels(img, where):
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)  # a grey record: the net still takes B, G, R
    if img.shape[2] != 3:
        raise CaffeError(f"{where}: {img.shape[2]} channels; expected 1 or 3")
    return img


def list_images(root, list_file, limit=None):
    """(count, iterator) over a convert_imageset-style list: "relative/path label" per line,
    split at the last space. Images are decoded by content, as the converter does."""
    from .data import image

    try:
        with open(list_file, encoding="utf-8") as f:
            lines = [(n, line.rstrip("\n")) for n, line in enumerate(f, 1) if line.strip()]
    except OSError as e:
        raise CaffeError(f"{list_file}: cannot read ({e.strerror or e})") from None
    entries = []
    for n, line in lines:
        path, _, label = line.rstrip().rpartition(" ")
        if not path or not label.lstrip("-").isdigit():
            raise CaffeError(f"{list_file}:{n}: expected 'path label', found {line!r}")
        entries.append((n, path, int(label)))
    if limit:
        entries = entries[:limit]

    def records():
        for n, path, label in entries:
            full = os.path.join(root, path)
            try:
                with open(full, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise CaffeError(f"{list_file}:{n}: cannot read image {full} ({e.strerror or e})") from None
            try:
                img = image.decode(data, image.COLOR)
            except image.DecodeError as e:
                raise CaffeError(f"{list_file}:{n}: {full}: {e}") from None
            yield path, img, label

    return len(entries), records()


def open_data(data, limit=None):
    """--data DB, or --data ROOT LIST."""
    if len(data) == 1:
        return lmdb_images(data[0], limit)
    if len(data) == 2:
        return list_images(data[0], data[1], limit)
    raise CaffeError(f"--data takes an LMDB path or ROOT LIST_FILE, got {len(data)} values")


# ----------------------------------------------------------------------------------------------
# Pre-processing
# ----------------------------------------------------------------------------------------------

def rescale(img, q):
    """The paper's isotropic rescale (smallest side q, bilinear), the one the training data
    layer uses, so train and test see images resized the same way."""
    from .data.image import rescale_min_side

    return rescale_min_side(img, q)


def to_input(img, mean):
    """HxWx3 BGR 0..255 -> 3xHxW float32 minus the mean pixel."""
    return (img.astype(np.float32) - np.asarray(mean, np.float32)).transpose(2, 0, 1)


def grid_offsets(size, crop, n):
    """n crop offsets along one side, evenly spread from edge to edge; one means the centre
    (Caffe's centre crop: (size - crop) / 2, rounded down)."""
    if n == 1:
        return [(size - crop) // 2]
    return [int(round(i * (size - crop) / (n - 1))) for i in range(n)]


def crops(x, crop, grid, flip):
    """The grid x grid crops of a 3xHxW input (and their mirror images)."""
    ch, cw = crop
    out = []
    for y in grid_offsets(x.shape[1], ch, grid):
        for xo in grid_offsets(x.shape[2], cw, grid):
            c = x[:, y:y + ch, xo:xo + cw]
            out.append(c)
            if flip:
                out.append(c[:, :, ::-1])
    return out


# ----------------------------------------------------------------------------------------------
# A model and its protocols
# ----------------------------------------------------------------------------------------------

def load_weights(net, weights, strict=True):
    """Copy `weights` into `net`; strict: every learnable layer of the net must be in the file."""
    for path in [weights] if isinstance(weights, (str, os.PathLike)) else weights:
        net.copy_from(path, strict=strict)


def score_blob(net):
    """The blob holding class scores: the bottom of a final Softmax, else the single output."""
    outputs = net.output_names
    for name, layer in zip(reversed(net.layer_names), reversed(list(net.layers.values()))):
        if layer.param.type == "Softmax" and layer.param.top[0] in outputs:
            return layer.param.bottom[0]
    if len(outputs) != 1:
        raise CaffeError(f"{net.source}: the net has outputs {outputs}; name the class scores with --score-blob")
    return outputs[0]


class Model:
    """One trained net under the test protocols: the FC net for crops, its dense twin for whole
    images (sharing the weights), posteriors as float64 numpy vectors."""

    def __init__(self, model, weights, device="cpu", mean=VGG_MEAN, batch_size=50, score=None, name=None,
                 strict=True):
        from .net import Net

        self.net = Net(model, phase="TEST", fill=not weights)  # fillers only when no weights come
        if weights:
            load_weights(self.net, weights, strict)
        self.net.to(device).eval()
        self.device = device
        self.mean = mean
        self.batch_size = batch_size
        if len(self.net.input_names) != 1:
            raise CaffeError(f"{self.net.source}: a deploy net with one input was expected; "
                             f"found inputs {self.net.input_names}")
        self.input = self.net.input_names[0]
        shape = self.net.blob_shapes[self.input]
        if len(shape) != 4 or shape[1] != 3:
            raise CaffeError(f"{self.net.source}: input '{self.input}' has shape {shape}; expected (N, 3, H, W)")
        self.crop = (int(shape[2]), int(shape[3]))
        self.score = score or score_blob(self.net)
        if self.score not in self.net.blob_shapes:
            raise CaffeError(f"{self.net.source}: no blob named '{self.score}'")
        self.name = name or self.net.net_param.name or os.path.splitext(os.path.basename(str(model)))[0]
        self._dense = None

    @property
    def dense(self):
        if self._dense is None:
            from .dense import dense_net

            self._dense = dense_net(self.net).eval()
        return self._dense

    @torch.no_grad()
    def _scores(self, net, batch):
        x = torch.from_numpy(np.ascontiguousarray(np.stack(batch))).to(self.device)
        net(**{self.input: x})
        s = net.blobs[self.score].float()
        if s.dim() > 2:
            s = s.flatten(2).mean(2)  # the spatial average of a score map (1x1 for the FC net)
        return torch.softmax(s.double(), dim=1).cpu().numpy()

    def crop_posteriors(self, inputs, grid, flip):
        """Mean posterior of the grid crops (and flips) of each input, batched across inputs."""
        per_input = [crops(x, self.crop, grid, flip) for x in inputs]
        flat = [c for cs in per_input for c in cs]
        probs = np.concatenate([self._scores(self.net, flat[i:i + self.batch_size])
                                for i in range(0, len(flat), self.batch_size)])
        n = len(per_input[0])
        return probs.reshape(len(inputs), n, -1).mean(1)

    def dense_posterior(self, x, flip):
        batch = [x, x[:, :, ::-1]] if flip else [x]
        return self._scores(self.dense, batch).mean(0)

    def check_scale(self, q):
        if q < max(self.crop):
            raise CaffeError(f"test scale Q={q} is smaller than the model's input {self.crop[0]}x{self.crop[1]}")

    def posteriors(self, images, protocols, scales, grid=5, flip=True):
        """{protocol: (len(images), classes) posteriors averaged over scales} for a chunk of images."""
        out = {}
        need_dense = any(p in ("dense", "multi-crop+dense") for p in protocols)
        need_crops = any(p in ("multi-crop", "multi-crop+dense") for p in protocols)
        for q in scales:
            self.check_scale(q)
            inputs = [to_input(rescale(img, q), self.mean) for img in images]
            found = {}
            if "single" in protocols:
                found["single"] = self.crop_posteriors(inputs, 1, False)
            if need_crops:
                found["multi-crop"] = self.crop_posteriors(inputs, grid, flip)
            if need_dense:
                found["dense"] = np.stack([self.dense_posterior(x, flip) for x in inputs])
            for p, v in found.items():
                out[p] = out.get(p, 0) + v / len(scales)
        if "multi-crop+dense" in protocols:
            out["multi-crop+dense"] = (out["multi-crop"] + out["dense"]) / 2
        return {p: out[p] for p in protocols}


# ----------------------------------------------------------------------------------------------
# Errors and tables
# ----------------------------------------------------------------------------------------------

def topk_correct(posteriors, labels, k):
    """Per image: fewer than k other classes score >= the true class (Caffe's Accuracy rule)."""
    posteriors = np.asarray(posteriors)
    labels = np.asarray(labels, dtype=np.int64)
    true = posteriors[np.arange(len(labels)), labels][:, None]
    rivals = (posteriors >= true).sum(1) - 1
    return rivals < k


def error_rates(posteriors, labels):
    """(top-1 error %, top-5 error %)."""
    return tuple(100.0 * (1.0 - topk_correct(posteriors, labels, k).mean()) for k in (1, 5))


def scale_label(s):
    if s is None:
        return "-"
    if isinstance(s, (tuple, list)):
        return f"[{s[0]};{s[1]}]" if len(s) == 2 and s[0] != s[1] else str(s[0])
    return str(s)


COLUMNS = ("ConvNet config.", "evaluation method", "train (S)", "test (Q)",
           "top-1 val. error (%)", "top-5 val. error (%)")


def format_table(rows):
    cells = [COLUMNS] + [(r["config"], r["method"], r["train_scale"], r["test_scale"],
                          f"{r['top1_error']:.1f}", f"{r['top5_error']:.1f}") for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    line = "-+-".join("-" * w for w in widths)   # "+" under each " | " of the rows
    text = [" | ".join(c.ljust(w) for c, w in zip(cells[0], widths)), line]
    text += [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells[1:]]
    return "\n".join(text)


def write_results(path, rows, meta):
    """JSON and CSV (the same rows); `path` names either, the other goes beside it."""
    stem, ext = os.path.splitext(path)
    if ext.lower() not in (".json", ".csv"):
        stem = path
    atomic_write(stem + ".json", json.dumps(dict(meta, rows=rows), indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["config"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(stem + ".csv", buf.getvalue())
    return stem + ".json", stem + ".csv"


# ----------------------------------------------------------------------------------------------
# Scales
# ----------------------------------------------------------------------------------------------

def parse_scale(text):
    """'256' -> 256 (fixed S); '256,512' -> (256, 512) (jittered S)."""
    try:
        values = [int(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise CaffeError(f"bad scale {text!r}: expected S or S_min,S_max") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2 and values[0] <= values[1]:
        return tuple(values) if values[0] != values[1] else values[0]
    raise CaffeError(f"bad scale {text!r}: expected S or S_min,S_max with S_min <= S_max")


def test_scales(train_scale, multi_scale, crop=224):
    """The paper's Q for a training scale: Q = S or (S_min+S_max)/2 at a single scale;
    {S-32, S, S+32} or {S_min, (S_min+S_max)/2, S_max} at multiple scales (Sect. 4.1, 4.2).
    The 32 is for 224 crops; smaller nets (a 32 crop) scale it with the crop."""
    if isinstance(train_scale, tuple):
        lo, hi = train_scale
        mid = (lo + hi) // 2
        return [lo, mid, hi] if multi_scale else [mid]
    s, d = train_scale, int(round(32 * crop / 224))
    return [s - d, s, s + d] if multi_scale else [s]


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------

class Progress:
    """A one-line progress bar on stderr, redrawn at most a few times a second."""

    def __init__(self, total, enabled=True, stream=sys.stderr):
        self.total, self.enabled, self.stream = total, enabled, stream
        self.start = self.last = time.time()
        self.done = 0

    def update(self, n):
        self.done += n
        now = time.time()
        if self.enabled and (now - self.last > 0.25 or self.done >= self.total):
            self.last = now
            frac = self.done / self.total if self.total else 1.0
            bar = "#" * int(30 * frac)
            rate = self.done / max(now - self.start, 1e-9)
            self.stream.write(f"\r[{bar:<30}] {self.done}/{self.total} images {rate:.1f} img/s")
            self.stream.flush()

    def close(self):
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def evaluate(models, images, count, protocols, scales, grid=5, flip=True, chunk=16, progress=True):
    """Run every model over the images. models: [(Model, train_scale)]; scales: [list of Q] per
    model. Returns (rows, labels, {(model index or 'fusion', protocol): posteriors})."""
    for p in protocols:
        if p not in PROTOCOLS:
            raise CaffeError(f"unknown protocol {p!r}; expected one of {', '.join(PROTOCOLS)}")
    classes = set()
    results = {}
    labels = []
    bar = Progress(count, progress)
    pending = []

    def flush():
        for i, (model, _) in enumerate(models):
            post = model.posteriors([img for img, _ in pending], protocols, scales[i], grid, flip)
            for p, v in post.items():
                classes.add(v.shape[1])
                results.setdefault((i, p), []).append(v)
        labels.extend(label for _, label in pending)
        bar.update(len(pending))
        pending.clear()

    for _, img, label in images:
        pending.append((img, label))
        if len(pending) >= chunk:
            flush()
    if pending:
        flush()
    bar.close()
    if not labels:
        raise CaffeError("the data source holds no images")
    if len(classes) > 1:
        raise CaffeError(f"the models disagree on the number of classes: {sorted(classes)}")
    n_classes = classes.pop()
    bad = [l for l in labels if not 0 <= l < n_classes]
    if bad:
        raise CaffeError(f"label {bad[0]} is outside the models' {n_classes} classes")
    posts = {key: np.concatenate(v) for key, v in results.items()}
    rows = []
    for p in protocols:
        for i, (model, train_scale) in enumerate(models):
            rows.append(_row(model.name, p, train_scale, scales[i], posts[(i, p)], labels))
        if len(models) > 1:
            fused = np.mean([posts[(i, p)] for i in range(len(models))], axis=0)
            posts[("fusion", p)] = fused
            all_q = sorted({q for s in scales for q in s})
            names = "+".join(m.name for m, _ in models)
            rows.append(_row(f"fusion({names})", p, None, all_q, fused, labels))
    return rows, np.asarray(labels), posts


def _row(name, protocol, train_scale, scales, posteriors, labels):
    top1, top5 = error_rates(posteriors, labels)
    return OrderedDict(config=name, method=protocol, train_scale=scale_label(train_scale),
                       test_scale=",".join(str(q) for q in scales), top1_error=round(top1, 4),
                       top5_error=round(top5, 4), images=len(labels))


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
    p.add_argument("--scales", help="test scales Q, comma-separated (e.g. 256,384,512); overrides --train-scale")
    p.add_argument("--train-scale", action="append",
                   help="the model's training scale S ('256') or range ('256,512'): gives the table's "
                        "train (S) column and, without --scales, Q = S or (S_min+S_max)/2. One per model or one for all")
    p.add_argument("--multi-scale", action="store_true",
                   help="without --scales: Q in {S-32, S, S+32}, or {S_min, (S_min+S_max)/2, S_max} when jittered")
    p.add_argument("--grid", type=int, default=5, help="multi-crop grid size per side (default 5: 25 crops)")
    p.add_argument("--no-flip", action="store_true", help="do not add horizontally flipped images (dense, multi-crop)")
    p.add_argument("--mean-value", type=float, nargs=3, default=list(VGG_MEAN), metavar=("B", "G", "R"),
                   help="mean pixel subtracted from BGR 0..255 input (default the VGG mean 103.939 116.779 123.68)")
    p.add_argument("--mean-file", help="a mean .binaryproto; its per-channel average is used as the mean pixel")
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
    return p


def mean_from_file(path):
    from .proto import pb, read_message

    blob = read_message(path, pb.BlobProto)
    shape = list(blob.shape.dim) or [blob.num, blob.channels, blob.height, blob.width]
    data = np.asarray(blob.data, np.float32)
    channels = shape[-3] if len(shape) >= 3 else 0
    if channels != 3 or data.size != math.prod(shape):
        raise CaffeError(f"{path}: expected a 3-channel mean blob, found shape {shape} with {data.size} values")
    return tuple(float(v) for v in data.reshape(3, -1).mean(1))


def main(argv=None):
    args = build_parser().parse_args(argv)
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
    count, images = open_data(args.data, args.limit)
    rows, _, _ = evaluate(models, images, count, protocols, scales, args.grid, not args.no_flip,
                          progress=not args.quiet)
    print(format_table(rows))
    if args.out:
        meta = dict(models=[dict(model=a, weights=w) for a, w in zip(args.model, args.weights)],
                    data=args.data, protocols=protocols, grid=args.grid, flip=not args.no_flip,
                    mean_value=list(mean))
        for path in write_results(args.out, rows, meta):
            print(f"wrote {path}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    run_cli(main)
