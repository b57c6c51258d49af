"""Walking protobuf's wire format, and one BlobProto read where it lies (vgg_caffe.io.wire's core).

Reader walks the fields of a message in a memoryview of the mapped file: varints, length-
delimited payloads and fixed-size values, with every error naming the file, the byte offset and
the part being read. read_blob walks one BlobProto and returns a BlobRecord that says where its
values lie -- for the usual single packed `data` field, an offset and a count into the file, so
the floats are read straight into their final buffer -- or, for split runs, unpacked repeated
floats and double_data, the decoded array (Caffe's FromProto takes double_data when present).
Shapes come from BlobShape or the legacy num/channels/height/width, and a blob whose values do
not fill its shape is refused. Used for .caffemodel layers (wire.py) and .solverstate history
(solverstate.py).
"""
from dataclasses import dataclass

import numpy as np

from ..errors import CaffeError
from .checks import blob_problem
from .wire_encode import (BLOB_DATA, BLOB_DOUBLE_DATA, BLOB_SHAPE, F32, F64, FIXED32, FIXED64, LEGACY_FIELDS,
                          LENGTH, SHAPE_DIM, VARINT)


@dataclass
class BlobRecord:
    """One BlobProto of the file: its shape and where its values are.

    shape: the dims of `shape` (BlobShape) or, for legacy blobs, (num, channels, height, width).
    legacy: True when num/channels/height/width were present (Caffe then compares right-aligned).
    Values are either `count` elements of `dtype` at byte `offset` of the file (one packed field,
    the fast case) or `array`, already decoded (split or unpacked fields, double_data).
    """
    shape: tuple
    legacy: bool
    dtype: np.dtype = F32
    offset: int = -1
    count: int = 0
    array: np.ndarray = None

    @property
    def nbytes(self):
        return self.count * self.dtype.itemsize

    def values(self, buf):
        """The values as a flat array: a zero-copy view of `buf` (the bytes the record was read
        from) in the packed case, else the decoded `array`."""
        if self.array is not None:
            return self.array
        return np.frombuffer(buf, self.dtype, count=self.count, offset=self.offset)


