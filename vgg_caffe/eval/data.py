"""Images for evaluation: an LMDB of Datums or ROOT + list file, decoded to BGR uint8 (Caffe's
convention), as (key, image, label) records.

By default a record that cannot be read stops the run with a CaffeError naming the list line or
LMDB key. With `skipped` (a list; evaluate's --skip-bad) such records are left out and listed in
it as (where, reason), as convert_imageset does: a missing or unreadable file, bytes that do not
decode (truncated, a header claiming more pixels than OpenCV decodes), a list line without a
label, a damaged Datum.
"""
import os

import numpy as np

from ..errors import CaffeError


def _failed(skipped, where, reason):
    """Skip (record it) when asked to, else stop."""
    if skipped is None:
        raise CaffeError(f"{where}: {reason}")
    skipped.append((where, reason))


def lmdb_images(path, limit=None, skipped=None):
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
            try:
                d = datum_io.parse(value, where)
                img = three_channels(datum_io.to_image(d, "color", where), where)
            except CaffeError as e:
                _failed(skipped, where, str(e)[len(where) + 2:] if str(e).startswith(where) else str(e))
                continue
            yield name, img, int(d.label)

    return count, records()


def three_channels(img, where):
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)  # a grey record: the net still takes B, G, R
    if img.shape[2] != 3:
        raise CaffeError(f"{where}: {img.shape[2]} channels; expected 1 or 3")
    return img


def list_images(root, list_file, limit=None, skipped=None):
    """(count, iterator) over a convert_imageset-style list: "relative/path label" per line,
    split at the last space. Images are decoded by content, as the converter does."""
    from ..data import image
    from ..data.checked import decode_checked

    try:
        with open(list_file, encoding="utf-8") as f:
            lines = [(n, line.rstrip("\n")) for n, line in enumerate(f, 1) if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise CaffeError(f"{list_file}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    entries = []
    for n, line in lines:
        path, _, label = line.rstrip().rpartition(" ")
        if not path or not label.lstrip("-").isdigit():
            _failed(skipped, f"{list_file}:{n}", f"expected 'path label', found {line!r}")
            continue
        entries.append((n, path, int(label)))
    if limit:
        entries = entries[:limit]

    def records():
        for n, path, label in entries:
            full = os.path.join(root, path)
            try:
                with open(full, "rb") as f:
                    data = f.read()
                img = decode_checked(data, image.COLOR)
            except OSError as e:
                _failed(skipped, f"{list_file}:{n}", f"cannot read image {full} ({e.strerror or e})")
                continue
            except image.DecodeError as e:
                _failed(skipped, f"{list_file}:{n}", f"{full}: {e}")
                continue
            yield path, img, label

    return len(entries), records()


def open_data(data, limit=None, skipped=None):
    """--data DB, or --data ROOT LIST; `skipped` as in the module's docstring."""
    if len(data) == 1:
        return lmdb_images(data[0], limit, skipped)
    if len(data) == 2:
        return list_images(data[0], data[1], limit, skipped)
    raise CaffeError(f"--data takes an LMDB path or ROOT LIST_FILE, got {len(data)} values")
