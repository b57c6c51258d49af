"""Image bytes -> BGR uint8 arrays, decoded by content, and Caffe's resizes.

Caffe decodes with OpenCV (cv::imdecode / cv::imread with IMREAD_COLOR, which yields BGR, or
IMREAD_GRAYSCALE) and resizes with cv::resize's default bilinear interpolation. We do the same,
with three additions that real ImageNet files need:
  * the format comes from the bytes, never the file name (ImageNet has PNGs named .JPEG);
  * a JPEG whose last scan has no end-of-image marker is reported as truncated instead of being
    silently padded with grey (libjpeg only warns);
  * CMYK/YCCK JPEGs (a few dozen in ILSVRC-2012) go through Pillow: OpenCV decodes Adobe CMYK
    one level too bright on every channel, Pillow inverts it exactly. Pillow is also the fallback
    for anything OpenCV cannot read.
Arrays are always 3-D (H, W, C) with C = 3 (BGR) or 1 (grey). The format and the JPEG headers
are read by vgg_caffe.data.headers.

`probe` does the checks `decode` makes before decoding (format, truncation, the JPEG frame header:
components and size), so that a caller can do them ahead and pass them in. `resize_corner` is
`resize` followed by a crop of its top-left corner, the same pixels for less work.

`decode_top` decodes only the top rows of a colour JPEG, through the system's libjpeg
(vgg_caffe/data/_jpegrows.c, built when libjpeg's headers are there): libjpeg emits rows top to
bottom, so they are the whole decode's rows, for the work of those rows; a crop of the rescaled
image needs the rows down to its far edge only (VGGData). It declines (None) where OpenCV's decode
would not be the plain decode: no extension, CMYK, or an EXIF orientation OpenCV would apply.

Speed option (off unless asked): `decode(..., reduce=f)` decodes a JPEG at 1/f of its size
(f = 2, 4 or 8: libjpeg's DCT-domain scaling, OpenCV's IMREAD_REDUCED_*), ceil(H/f) x ceil(W/f)
pixels, each close to the mean of an f x f block: several times less work when the image is then
shrunk anyway. The pixels differ from a full decode followed by a resize (a pixel-level
difference, see vgg_caffe.data.transforms); other formats and CMYK JPEGs decode at full size.
"""
import io
import re

import cv2
import numpy as np

from .headers import (jpeg_components, jpeg_frame, jpeg_orientation, jpeg_truncated,  # noqa: F401 (re-exported)
                      sniff)

try:
    from . import _jpegrows
except ImportError:   # built without libjpeg's headers: whole decodes through OpenCV
    _jpegrows = None

COLOR, GRAY, NATIVE = "color", "gray", "native"
_CV_FLAGS = {COLOR: cv2.IMREAD_COLOR, GRAY: cv2.IMREAD_GRAYSCALE, NATIVE: cv2.IMREAD_ANYCOLOR}
_CV_REDUCED = {(COLOR, 2): cv2.IMREAD_REDUCED_COLOR_2, (COLOR, 4): cv2.IMREAD_REDUCED_COLOR_4,
               (COLOR, 8): cv2.IMREAD_REDUCED_COLOR_8, (GRAY, 2): cv2.IMREAD_REDUCED_GRAYSCALE_2,
               (GRAY, 4): cv2.IMREAD_REDUCED_GRAYSCALE_4, (GRAY, 8): cv2.IMREAD_REDUCED_GRAYSCALE_8}
REDUCTIONS = (8, 4, 2)


class DecodeError(Exception):
    """The bytes are not an image we can decode; str(e) is the reason, for the skip report."""


def decode_top(data, rows, reduce=1, probed=None):
    """(img, valid): an (H, W, 3) BGR array of a colour decode of JPEG `data` at 1/reduce
    (decode(data, COLOR, reduce)'s size) whose rows [0, valid) are that decode's rows, valid >=
    min(rows, H); the rows below are not written. None where it cannot stand for decode(): no
    _jpegrows extension, not a JPEG, CMYK, an EXIF orientation other than 1, data libjpeg
    refuses (decode() then tries Pillow and gives the reason)."""
    kind, frame = probed or probe(data)
    if _jpegrows is None or kind != "jpeg" or not frame or frame[0] not in (1, 3):
        return None
    if jpeg_orientation(data) != 1:
        return None
    height, width = reduced_size(frame[1], frame[2], reduce)
    img = np.empty((height, width, 3), np.uint8)
    try:
        valid = _jpegrows.decode_top(data, img, height, width, min(rows, height), reduce)
    except ValueError:   # decode() deals with what libjpeg refuses (Pillow, then the reason)
        return None
    return img, valid