class Reader:
    """Walks the bytes `buf` (a memoryview of the mapped file); errors name `source`.

    Errors read "SOURCE: PROBLEM at byte N (reading CONTEXT): DETAIL"; `problem` names the kind of
    file, `context` (set by the caller as it goes) the part being read."""

    def __init__(self, buf, source, problem="corrupt or truncated caffemodel", context="the net"):
        self.buf = buf
        self.source = source
        self.problem = problem
        self.context = context

    def fail(self, pos, what):
        raise CaffeError(f"{self.source}: {self.problem} at byte {pos} "
                         f"(reading {self.context}): {what}")

    def varint(self, pos, end):
        result = shift = 0
        buf = self.buf
        start = pos
        while True:
            if pos >= end:
                self.fail(start, "a varint runs past the end of its message")
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result, pos
            shift += 7
            if shift >= 70:
                self.fail(start, "a varint longer than 10 bytes")

    def field(self, pos, end):
        """Read the field at `pos`: (number, wire type, value start, value end, varint value).

        The value is the integer for varints, None otherwise ([start, end) delimits the payload)."""
        tag_pos = pos
        tag, pos = self.varint(pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            self.fail(tag_pos, "field number 0")
        if wire == VARINT:
            value, nxt = self.varint(pos, end)
            return number, wire, pos, nxt, value
        if wire == LENGTH:
            length, pos = self.varint(pos, end)
            if pos + length > end:
                self.fail(tag_pos, f"field {number} claims {length} bytes, only {end - pos} remain")
            return number, wire, pos, pos + length, None
        if wire in (FIXED32, FIXED64):
            size = 4 if wire == FIXED32 else 8
            if pos + size > end:
                self.fail(tag_pos, f"field {number} ({size}-byte value) runs past the end")
            return number, wire, pos, pos + size, None
        self.fail(tag_pos, f"field {number} has wire type {wire}, which Caffe's schema never uses")

    def fields(self, pos, end):
        """Yield every field of [pos, end) as `field` returns it."""
        while pos < end:
            f = self.field(pos, end)
            yield f
            pos = f[3]


def read_blob(r, start, stop):
    """The BlobProto at [start, stop) of `r.buf` as a BlobRecord (offsets into `r.buf`)."""
    legacy = [None] * 4
    shape = None
    chunks = []          # (dtype, offset, count) of packed runs, or (dtype, None, decoded array)
    pos = start
    while pos < stop:
        number, wire, s, e, value = r.field(pos, stop)
        pos = e
        if number in LEGACY_FIELDS and wire == VARINT:
            legacy[LEGACY_FIELDS[number]] = _int32(value)
        elif number == BLOB_SHAPE and wire == LENGTH:
            shape = tuple(_read_dims(r, s, e))
        elif number in (BLOB_DATA, BLOB_DOUBLE_DATA):
            dtype = F32 if number == BLOB_DATA else F64
            if wire == LENGTH:
                if (e - s) % dtype.itemsize:
                    r.fail(s, f"packed {'data' if dtype is F32 else 'double_data'} of {e - s} bytes "
                              f"is not a whole number of {dtype.itemsize}-byte values")
                chunks.append((dtype, s, (e - s) // dtype.itemsize))
            elif wire == (FIXED32 if dtype is F32 else FIXED64):
                values, pos = _unpacked_run(r, s - 1, dtype, stop)
                chunks.append((dtype, None, values))
            else:
                r.fail(s, f"field {number} of a BlobProto with wire type {wire}")
        # diff / double_diff are gradients, not weights (Caffe's FromProto skips them when
        # loading too); fields unknown to the schema are skipped, as protobuf does.
    is_legacy = any(v is not None for v in legacy)
    if is_legacy:
        shape = tuple(v or 0 for v in legacy)
    elif shape is None:
        shape = ()
    record = _merge_chunks(r, chunks, shape)
    record.legacy = is_legacy
    problem = blob_problem(shape, record.count)
    if problem:
        raise CaffeError(f"{r.source}: corrupt caffemodel: {r.context}: {problem}")
    return record


def _int32(value):
    return value - (1 << 64) if value >= 1 << 63 else value


def _read_dims(r, start, stop):
    dims = []
    for number, wire, s, e, value in r.fields(start, stop):
        if number != SHAPE_DIM:
            continue
        if wire == VARINT:
            dims.append(_int32(value))
        elif wire == LENGTH:  # packed
            pos = s
            while pos < e:
                v, pos = r.varint(pos, e)
                dims.append(_int32(v))
        else:
            r.fail(s, f"BlobShape.dim with wire type {wire}")
    return dims


def _unpacked_run(r, first, dtype, stop):
    """Decode a run of unpacked repeated float (double) fields whose first tag is at `first`.

    Each element is a one-byte tag and 4 (8) bytes, so a run is a strided array: numpy finds how
    far the tag repeats and takes all the values at once, instead of a Python loop per float.
    Returns (values, position after the run)."""
    rec = dtype.itemsize + 1
    tag = r.buf[first]
    avail = (stop - first) // rec
    raw = np.frombuffer(r.buf, np.uint8, count=avail * rec, offset=first).reshape(avail, rec)
    mismatch = np.flatnonzero(raw[:, 0] != tag)
    n = int(mismatch[0]) if mismatch.size else avail
    values = raw[:n, 1:].copy().view(dtype).reshape(n)
    return values, first + n * rec


def _merge_chunks(r, chunks, shape):
    if not chunks:
        return BlobRecord(shape, False, F32, -1, 0, np.zeros(0, F32))
    if len(chunks) == 1 and chunks[0][1] is not None:
        dtype, offset, count = chunks[0]
        return BlobRecord(shape, False, dtype, offset, count)
    # Several runs (protobuf concatenates a repeated field's occurrences) or decoded ones:
    # materialise. Caffe's FromProto takes double_data when present, else data.
    doubles = [c for c in chunks if c[0] is F64]
    use = doubles if doubles else chunks
    parts = [np.frombuffer(r.buf, dt, count=p, offset=o) if o is not None else p for dt, o, p in use]
    array = np.concatenate(parts) if len(parts) > 1 else np.array(parts[0])
    return BlobRecord(shape, False, array.dtype, -1, array.size, array)
