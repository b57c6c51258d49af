"""convert_imageset: a list of images -> an LMDB of Datum records, as Caffe's tool does.

Caffe's behaviour reproduced (tools/convert_imageset.cpp): list lines are "relative/path label",
split at the LAST space; with --shuffle the lines are shuffled first; the key of line i (after
shuffling) is "%08d_<path>"; a line that cannot be read keeps its number (Caffe's loop skips it),
so keys of an unshuffled list are the list's line numbers; records are raw (uint8 BGR CHW) or
encoded (the file's bytes, or re-encoded with --encode_type, which implies --encoded); --resize_height/--resize_width (both
> 0) resize anisotropically; --check_size insists on one size; commits every 1000 records and the
LMDB map doubles when full.

Additions: --min_side (the paper's isotropic rescale), worker processes whose output is identical
to one process (results are written in key order), a seeded shuffle (--seed; NumPy PCG64 keyed by
vgg_caffe.rng.key("convert_imageset", seed): Caffe's shuffle is not reproducible, resume needs it to
be), --resume (LMDB commits are atomic: the lines whose key is not committed are converted, which
gives exactly the records of an uninterrupted run), decoding by content, and a report of every
skipped line (DB.skipped.txt) instead of silent drops. A ROOT that is not a folder, an
--encode_type OpenCV cannot write, and a run that writes no record at all (every line skipped:
the report stays, the empty DB goes) are errors rather than an empty database.
"""
import hashlib
import json
import multiprocessing
import os
import shutil
from dataclasses import asdict, dataclass

from .. import rng
from ..errors import CaffeError
from ..fileio import atomic_write, check_writable
from ..progress import progress_bar
from . import datum as datum_io
from . import image
from .checked import claimed_size, decode_checked, max_pixels  # noqa: F401
from .db import DEFAULT_MAP_SIZE, Writer, committed_keys

META_NAME = "convert_imageset.json"


@dataclass
class Options:
    """Everything that determines the records (stored in the DB's meta file for --resume)."""
    gray: bool = False
    shuffle: bool = False
    seed: int = 0
    resize_height: int = 0
    resize_width: int = 0
    min_side: int = 0
    encoded: bool = False
    encode_type: str = ""
    check_size: bool = False