def probe(data):
    """(format, frame): what decode() looks at before decoding -- sniff(data) and, for a JPEG,
    jpeg_frame(data) (or None). Raises DecodeError for what it refuses to decode at all."""
    if not data:
        raise DecodeError("empty file")
    kind = sniff(data)
    if kind != "jpeg":
        return kind, None
    if jpeg_truncated(data):
        raise DecodeError("truncated JPEG (no end-of-image marker after the last scan)")
    return kind, jpeg_frame(data)


def decode(data, mode=COLOR, reduce=1, probed=None):
    """Decode image bytes to an (H, W, C) uint8 array: BGR for COLOR, 1 channel for GRAY,
    whichever the file has for NATIVE. Raises DecodeError with a reason.

    reduce (2, 4 or 8; COLOR and GRAY only): a JPEG decodes at reduced_size(H, W, reduce);
    anything else at full size (the caller compares the shape to see which it got).
    probed: probe(data), when the caller has it already."""
    kind, frame = probed or probe(data)
    if frame and frame[0] == 4:
        return _decode_pillow(data, mode, "CMYK JPEG")
    flag = _CV_FLAGS[mode]
    if reduce != 1 and kind == "jpeg":
        flag = _CV_REDUCED.get((mode, reduce), flag)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if img is None or img.size == 0:
        return _decode_pillow(data, mode, f"{kind} data OpenCV cannot decode")
    return img if img.ndim == 3 else img[:, :, None]


def _decode_pillow(data, mode, why):
    try:
        from PIL import Image
    except ImportError:
        raise DecodeError(f"{why}, and Pillow is not installed") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            gray = mode == GRAY or (mode == NATIVE and im.mode in ("1", "L", "LA", "I", "I;16", "F"))
            arr = np.asarray(im.convert("L" if gray else "RGB"))
    except Exception as e:  # Pillow raises many types for bad data
        raise DecodeError(f"cannot decode: {why}; Pillow: {pillow_reason(e)}") from None
    return np.ascontiguousarray(arr[:, :, None] if gray else arr[:, :, ::-1])


# Python reprs with an address, e.g. "<_io.BytesIO object at 0x7f3a2c1d5e90>"
_REPR = re.compile(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>")


def pillow_reason(error):
    """Pillow's message without object reprs (Pillow names the stream: "cannot identify image
    file <_io.BytesIO object at 0x...>"), so a skip report is stable from run to run."""
    text = _REPR.sub("", str(error)).strip()
    return text or type(error).__name__


# What --encode_type may name: formats OpenCV writes from 8-bit images and reads back as 8-bit
# images. GIF is left out (OpenCV's writer quantises to a 256-colour palette, and cannot write
# grey), as are the float formats (PFM, HDR, EXR) and JPEG 2000 (fails on small images).
ENCODE_CANDIDATES = ("jpg", "jpeg", "jpe", "png", "bmp", "dib", "tif", "tiff", "webp", "ppm", "pgm",
                     "pnm", "sr", "ras", "avif")
_CAN_WRITE = {}


def can_write(ext, channels):
    """Whether OpenCV here encodes a (H, W, channels) uint8 image as `ext` and decodes it back
    (probed once on a tiny image; PPM only takes colour, PGM only grey)."""
    ext = ext.lower().lstrip(".")
    key = (ext, channels)
    if key not in _CAN_WRITE:
        ok = False
        if ext in ENCODE_CANDIDATES:
            probe = np.full((2, 2, channels), 128, np.uint8)
            level = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
            try:
                done, buf = cv2.imencode("." + ext, probe)
                back = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if done else None
                ok = back is not None and back.dtype == np.uint8 and back.shape[:2] == (2, 2)
            except cv2.error:
                ok = False
            finally:
                cv2.utils.logging.setLogLevel(level)
        _CAN_WRITE[key] = ok
    return _CAN_WRITE[key]


def writable_encodings(channels):
    """The ENCODE_CANDIDATES OpenCV here can write for images of `channels` channels."""
    return [ext for ext in ENCODE_CANDIDATES if can_write(ext, channels)]


def encode(img, ext):
    """Encode an (H, W, C) BGR/grey array as `ext` ('jpg', 'png', ...) with OpenCV's defaults
    (JPEG quality 95, as Caffe's cv::imencode)."""
    ok, buf = cv2.imencode("." + ext.lstrip("."), img)
    if not ok:
        raise DecodeError(f"cannot encode as {ext}")
    return buf.tobytes()


def _keep3(img, channels):
    return img if img.ndim == 3 else img.reshape(img.shape[0], img.shape[1], channels)


def resize(img, height, width):
    """Caffe's anisotropic resize (ReadImageToCVMat with both sizes > 0): bilinear."""
    if img.shape[0] == height and img.shape[1] == width:
        return img
    return _keep3(cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR), img.shape[2])


