"""compute_image_mean: the per-pixel mean of an image database, as Caffe's tool computes it.

Caffe (tools/compute_image_mean.cpp) sums every record's pixels into a blob of the records' size
(encoded records are decoded natively first; a record of another size is a fatal error) and
divides by the count; the result is a BlobProto with the legacy shape num=1, channels, height,
width, written as binary protobuf, and it logs the mean of each channel ("mean pixel"). We sum in
float64 (Caffe sums in float32, so its last digits drift on large DBs) and also save the mean pixel
(BGR) for the VGG layer's mean_value. Where Caffe stops at a record of another size, the tool's
default ("auto") goes on with the mean pixel alone: the README's pipeline (convert_imageset
--min_side keeps each photo's aspect ratio, so sizes differ) then yields what VGG subtracts.
"""
import json
from dataclasses import dataclass

import numpy as np

from ..errors import CaffeError
from ..fileio import atomic_write
from ..proto import pb
from . import datum as datum_io
from . import image
from .db import Reader


@dataclass
class MeanResult:
    """What compute_mean found: the mean image (C, H, W) float64 or None, the mean pixel (C,), the
    record count, and, when per_pixel="auto" met records of two sizes, `mixed`: (first key, its
    (C, H, W), the first key of another size, that size)."""
    mean: object
    pixel: object
    count: int
    mixed: tuple = None


def compute_mean(db_path, per_pixel=True, limit=0, progress=None):
    """Mean of an LMDB of Datums.

    per_pixel=True is Caffe's: one mean image, records of another size are an error. False gives
    the mean pixel only. "auto" (compute_image_mean's default) keeps the mean image while the
    records share one size; at the first record of another size (convert_imageset --min_side
    keeps each photo's aspect ratio) it drops it and finishes the mean pixel, the per-channel mean
    over every pixel of every record, which is what VGG subtracts (mean_value B, G, R). A record of
    another channel count is an error in every mode."""
    reader = Reader(db_path)
    total = None
    shape = first_key = None
    pixel_sum = None
    pixel_count = 0
    count = 0
    mixed = None
    for key, value in reader.items():
        where = f"{db_path}: key {key.decode(errors='replace')}"
        img = datum_io.to_image(datum_io.parse(value, where), image.NATIVE, where)
        chw = np.asarray(img, np.float64).transpose(2, 0, 1)
        if shape is None:
            shape, first_key = chw.shape, key
            pixel_sum = np.zeros(shape[0])
        if chw.shape[0] != shape[0] or (per_pixel is True and chw.shape != shape):
            raise CaffeError(f"{where}: size (C,H,W) {chw.shape} differs from the first record "
                             f"({first_key.decode(errors='replace')}: {shape}); a per-pixel mean needs one size "
                             "(convert with --resize_height/--resize_width, or use --mean_pixel_only)")
        if per_pixel == "auto" and mixed is None and chw.shape != shape:
            mixed = (first_key.decode(errors="replace"), shape, key.decode(errors="replace"), chw.shape)
            total = None
        if per_pixel and mixed is None:
            total = chw.copy() if total is None else total + chw
        pixel_sum += chw.sum(axis=(1, 2))
        pixel_count += chw.shape[1] * chw.shape[2]
        count += 1
        if progress:
            progress(count)
        if limit and count >= limit:
            break
    if count == 0:
        raise CaffeError(f"{db_path}: the database has no records")
    mean = total / count if total is not None else None
    return MeanResult(mean, pixel_sum / pixel_count, count, mixed)


def compute(db_path, per_pixel=True, limit=0, progress=None):
    """(mean image float64 (C, H, W) or None, mean pixel (C,), count): compute_mean's fields.

    per_pixel=False accepts records of different sizes and averages over all their pixels.
    """
    r = compute_mean(db_path, per_pixel, limit, progress)
    return r.mean, r.pixel, r.count


def to_blob(mean):
    c, h, w = mean.shape
    blob = pb.BlobProto(num=1, channels=c, height=h, width=w)
    blob.data.extend(mean.astype(np.float32).ravel().tolist())
    return blob


def read_mean_file(path, where=""):
    """A mean BlobProto as a float32 array (C, H, W) (legacy 4-D fields or shape)."""
    from ..proto import read_binary
    blob = read_binary(path, pb.BlobProto)
    if len(blob.shape.dim):
        dims = list(blob.shape.dim)
    else:
        dims = [blob.num, blob.channels, blob.height, blob.width]
    while len(dims) > 3 and dims[0] == 1:
        dims = dims[1:]
    data = np.asarray(blob.data, np.float32)
    if len(dims) != 3 or data.size != int(np.prod(dims)):
        raise CaffeError(f"{where}{path}: a mean blob needs (1, C, H, W) with C*H*W values; "
                         f"has dims {dims} and {data.size} values")
    return data.reshape(dims)


def write(mean, mean_pixel, count, out_path, pixel_path):
    if out_path and mean is not None:
        atomic_write(out_path, to_blob(mean).SerializeToString())
    if pixel_path:
        info = {"mean_pixel_bgr" if len(mean_pixel) == 3 else "mean_pixel": [float(v) for v in mean_pixel],
                "records": count}
        if mean is not None:
            info["shape_chw"] = list(mean.shape)
        atomic_write(pixel_path, json.dumps(info, indent=1) + "\n")
