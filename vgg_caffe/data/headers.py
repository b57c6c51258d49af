"""What an image file's leading bytes and JPEG markers say, read without decoding it.

Caffe hands every file to OpenCV whatever its name; ImageNet has PNGs named .JPEG, so the
format comes from the leading bytes (sniff). For JPEGs the marker segments before the first scan
give the frame header (components, height, width: jpeg_frame), the EXIF orientation that OpenCV's
IMREAD_COLOR applies (jpeg_orientation), and whether the last scan is followed by an end-of-image
marker (jpeg_truncated: libjpeg only warns and pads a truncated file with grey).
vgg_caffe.data.image decides from these how to decode.
"""


def sniff(data):
    """The container format from the leading bytes ('jpeg', 'png', ... or 'unknown')."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] in (b"GIF8",):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "unknown"


def jpeg_components(data):
    """Number of colour components in the JPEG's frame header (SOFn), or None if not found."""
    frame = jpeg_frame(data)
    return frame[0] if frame else None


def _jpeg_segments(data):
    """(marker, offset, length) of each marker segment after SOI, up to and including the first
    start of scan (0xDA); fill bytes and the markers without a length are skipped. A byte where a
    marker should be yields (None, offset, 0) and ends the walk."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            yield None, i, 0
            return
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        yield marker, i, length
        if marker == 0xDA:
            return
        i += 2 + length


def jpeg_frame(data):
    """(components, height, width) from the JPEG's frame header (SOFn), or None if not found."""
    n = len(data)
    for marker, i, _ in _jpeg_segments(data):
        if marker is None or marker == 0xDA:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 >= n:
                return None
            return data[i + 9], int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
    return None


def jpeg_orientation(data):
    """The EXIF orientation tag (1-8) of a JPEG, 1 when it has none (OpenCV's IMREAD_COLOR
    rotates or mirrors the decode by it), 0 when the markers before the first scan do not parse."""
    for marker, i, length in _jpeg_segments(data):
        if marker is None:
            return 0
        if marker == 0xDA:   # start of scan: the EXIF segment comes before
            return 1
        if marker == 0xE1 and data[i + 4:i + 10] == b"Exif\0\0":
            return _tiff_orientation(data[i + 10:i + 2 + length])
    return 0


def _tiff_orientation(tiff):
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 1
    for k in range(int.from_bytes(tiff[ifd:ifd + 2], order)):
        entry = tiff[ifd + 2 + 12 * k:ifd + 14 + 12 * k]
        if len(entry) == 12 and int.from_bytes(entry[:2], order) == 0x0112:
            value = int.from_bytes(entry[8:10], order)
            return value if 1 <= value <= 8 else 1
    return 1


def jpeg_truncated(data):
    """True when the last scan (SOS) is not followed by an end-of-image marker."""
    if data.endswith(b"\xff\xd9"):  # the usual case, without scanning the whole file twice
        return False
    return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")
