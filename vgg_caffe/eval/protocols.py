"""The paper's test protocols (Sect. 3.2 and 4, Tables 3 to 6) and its error tables.

    python -m vgg_caffe.evaluate --model deploy.prototxt --weights W.caffemodel --data VAL_LMDB \
        --protocol dense --scales 256,384,512 --out results.json

Every protocol starts from an isotropic rescale of the image so that its smallest side is Q, with
Caffe's input convention (BGR, 0..255, minus the mean pixel):
  single      one centre crop of the model's input size (224 for the released nets);
  dense       the fully-convolutional net (vgg_caffe.eval.dense: fc6 -> kxk conv, fc7/fc8 -> 1x1) run on
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
The rescaling and cropping of the next chunk of images runs on a background thread while the
nets process the current one (evaluate()).
Top-k error counts an image wrong when k or more other classes score at least as high as the true
one (Caffe's Accuracy layer: ties count against the prediction).
"""
import concurrent.futures
import os
from collections import OrderedDict

import numpy as np
import torch

from ..errors import CaffeError
from ..progress import progress_bar
from .tables import error_rates, scale_label

VGG_MEAN = (103.939, 116.779, 123.68)  # B, G, R
PROTOCOLS = ("single", "dense", "multi-crop", "multi-crop+dense")


# ----------------------------------------------------------------------------------------------
# Pre-processing
# ----------------------------------------------------------------------------------------------

def rescale(img, q):
    """The paper's isotropic rescale (smallest side q, bilinear), the one the training data
    layer uses, so train and test see images resized the same way."""
    from ..data.image import rescale_min_side

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
        from ..net import Net

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
        # Only the score blob is read after a pass: the other activations are freed as soon as the
        # pass is done with them (measured 1.2x faster in bf16, bench/bench_precision.py).
        self.net.keep_blobs = [self.score]
        self._dense = None

    @property
    def dense(self):
        if self._dense is None:
            from .dense import dense_net

            self._dense = dense_net(self.net).eval()
            self._dense.keep_blobs = [self.score]
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

    def inputs(self, images, q):
        """The chunk's net inputs at scale Q: rescaled, minus the mean, CHW float32."""
        self.check_scale(q)
        return [to_input(rescale(img, q), self.mean) for img in images]

    def posteriors(self, images, protocols, scales, grid=5, flip=True, prepared=None):
        """{protocol: (len(images), classes) posteriors averaged over scales} for a chunk of images.
        prepared: {(Q, mean): inputs} made ahead (evaluate's background thread), else made here."""
        out = {}
        need_dense = any(p in ("dense", "multi-crop+dense") for p in protocols)
        need_crops = any(p in ("multi-crop", "multi-crop+dense") for p in protocols)
        for q in scales:
            key = (q, tuple(self.mean))
            inputs = prepared[key] if prepared and key in prepared else self.inputs(images, q)
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
# The run
# ----------------------------------------------------------------------------------------------

def evaluate(models, images, count, protocols, scales, grid=5, flip=True, chunk=16, progress=True):
    """Run every model over the images. models: [(Model, train_scale)]; scales: [list of Q] per
    model. Returns (rows, labels, {(model index or 'fusion', protocol): posteriors})."""
    for p in protocols:
        if p not in PROTOCOLS:
            raise CaffeError(f"unknown protocol {p!r}; expected one of {', '.join(PROTOCOLS)}")
    classes = set()
    results = {}
    labels = []
    bar = progress_bar(count, progress, desc="evaluate", unit="img")

    def run(pending, prepared):
        for i, (model, _) in enumerate(models):
            post = model.posteriors([img for img, _ in pending], protocols, scales[i], grid, flip, prepared)
            for p, v in post.items():
                classes.add(v.shape[1])
                results.setdefault((i, p), []).append(v)
        labels.extend(label for _, label in pending)
        bar.update(len(pending))

    # A background thread reads, decodes and rescales chunk k+1 (OpenCV and the reader release
    # the GIL) while the nets run on chunk k; the image iterator is only ever touched there.
    chunks = _chunks(images, chunk)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="evaluate-prepare") as pool:
        ahead = pool.submit(_prepare_next, chunks, models, scales)
        while True:
            ready = ahead.result()
            if ready is None:
                break
            ahead = pool.submit(_prepare_next, chunks, models, scales)
            run(*ready)
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


def _chunks(images, size):
    """Lists of (image, label), `size` at a time, from (key, image, label) records."""
    pending = []
    for _, img, label in images:
        pending.append((img, label))
        if len(pending) >= size:
            yield pending
            pending = []
    if pending:
        yield pending


def _prepare_next(chunks, models, scales):
    """The next chunk and its inputs for every (Q, mean) the models need; None at the end."""
    pending = next(chunks, None)
    if pending is None:
        return None
    images = [img for img, _ in pending]
    prepared = {}
    for i, (model, _) in enumerate(models):
        for q in scales[i]:
            key = (q, tuple(model.mean))
            if key not in prepared:
                prepared[key] = model.inputs(images, q)
    return pending, prepared


def _row(name, protocol, train_scale, scales, posteriors, labels):
    top1, top5 = error_rates(posteriors, labels)
    return OrderedDict(config=name, method=protocol, train_scale=scale_label(train_scale),
                       test_scale=",".join(str(q) for q in scales), top1_error=round(top1, 4),
                       top5_error=round(top5, 4), images=len(labels))

