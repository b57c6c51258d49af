"""Decoding that never stops a run: what OpenCV throws becomes a reason to skip the image.

cv2.imdecode returns None for bytes it cannot read (vgg_caffe.data.image then tries Pillow), but
it *throws* cv2.error for a header that claims more pixels than CV_IO_MAX_IMAGE_PIXELS (2^30 by
default; a 50000x50000 PNG of a few hundred bytes is enough). convert_imageset and evaluate's
--skip-bad skip and list such files with the size they claim, as they do truncated ones; without
--skip-bad, evaluate stops with that reason and the list line.
"""
import os

from . import image


def max_pixels():
    """OpenCV's decoding limit: CV_IO_MAX_IMAGE_PIXELS (its environment variable), 2^30 by default."""
    try:
        return int(os.environ.get("CV_IO_MAX_IMAGE_PIXELS", 1 << 30))
    except ValueError:
        return 1 << 30


def claimed_size(data):
    """(width, height) that a PNG, JPEG, GIF or BMP header claims, or None (other formats, or no
    readable header): read before decoding, so a skip report can say what the file asked for."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:2] == b"BM" and len(data) >= 26:
        return (abs(int.from_bytes(data[18:22], "little", signed=True)),
                abs(int.from_bytes(data[22:26], "little", signed=True)))
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(data) and data[i] == 0xFF:
            marker = data[i + 1]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def decode_checked(data, mode):
    """image.decode, with what OpenCV throws instead of returning nothing (cv2.error: a header that
    claims more pixels than CV_IO_MAX_IMAGE_PIXELS, ...) turned into a DecodeError reason, so the
    image is skipped and listed like a truncated one rather than stopping the run."""
    import cv2

    try:
        return image.decode(data, mode)
    except cv2.error as e:
        size = claimed_size(data)
        if "CV_IO_MAX_IMAGE_PIXELS" in str(e) or (size and size[0] * size[1] > max_pixels()):
            claim = f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size else "more pixels"
            raise image.DecodeError(f"the header claims {claim}, more than OpenCV decodes "
                                    f"(CV_IO_MAX_IMAGE_PIXELS = {max_pixels():,})") from None
        detail = next((ln.split("error:", 1)[1].strip() for ln in str(e).splitlines() if "error:" in ln), str(e))
        raise image.DecodeError(f"OpenCV cannot decode it ({detail})") from None
    except MemoryError:
        raise image.DecodeError("decoding it needs more memory than is available") from None
