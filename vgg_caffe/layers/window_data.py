"""WindowData: R-CNN's region sampler, warping object and background windows (Caffe's WindowDataLayer).

window_data_layer.cpp. The windows file (window_data_param.source) repeats, per image:
    # image_index
    image_path            (root_folder is prepended as a plain string)
    channels
    height
    width
    num_windows
    class_index overlap x1 y1 x2 y2      (num_windows lines; inclusive 0-based pixel boxes)
A window with overlap >= fg_threshold is foreground (its class must be > 0); one with overlap <
bg_threshold is background (label forced to 0); the others are dropped. Each batch holds
batch_size - int(batch_size * fg_fraction) background windows, then the foreground ones, each drawn
uniformly from its set and mirrored when transform_param.mirror and a coin say so (in TEST too).

Warping (crop_size from transform_param): crop_mode "warp" stretches the box to crop x crop;
"square" first grows the shorter side to the longer. With context_pad > 0 (or "square") the box is
enlarged about its centre by crop / (crop - 2 * context_pad), clipped to the image, and the part
inside the image is resized so that the clipped-off part becomes zero padding. The resize is
OpenCV's INTER_LINEAR on the colour (BGR) image; pixels become (pixel - mean) * scale, with mean a
mean_file blob read at offset (mean_width - crop) / 2 plus the padding, or mean_value per channel,
and scale window_data_param.scale (Caffe's WindowData ignores transform_param.scale). Padding stays
0. All of Caffe's single-precision arithmetic and round-half-away-from-zero is reproduced.

Beyond Caffe: a malformed windows file, a missing image or a window outside its image is a
CaffeError naming the windows file and line (Caffe reads garbage or logs and returns an empty
batch); random draws come from vgg_caffe.rng keyed by (seed, iteration, sample).
"""
import math
import os
import warnings

import numpy as np
import torch

from .. import rng
from ..data import image
from ..data.mean import read_mean_file
from .base import Layer, register

F32 = np.float32


class WindowFileError(ValueError):
    pass


