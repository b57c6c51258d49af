"""Images for evaluation: an LMDB of Datums or ROOT + list file, decoded to BGR uint8 (Caffe's
convention), as (key, image, label) records."""
import os
import numpy as np
from ..errors import CaffeError


def lmdb_images(path, limit=None):
    """(count, iterator of (key, HxWx3 BGR image, label)) over an LMDB of Caffe Datums (raw,
    float or encoded), read with the data package's reader in key order."""
    from ..data import datum as datum_io
    from ..data.db import Reader

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
    from ..data import image

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
