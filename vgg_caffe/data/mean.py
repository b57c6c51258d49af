"""compute_image_mean: the per-pixel mean of an image database, as Caffe's tool computes it.

Caffe (tools/compute_image_mean.cpp) sums every record's pixels into a blob of the records' size
(encoded records are decoded natively first; a record of another size is a fatal error) and
divides by the count; the result is a BlobProto with the legacy shape num=1, channels, height,
width, written as binary protobuf, and it logs the mean of each channel ("mean pixel"). We sum in
float64 (Caffe sums in float32, so its last digits drift on large DBs), name the first record whose
size differs, and also save the mean pixel (BGR) for the VGG layer's mean_value.
"""
import json

import numpy as np

from ..errors import CaffeError
from ..fileio import atomic_write
from ..proto import pb
from . import datum as datum_io
from . import image
from .db import Reader


def compute(db_path, per_pixel=True, limit=0, progress=None):
    """(mean image float64 (C, H, W) or None, mean pixel (C,), count).

    per_pixel=False accepts records of different sizes and averages over all their pixels.
    """
    reader = Reader(db_path)
    total = None
    shape = first_key = None
    pixel_sum = None
    pixel_count = 0
    count = 0
    for key, value in reader.items():
        where = f"{db_path}: key {key.decode(errors='replace')}"
        img = datum_io.to_image(datum_io.parse(value, where), image.NATIVE, where)
        chw = np.asarray(img, np.float64).transpose(2, 0, 1)
        if shape is None:
            shape, first_key = chw.shape, key
            pixel_sum = np.zeros(shape[0])
        if chw.shape[0] != shape[0] or (per_pixel and chw.shape != shape):
            raise CaffeError(f"{where}: size (C,H,W) {chw.shape} differs from the first record "
                             f"({first_key.decode(errors='replace')}: {shape}); a per-pixel mean needs one size "
                             "(convert with --resize_height/--resize_width, or use --mean_pixel_only)")
        if per_pixel:
            total = chw.copy() if total is None else total + chw
        pixel_sum += chw.sum(axis=(1, 2))
        pixel_count += chw.shape[1] * chw.shape[2]
        count += 1
        if progress:
            progress(count)
        if limit and count >= limit:
            break
    mean = total / count if per_pixel else None
    return mean, pixel_sum / pixel_count, count


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
