"""What makes a stored blob or a stored name damaged, decided in one place for every reader.

Caffe's Blob::FromProto refuses a blob with more than 32 axes, a negative dimension, or a value
count other than the product of its dims (num/channels/height/width for legacy blobs, else the
BlobShape); its strings are UTF-8. A .caffemodel is read two ways here: walked on the wire
(vgg_caffe.io.wire: read_weights, Net.copy_from, convert_caffemodel) and parsed whole by protobuf
when it is given as the *model* (Net("x.caffemodel"), info, time). Both ask blob_problem and
text_problem, so the same damaged file gets the same error, naming the file, the layer and the
blob, from every entry point.
"""
import math

from ..errors import CaffeError

MAX_BLOB_AXES = 32   # Caffe's kMaxBlobAxes
_LEGACY = ("num", "channels", "height", "width")


def blob_problem(shape, count):
    """What Caffe would refuse in a stored blob of `shape` (the BlobShape dims, or the legacy
    (num, channels, height, width)) holding `count` values, as a phrase; None if nothing. A blob
    without any shape is taken as a flat run of its values."""
    shape = tuple(int(d) for d in shape)
    if len(shape) > MAX_BLOB_AXES:
        return f"{len(shape)} axes; Caffe allows at most {MAX_BLOB_AXES}"
    negative = [d for d in shape if d < 0]
    if negative:
        return f"shape {shape} has a negative dimension ({negative[0]})"
    if shape and math.prod(shape) != count:
        return f"shape {shape} needs {math.prod(shape):,} values but the blob holds {count:,}"
    return None


def non_utf8_field(message, prefix="", skip=()):
    """(field path, raw bytes) of the first string field of `message` (blobs and the fields named
    in `skip` aside) that is not UTF-8, else None. protobuf's upb hands such a proto2 string back
    as bytes."""
    for fd, value in message.ListFields():
        if fd.name in skip:
            continue
        repeated = _is_repeated(fd)
        if fd.type == fd.TYPE_STRING:
            for k, v in enumerate(value if repeated else [value]):
                if isinstance(v, bytes):
                    return prefix + fd.name + (f"[{k}]" if repeated else ""), v
        elif fd.type == fd.TYPE_MESSAGE and fd.message_type.name != "BlobProto":
            for k, m in enumerate(value if repeated else [value]):
                found = non_utf8_field(m, prefix + fd.name + (f"[{k}]" if repeated else "") + ".")
                if found:
                    return found
    return None


def text_problem(message, what, skip=()):
    """The phrase for a non-UTF-8 string in `message` (`what` names it: "layer #3"), or None."""
    found = non_utf8_field(message, skip=skip)
    if found is None:
        return None
    path, raw = found
    return f"{what}: {path} is not UTF-8 text ({bytes(raw[:40])!r}); Caffe's strings are UTF-8"


def check_stored_blobs(net, source):
    """Raise the readers' error for a NetParameter parsed whole (layers and V1 layers) whose names
    are not UTF-8 or whose blobs are damaged; a net without blobs costs one pass over its fields."""
    problem = text_problem(net, "the net", skip=("layer", "layers"))
    if problem:
        raise CaffeError(f"{source}: corrupt caffemodel: {problem}")
    for kind in ("layers", "layer"):
        for i, layer in enumerate(getattr(net, kind)):
            problem = text_problem(layer, f"layer #{i}")
            if problem:
                raise CaffeError(f"{source}: corrupt caffemodel: {problem}")
            for j, blob in enumerate(layer.blobs):
                legacy = any(blob.HasField(f) for f in _LEGACY)
                shape = tuple(getattr(blob, f) for f in _LEGACY) if legacy else tuple(blob.shape.dim)
                problem = blob_problem(shape, len(blob.double_data) or len(blob.data))
                if problem:
                    raise CaffeError(f"{source}: corrupt caffemodel: layer '{layer.name}' blob {j}: {problem}")


def _is_repeated(fd):
    flag = getattr(fd, "is_repeated", None)
    return flag if isinstance(flag, bool) else fd.label == fd.LABEL_REPEATED
