"""Error rates and the paper's error tables: top-k error with Caffe's tie rule, the table text,
JSON/CSV results, and the test scales Q derived from a training scale S (Sect. 4.1 and 4.2)."""
import csv
import io
import json
import os
import numpy as np
from ..errors import CaffeError
from ..fileio import atomic_write


def topk_correct(posteriors, labels, k):
    """Per image: fewer than k other classes score >= the true class (Caffe's Accuracy rule)."""
    posteriors = np.asarray(posteriors)
    labels = np.asarray(labels, dtype=np.int64)
    true = posteriors[np.arange(len(labels)), labels][:, None]
    rivals = (posteriors >= true).sum(1) - 1
    return rivals < k


def error_rates(posteriors, labels):
    """(top-1 error %, top-5 error %)."""
    return tuple(100.0 * (1.0 - topk_correct(posteriors, labels, k).mean()) for k in (1, 5))


def scale_label(s):
    if s is None:
        return "-"
    if isinstance(s, (tuple, list)):
        return f"[{s[0]};{s[1]}]" if len(s) == 2 and s[0] != s[1] else str(s[0])
    return str(s)


def format_table(rows):
    cells = [COLUMNS] + [(r["config"], r["method"], r["train_scale"], r["test_scale"],
                          f"{r['top1_error']:.1f}", f"{r['top5_error']:.1f}") for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    line = "-+-".join("-" * w for w in widths)   # "+" under each " | " of the rows
    text = [" | ".join(c.ljust(w) for c, w in zip(cells[0], widths)), line]
    text += [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells[1:]]
    return "\n".join(text)


def write_results(path, rows, meta):
    """JSON and CSV (the same rows); `path` names either, the other goes beside it."""
    stem, ext = os.path.splitext(path)
    if ext.lower() not in (".json", ".csv"):
        stem = path
    atomic_write(stem + ".json", json.dumps(dict(meta, rows=rows), indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["config"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(stem + ".csv", buf.getvalue())
    return stem + ".json", stem + ".csv"


def parse_scale(text):
    """'256' -> 256 (fixed S); '256,512' -> (256, 512) (jittered S)."""
    try:
        values = [int(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise CaffeError(f"bad scale {text!r}: expected S or S_min,S_max") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2 and values[0] <= values[1]:
        return tuple(values) if values[0] != values[1] else values[0]
    raise CaffeError(f"bad scale {text!r}: expected S or S_min,S_max with S_min <= S_max")


def test_scales(train_scale, multi_scale, crop=224):
    """The paper's Q for a training scale: Q = S or (S_min+S_max)/2 at a single scale;
    {S-32, S, S+32} or {S_min, (S_min+S_max)/2, S_max} at multiple scales (Sect. 4.1, 4.2).
    The 32 is for 224 crops; smaller nets (a 32 crop) scale it with the crop."""
    if isinstance(train_scale, tuple):
        lo, hi = train_scale
        mid = (lo + hi) // 2
        return [lo, mid, hi] if multi_scale else [mid]
    s, d = train_scale, int(round(32 * crop / 224))
    return [s - d, s, s + d] if multi_scale else [s]


COLUMNS = ("ConvNet config.", "evaluation method", "train (S)", "test (Q)",
           "top-1 val. error (%)", "top-5 val. error (%)")