def read_list(path):
    """([(path, label)], [(line number, text, reason)]): Caffe's parse, split at the last space."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CaffeError(f"{path}: cannot read the list file ({e})") from None
    entries, bad = [], []
    for n, line in enumerate(lines, 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        pos = line.rfind(" ")
        if pos <= 0:
            bad.append((n, line, "no label (expected 'relative/path label')"))
            continue
        name, label = line[:pos], line[pos + 1:]
        try:
            value = int(label)
        except ValueError:
            bad.append((n, line, f"label {label!r} is not an integer"))
            continue
        if not INT32_MIN <= value <= INT32_MAX:
            bad.append((n, line, f"label {value} does not fit Datum's int32 label "
                                 f"([{INT32_MIN}, {INT32_MAX}])"))
            continue
        entries.append((name, value))
    return entries, bad


INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def order(n, opts):
    """Line indices in output order: shuffled with the seeded generator, or as listed."""
    if not opts.shuffle:
        return list(range(n))
    return [int(i) for i in rng.numpy_rng("convert_imageset", opts.seed).permutation(n)]


def make_key(index, path):
    return f"{index:08d}_{path}".encode()


_ALIASES = {"jpg": "jpeg", "jpe": "jpeg", "tif": "tiff"}


def _ext(path):
    base = os.path.basename(path)
    return base.rsplit(".", 1)[1].lower() if "." in base else ""


def _keep_bytes(data, want, opts):
    """Whether an encoded record may keep the file's bytes (Caffe keeps them when the name's
    extension matches the encoding): here the CONTENT must be in the wanted format, and decode
    natively to the requested channel count (a grey JPEG kept in a colour DB would decode to 1
    channel and break batching; a CMYK JPEG decodes differently in OpenCV)."""
    fmt = image.sniff(data)
    if fmt != _ALIASES.get(want, want):
        return False
    channels = 1 if opts.gray else 3
    if fmt == "jpeg":
        return image.jpeg_components(data) == channels
    if fmt == "png" and len(data) > 26:
        depth, color_type = data[24], data[25]
        return depth == 8 and color_type == (0 if opts.gray else 2)
    return False


def convert_one(root, path, label, opts):
    """(value bytes, (C, H, W)) for one list entry; raises image.DecodeError(reason) to skip it."""
    full = os.path.join(root, path)
    try:
        with open(full, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise image.DecodeError("missing file") from None
    except OSError as e:
        raise image.DecodeError(f"cannot read ({e.strerror or e})") from None
    img = decode_checked(data, image.GRAY if opts.gray else image.COLOR)
    size = img.shape
    if opts.resize_height > 0 and opts.resize_width > 0:
        img = image.resize(img, opts.resize_height, opts.resize_width)
    elif opts.min_side > 0:
        h, w = image.min_side_size(img.shape[0], img.shape[1], opts.min_side)
        if h * w > max_pixels():  # a 1 x 100000 strip at --min_side 256 would be 25.6 gigapixels
            raise image.DecodeError(f"rescaling {img.shape[1]}x{img.shape[0]} to smaller side {opts.min_side} "
                                    f"gives {w}x{h} = {w * h:,} pixels, more than OpenCV handles "
                                    f"(CV_IO_MAX_IMAGE_PIXELS = {max_pixels():,})")
        img = image.rescale_min_side(img, opts.min_side)
    resized = img.shape != size  # an image already at the target size keeps its bytes
    shape = (img.shape[2], img.shape[0], img.shape[1])
    if opts.encoded:
        # Caffe guesses the encoding from the file name when --encode_type is not given.
        want = opts.encode_type or _ext(path)
        if not resized and _keep_bytes(data, want, opts):
            d = datum_io.from_encoded(data, label)
        else:
            # --encode_type was checked up front; a file name's extension may be anything.
            ext = want if image.can_write(want, 1 if opts.gray else 3) else "png"
            d = datum_io.from_encoded(image.encode(img, ext), label)
    else:
        d = datum_io.from_image(img, label)
        # Caffe's CVMatToDatum sets encoded: false explicitly, so its raw records end with the
        # two bytes 0x38 0x00 (field 7, varint 0); setting it makes ours byte-identical.
        d.encoded = False
    return d.SerializeToString(), shape


# Worker processes get the job once (initializer), then only (index, path, label) tuples.
_JOB = None


def _init_worker(root, opts):
    global _JOB
    import cv2
    cv2.setNumThreads(1)  # one image per process; no nested thread pools
    _JOB = (root, opts)


def _work(item):
    index, path, label = item
    root, opts = _JOB
    try:
        value, shape = convert_one(root, path, label, opts)
        return index, path, value, shape
    except image.DecodeError as e:
        return index, path, None, str(e)


def _list_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def convert_imageset(root, listfile, db_path, opts, workers=1, resume=False, commit_every=1000,
                     map_size=DEFAULT_MAP_SIZE, progress=True, log=print):
    """Convert; returns a summary dict (written, skipped, skipped_report, map_doublings)."""
    if opts.resize_height < 0 or opts.resize_width < 0 or opts.min_side < 0:
        raise CaffeError("--resize_height, --resize_width and --min_side must be >= 0")
    if opts.resize_height * opts.resize_width > max_pixels():
        raise CaffeError(f"--resize_height {opts.resize_height} --resize_width {opts.resize_width}: "
                         f"{opts.resize_height * opts.resize_width:,} pixels per image, more than OpenCV handles "
                         f"(CV_IO_MAX_IMAGE_PIXELS = {max_pixels():,})")
    if opts.min_side and (opts.resize_height or opts.resize_width):
        raise CaffeError("--min_side (isotropic) and --resize_height/--resize_width (anisotropic) exclude each other")
    if opts.encode_type and not opts.encoded:
        # as Caffe's convert_imageset: a type to encode as implies encoded records
        log("encode_type specified, assuming encoded=true.")
        opts.encoded = True
    if opts.encode_type:
        opts.encode_type = opts.encode_type.lower().lstrip(".")
        channels = 1 if opts.gray else 3
        if not image.can_write(opts.encode_type, channels):
            kind = "grey (--gray)" if opts.gray else "colour"
            raise CaffeError(f"--encode_type {opts.encode_type}: OpenCV cannot write that for {kind} images; "
                             f"valid: {', '.join(image.writable_encodings(channels))}")
    if not os.path.isdir(root):
        what = "not a directory" if os.path.exists(root) else "no such directory"
        raise CaffeError(f"{root}: {what} (ROOT, the folder the list's paths are relative to)")
    entries, bad = read_list(listfile)
    if not entries and not bad:
        raise CaffeError(f"{listfile}: no lines (expected 'relative/path label' lines)")
    meta = {"list": os.path.abspath(listfile), "list_sha256": _list_digest(listfile),
            "root": os.path.abspath(root), "options": asdict(opts)}
    meta_path = os.path.join(db_path, META_NAME)
    if resume and os.path.exists(db_path):
        try:
            with open(meta_path) as f:
                old = json.load(f)
        except (OSError, ValueError):
            raise CaffeError(f"{db_path}: cannot resume: no readable {META_NAME} (not written by this tool?)") from None
        diffs = [k for k in ("list_sha256", "options") if old.get(k) != meta[k]]
        if diffs:
            raise CaffeError(f"{db_path}: cannot resume: the list file or options differ from the interrupted "
                             f"run ({', '.join(diffs)}: was {[old.get(k) for k in diffs]})")
        done = committed_keys(db_path)
        writer = Writer(db_path, commit_every, map_size, create=False)
        created = False
    else:
        done = set()
        check_writable(os.path.join(db_path, "data.mdb"), "database")  # not under a regular file
        writer = Writer(db_path, commit_every, map_size, create=True)
        created = True
        atomic_write(meta_path, json.dumps(meta, indent=1) + "\n")

    todo = []
    for index, line in enumerate(order(len(entries), opts)):
        path, label = entries[line]
        if make_key(index, path) not in done:
            todo.append((index, path, label))
    if done:
        log(f"Resuming: {len(done)} records already committed, {len(todo)} lines to go.")
    if done and opts.check_size:
        # --check_size compares with the first record: take it from what is committed.
        with writer.env.begin() as txn:
            _, value = next(iter(txn.cursor()))
        img = datum_io.to_image(datum_io.parse(value, db_path), image.NATIVE, db_path)
        first_shape = (img.shape[2], img.shape[0], img.shape[1])
    else:
        first_shape = None
    # A tqdm bar on a terminal; elsewhere (or --quiet) Caffe's "Processed N files." every 1000.
    bar = progress_bar(len(todo), progress, desc="convert_imageset", unit="img")
    skipped = []
    count = len(done)
    try:
        if workers > 1:
            pool = multiprocessing.get_context("fork").Pool(workers, _init_worker, (root, opts))
            results = pool.imap(_work, todo, chunksize=4)
        else:
            pool = None
            _init_worker(root, opts)
            results = map(_work, todo)
        try:
            for index, path, value, info in results:
                bar.update()
                if value is None:
                    skipped.append((index, path, info))
                    continue
                if opts.check_size:
                    if first_shape is None:
                        first_shape = info
                    elif info != first_shape:
                        raise CaffeError(f"{path} (key {make_key(index, path).decode()}): size (C,H,W) {info} differs "
                                         f"from the first record's {first_shape} (--check_size)")
                writer.put(make_key(index, path), value)
                count += 1
                if count % 1000 == 0 and bar.disable:
                    log(f"Processed {count} files.")
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
        writer.close()
    except CaffeError as e:
        # A run that cannot finish (--check_size met another size) leaves no partial database
        # behind; an interrupted one (Ctrl-C, kill) keeps its commits for --resume.
        if created:
            writer.env.close()
            shutil.rmtree(db_path, ignore_errors=True)
            raise CaffeError(f"{e}; the partial database {db_path} was removed") from None
        raise
    finally:
        bar.close()
    report = db_path.rstrip("/") + ".skipped.txt"
    lines = [f"list line {n}\t{text}\t{reason}" for n, text, reason in bad]
    lines += [f"{make_key(i, p).decode()}\t{p}\t{reason}" for i, p, reason in skipped]
    if lines:
        atomic_write(report, "".join(x + "\n" for x in lines))
    elif os.path.exists(report):
        os.remove(report)
    if count == 0:
        # Nothing to train on: an error, not an empty database. One this run made goes (so a
        # rerun after fixing ROOT or the list needs no cleanup); the skip report stays.
        if created:
            shutil.rmtree(db_path, ignore_errors=True)
        first = lines[0].replace("\t", ": ")  # where it is, what it says, why it was skipped
        gone = "; the empty database was removed" if created else ""
        raise CaffeError(f"{db_path}: no records written: all {len(lines)} lines of {listfile} were skipped "
                         f"({len(bad)} bad list lines, {len(skipped)} unreadable images; the first: {first}); "
                         f"see {report}{gone}")
    log(f"Processed {count} files ({len(todo) - len(skipped)} in this run).")
    if lines:
        log(f"Skipped {len(lines)} lines ({len(bad)} bad list lines, {len(skipped)} unreadable images); "
            f"see {report}")
    return {"written": count, "skipped": len(lines), "skipped_report": report if lines else None,
            "map_doublings": writer.doublings}