def read_windows_file(path, root_folder="", fg_threshold=0.5, bg_threshold=0.5):
    """(images, fg, bg): images as (path, line) and windows as dicts (image, label, overlap, x1, y1,
    x2, y2, line), classified as Caffe does."""
    try:
        with open(path, encoding="utf-8") as f:
            tokens = [(t, n) for n, line in enumerate(f, 1) for t in line.split()]
    except (OSError, UnicodeDecodeError) as e:
        raise WindowFileError(f"windows file {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    if not tokens:
        raise WindowFileError(f"windows file {path} is empty")
    pos = 0

    def take(what, kind=str):
        nonlocal pos
        if pos >= len(tokens):
            raise WindowFileError(f"windows file {path}, line {tokens[-1][1]}: the file ends where {what} "
                                  "was expected")
        text, line = tokens[pos]
        pos += 1
        try:
            return kind(text), line
        except ValueError:
            name = "an integer" if kind is int else "a number"
            raise WindowFileError(f"windows file {path}, line {line}: {what} must be {name}, found {text!r}") from None

    images, fg, bg = [], [], []
    while pos < len(tokens):
        tag, line = take("'# image_index'")
        if tag != "#":
            raise WindowFileError(f"windows file {path}, line {line}: expected '#' starting an image "
                                  f"record ('# image_index'), found {tag!r}")
        index, line = take("image_index", int)
        if index != len(images):
            raise WindowFileError(f"windows file {path}, line {line}: image_index {index}, expected "
                                  f"{len(images)} (images are numbered 0, 1, ... in order)")
        image_path, line = take("the image path")
        images.append((root_folder + image_path, line))
        for what in ("channels", "height", "width"):
            value, line = take(what, int)
            if value <= 0:
                raise WindowFileError(f"windows file {path}, line {line}: {what} must be positive, found {value}")
        count, line = take("num_windows", int)
        if count < 0:
            raise WindowFileError(f"windows file {path}, line {line}: num_windows must be >= 0, found {count}")
        for _ in range(count):
            label, line = take("class_index", int)
            overlap, _ = take("overlap", float)
            box = [take(c, int)[0] for c in ("x1", "y1", "x2", "y2")]
            if box[2] < box[0] or box[3] < box[1] or min(box) < 0:
                raise WindowFileError(f"windows file {path}, line {line}: window x1 y1 x2 y2 = "
                                      f"{' '.join(map(str, box))} is not a box (need 0 <= x1 <= x2, 0 <= y1 <= y2)")
            window = {"image": index, "label": label, "overlap": overlap,
                      "x1": box[0], "y1": box[1], "x2": box[2], "y2": box[3], "line": line}
            if F32(overlap) >= F32(fg_threshold):
                if label <= 0:
                    raise WindowFileError(f"windows file {path}, line {line}: foreground window (overlap "
                                          f"{overlap} >= fg_threshold {fg_threshold}) has class {label}; "
                                          "foreground classes must be > 0")
                fg.append(window)
            elif F32(overlap) < F32(bg_threshold):
                bg.append(dict(window, label=0, overlap=0.0))
    return images, fg, bg


def c_round(v):
    """C's round(): halves away from zero."""
    a = abs(float(v))
    r = math.floor(a)
    if a - r >= 0.5:
        r += 1
    return int(math.copysign(r, v))


def window_geometry(box, img_hw, crop, context_pad=0, square=False, mirror=False):
    """Caffe's warp geometry in single precision: the clipped box (x1, y1, x2, y2) to read, the
    (width, height) to resize it to, and the (pad_w, pad_h) offset inside the crop."""
    x1, y1, x2, y2 = box
    rows, cols = img_hw
    size = (crop, crop)
    pad_w = pad_h = 0
    if context_pad > 0 or square:
        context_scale = F32(crop) / F32(crop - 2 * context_pad)
        half_h, half_w = F32((y2 - y1 + 1) / 2.0), F32((x2 - x1 + 1) / 2.0)
        cx, cy = F32(x1) + half_w, F32(y1) + half_h
        if square:
            half_h = half_w = max(half_h, half_w)
        x1, x2 = c_round(cx - half_w * context_scale), c_round(cx + half_w * context_scale)
        y1, y2 = c_round(cy - half_h * context_scale), c_round(cy + half_h * context_scale)
        unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
        px1, py1 = max(0, -x1), max(0, -y1)
        px2, py2 = max(0, x2 - cols + 1), max(0, y2 - rows + 1)
        x1, x2, y1, y2 = x1 + px1, x2 - px2, y1 + py1, y2 - py2
        if x1 > x2 or y1 > y2:
            return None
        scale_x, scale_y = F32(crop) / F32(unclipped_w), F32(crop) / F32(unclipped_h)
        width, height = c_round(F32(x2 - x1 + 1) * scale_x), c_round(F32(y2 - y1 + 1) * scale_y)
        px1, px2 = c_round(F32(px1) * scale_x), c_round(F32(px2) * scale_x)
        py1 = c_round(F32(py1) * scale_y)
        pad_h = py1
        pad_w = px2 if mirror else px1  # the padding is mirrored with the window
        size = (min(width, crop - pad_w), min(height, crop - pad_h))
    elif x2 >= cols or y2 >= rows:
        return None
    return (x1, y1, x2, y2), size, (pad_w, pad_h)


def warp_window(img, geometry, crop, mirror=False, mean=None, mean_values=None, scale=1.0):
    """The (C, crop, crop) float32 crop of an (H, W, C) uint8 BGR image for `window_geometry`."""
    import cv2
    (x1, y1, x2, y2), (width, height), (pad_w, pad_h) = geometry
    out = np.zeros((img.shape[2], crop, crop), F32)
    if width <= 0 or height <= 0:
        return out
    warped = cv2.resize(np.ascontiguousarray(img[y1:y2 + 1, x1:x2 + 1]), (width, height),
                        interpolation=cv2.INTER_LINEAR)
    if warped.ndim == 2:
        warped = warped[:, :, None]
    if mirror:
        warped = warped[:, ::-1]
    pixels = warped.transpose(2, 0, 1).astype(F32)
    if mean is not None:
        off = (mean.shape[2] - crop) // 2
        pixels = pixels - mean[:, off + pad_h:off + pad_h + height, off + pad_w:off + pad_w + width]
    elif mean_values is not None:
        pixels = pixels - mean_values[:, None, None]
    out[:, pad_h:pad_h + height, pad_w:pad_w + width] = pixels * F32(scale)
    return out


@register
class WindowData(Layer):
    type = "WindowData"
    bottoms = (0, 0)
    tops = (2, 2)
    is_data = True
    seed = 0

    def setup(self):
        p, tp = self.param.window_data_param, self.param.transform_param
        if not p.source:
            raise self.error("window_data_param.source (the windows file) is required")
        self.batch_size = int(p.batch_size)
        if self.batch_size <= 0:
            raise self.error(f"window_data_param.batch_size must be positive, found {self.batch_size}")
        # Old nets keep crop_size / mirror / mean_file in window_data_param; Caffe moved them to
        # transform_param, which wins when set.
        self.crop = int(tp.crop_size or p.crop_size)
        self.mirror = bool(tp.mirror or p.mirror)
        mean_file = tp.mean_file or p.mean_file
        self.scale = float(p.scale)
        self.context_pad = int(p.context_pad)
        if self.crop <= 0:
            raise self.error("transform_param.crop_size (the warped size) must be positive")
        if self.crop - 2 * self.context_pad <= 0:
            raise self.error(f"window_data_param.context_pad {self.context_pad} leaves nothing of crop_size {self.crop}")
        if p.crop_mode not in ("warp", "square"):
            raise self.error(f"window_data_param.crop_mode '{p.crop_mode}' is not one of: warp, square")
        self.square = p.crop_mode == "square"
        if not 0 <= p.fg_fraction <= 1:
            raise self.error(f"window_data_param.fg_fraction {p.fg_fraction} must be in [0, 1]")
        if tp.HasField("scale") and tp.scale != 1:
            warnings.warn(f"layer '{self.name}' (WindowData): transform_param.scale is ignored, as in Caffe; "
                          "use window_data_param.scale", stacklevel=2)
        try:
            self.images, self.fg, self.bg = read_windows_file(p.source, p.root_folder, p.fg_threshold, p.bg_threshold)
        except WindowFileError as e:
            raise self.error(str(e)) from None
        self.num_fg = int(F32(self.batch_size) * F32(p.fg_fraction))
        for pool, count, what in ((self.bg, self.batch_size - self.num_fg, "background"), (self.fg, self.num_fg, "foreground")):
            if count and not pool:
                raise self.error(f"windows file {p.source}: a batch needs {count} {what} windows, the file has none "
                                 f"(fg_threshold {p.fg_threshold}, bg_threshold {p.bg_threshold})")
        self.cache = {}
        for path, line in self.images:
            if not os.path.isfile(path):
                raise self.error(f"windows file {p.source}, line {line}: image {path} does not exist")
            if p.cache_images:  # Caffe keeps the file bytes and decodes them at every use
                with open(path, "rb") as f:
                    self.cache[path] = f.read()
        self.mean = self.mean_values = None
        if mean_file and len(tp.mean_value):
            raise self.error("transform_param: specify mean_file or mean_value, not both")
        if mean_file:
            self.mean = read_mean_file(mean_file, f"layer '{self.name}': ")
            c, h, w = self.mean.shape
            off = (w - self.crop) // 2
            if c != 3 or off < 0 or off + self.crop > h:
                raise self.error(f"mean_file {mean_file} has shape {self.mean.shape}; it needs 3 channels and "
                                 f"at least {self.crop}x{self.crop} pixels")
        elif len(tp.mean_value):
            values = list(tp.mean_value)
            if len(values) not in (1, 3):
                raise self.error(f"transform_param.mean_value has {len(values)} values; give 1 or 3 (BGR)")
            self.mean_values = np.array(values * 3 if len(values) == 1 else values, F32)

    def reshape(self, bottom_shapes):
        # Caffe decodes every image in colour, so the data always have 3 channels.
        return [(self.batch_size, 3, self.crop, self.crop), (self.batch_size,)]

    def _image(self, path, line):
        try:
            data = self.cache.get(path)
            if data is None:
                with open(path, "rb") as f:
                    data = f.read()
            return image.decode(data, image.COLOR)
        except (OSError, image.DecodeError) as e:
            raise self.error(f"windows file {self.param.window_data_param.source}, line {line}: cannot read "
                             f"image {path} ({e})") from None

    def sample(self, iteration, j):
        """(data (3, crop, crop), label) of sample j of the batch at `iteration`."""
        g = rng.numpy_rng(self.seed, "WindowData", iteration, j)
        index, coin = int(g.integers(0, 2 ** 32)), int(g.integers(0, 2))
        pool = self.fg if j >= self.batch_size - self.num_fg else self.bg  # background first
        window = pool[index % len(pool)]
        do_mirror = self.mirror and coin == 1
        path, line = self.images[window["image"]]
        img = self._image(path, line)
        box = (window["x1"], window["y1"], window["x2"], window["y2"])
        geometry = window_geometry(box, img.shape[:2], self.crop, self.context_pad, self.square, do_mirror)
        if geometry is None:
            raise self.error(f"windows file {self.param.window_data_param.source}, line {window['line']}: window "
                             f"{' '.join(map(str, box))} lies outside image {path} ({img.shape[1]}x{img.shape[0]})")
        return warp_window(img, geometry, self.crop, do_mirror, self.mean, self.mean_values, self.scale), window["label"]

    def batch(self, iteration, start=0, stop=None):
        stop = self.batch_size if stop is None else stop
        samples = [self.sample(iteration, j) for j in range(start, stop)]
        data = torch.from_numpy(np.stack([s[0] for s in samples])) if samples else torch.zeros(0, 3, self.crop, self.crop)
        return [data, torch.tensor([float(s[1]) for s in samples], dtype=torch.float32)]

    def forward(self):
        raise self.error("data layers are fed by Net; call batch(iteration)")
