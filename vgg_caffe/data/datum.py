"""Caffe's Datum record <-> numpy images.

A raw Datum (Caffe's CVMatToDatum) holds uint8 pixels in channel-major order (C, H, W), BGR for
colour, with channels/height/width set; an encoded Datum holds the bytes of an image file and
encoded=true, and is decoded when read (DecodeDatumToCVMat). Datums may instead carry float_data
(same CHW order). Labels are int32 in the record; the layers hand them on as floats, as Caffe does.
"""
import numpy as np

from ..errors import CaffeError
from ..proto import pb
from . import image


def from_image(img, label):
    """A raw Datum from an (H, W, C) uint8 array."""
    h, w, c = img.shape
    return pb.Datum(channels=c, height=h, width=w, label=int(label),
                    data=np.ascontiguousarray(img.transpose(2, 0, 1)).tobytes())


def from_encoded(data, label):
    """An encoded Datum holding image file bytes (dimensions unset, as Caffe's ReadFileToDatum)."""
    return pb.Datum(data=data, label=int(label), encoded=True)


def parse(value, where):
    datum = pb.Datum()
    try:
        datum.ParseFromString(value)
    except Exception:
        raise CaffeError(f"{where}: not a Datum record (protobuf parse failed)") from None
    return datum


def to_image(datum, mode=image.NATIVE, where="?"):
    """(H, W, C) array of a Datum: uint8 for raw/encoded, float32 for float_data records.

    Encoded records are decoded with `mode` (COLOR / GRAY / NATIVE, Caffe's force_color /
    force_gray / native decode); raw records come back as stored.
    """
    if datum.encoded:
        try:
            return image.decode(datum.data, mode)
        except image.DecodeError as e:
            raise CaffeError(f"{where}: encoded Datum does not decode ({e})") from None
    c, h, w = datum.channels, datum.height, datum.width
    if datum.data:
        if len(datum.data) != c * h * w:
            raise CaffeError(f"{where}: raw Datum has {len(datum.data)} bytes, expected "
                             f"channels*height*width = {c}*{h}*{w} = {c * h * w}")
        return np.frombuffer(datum.data, np.uint8).reshape(c, h, w).transpose(1, 2, 0)
    if len(datum.float_data):
        if len(datum.float_data) != c * h * w:
            raise CaffeError(f"{where}: Datum has {len(datum.float_data)} float_data values, expected {c * h * w}")
        return np.asarray(datum.float_data, np.float32).reshape(c, h, w).transpose(1, 2, 0)
    raise CaffeError(f"{where}: empty Datum (no data, no float_data)")