def resize_corner(img, height, width, rows, cols, valid_rows=None):
    """resize(img, height, width)[:rows, :cols], the same pixels, resizing only the top-left part
    of `img` those output pixels read (a random crop needs on average half of the image).

    Exact, not an approximation: OpenCV computes output column x from source position
    (x + 0.5) * W / w - 0.5 (and its neighbour), a function of x and of the scale alone. A
    sub-image starting at (0, 0), resized with the whole image's scale (fx = w / W, fy = h / H,
    passed as such so that OpenCV uses those doubles unchanged), therefore gives the same
    coefficients and pixels everywhere except near its own far edges, which are kept at least two
    source pixels beyond the last one read. A sub-image that would come out at its own size
    (OpenCV then copies instead of interpolating), or too small, falls back to the whole resize.
    tests/data/test_data_fast.py checks this against the whole resize on random sizes.
    valid_rows: only img's rows [0, valid_rows) hold pixels (decode_top); None when the whole
    resize would read the others.
    """
    valid_rows = img.shape[0] if valid_rows is None else valid_rows
    src_h, src_w = img.shape[:2]
    if (src_h, src_w) == (height, width):
        return img[:rows, :cols]
    sub_h = corner_rows(src_h, height, rows)
    sub_w = corner_rows(src_w, width, cols)
    if (sub_h, sub_w) != (src_h, src_w):
        out = resize_part(img, 0, 0, sub_h, sub_w, height / src_h, width / src_w, rows, cols)
        if out is not None:
            return out[:rows, :cols]
    if valid_rows < src_h:   # the whole resize reads rows that were not decoded
        return None
    return resize(img, height, width)[:rows, :cols]


def corner_rows(src, dst, rows):
    """How many source rows (or columns) resize_corner reads for the first `rows` of a resize
    from `src` to `dst`: those the output reads, and two beyond."""
    return min(src, -(-rows * src // dst) + 3)


def resize_part(img, r0, c0, nr, nc, fy, fx, rows, cols):
    """The bilinear resize of img[r0:r0 + nr, c0:c0 + nc] by (fy, fx), given as scale factors so
    that OpenCV uses those doubles unchanged; None when it cannot stand for part of a whole
    resize: it has fewer than rows x cols pixels, or OpenCV copied the part instead of
    interpolating (it does when the size comes out unchanged while the scale is not 1)."""
    out = cv2.resize(img[r0:r0 + nr, c0:c0 + nc], None, fx=fx, fy=fy, interpolation=cv2.INTER_LINEAR)
    if out.shape[0] < rows or out.shape[1] < cols or (out.shape[:2] == (nr, nc) and not fx == fy == 1):
        return None
    return _keep3(out, img.shape[2])


def min_side_size(height, width, side):
    """(h, w) after an isotropic rescale making the smaller side `side` (the other rounded)."""
    if height <= width:
        return side, max(1, int(round(width * side / height)))
    return max(1, int(round(height * side / width))), side


def reduced_size(height, width, factor):
    """The size libjpeg decodes an H x W JPEG to at 1/factor: (ceil(H/f), ceil(W/f))."""
    return -(-height // factor), -(-width // factor)


def reduction(height, width, side, allowed=REDUCTIONS):
    """The largest JPEG reduction f in `allowed` with side * f <= min(H, W): the target scale is at
    most 1/f of the stored image, so the reduced image is only ever shrunk further; 1 if none."""
    for f in allowed:
        if side * f <= min(height, width):
            return f
    return 1


def rescale_min_side(img, side):
    """The paper's isotropic rescale: the smallest side becomes `side`, aspect ratio kept."""
    h, w = min_side_size(img.shape[0], img.shape[1], side)
    return resize(img, h, w)
