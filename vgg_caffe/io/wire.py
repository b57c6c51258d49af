"""The protobuf wire format of a .caffemodel, walked and written by hand for speed.

A .caffemodel is one binary NetParameter (Caffe's Net::ToProto + WriteProtoToBinaryFile): the
layers in `layers` (field 2, V1LayerParameter, blobs at field 6, legacy 4-d num/channels/height/
width) or `layer` (field 100, LayerParameter, blobs at field 7, BlobShape), each blob's floats in
one packed `data` field. The released VGG-16 file is 553 MB, nearly all of it those packed floats.

Protobuf's own parser would copy every float into a repeated field (and refuses messages past
2 GB). Here the top level and the blobs are walked on the wire: each blob becomes a BlobRecord that
says where its floats lie in the file (offset, count, dtype), so callers read them straight into
their final buffer (numpy or a torch parameter) with one pread. The small rest of each layer
(name, type, bottoms, parameters) is parsed with the real schema, so names and types come from
our caffe.proto. Unpacked repeated floats and double_data are decoded too (vectorised where the
encoding allows); corrupt or truncated input raises CaffeError naming the file, the byte offset
and the layer and blob being read.

Writing is the reverse (vgg_caffe.io.wire_encode).

The same primitives (Reader, read_blob, blob_pieces, length_field) read and write the history
blobs of a binary .solverstate (solverstate.py): one codec for both files.
"""
from dataclasses import dataclass, field

import numpy as np

from ..errors import CaffeError
from ..proto import V1_TYPE_NAMES, pb
from .checks import blob_problem, text_problem
# The constants and the encoders live in wire_encode; re-exported so `wire.X` names the codec.
from .wire_encode import (BLOB_CHANNELS, BLOB_DATA, BLOB_DIFF, BLOB_DOUBLE_DATA, BLOB_DOUBLE_DIFF,  # noqa: F401
                          BLOB_HEIGHT, BLOB_NUM, BLOB_SHAPE, BLOB_WIDTH, END_GROUP, F32, F64, FIXED32, FIXED64,
                          LAYER_BLOBS, LEGACY_FIELDS, LENGTH, NET_LAYER, NET_LAYERS_V1, SHAPE_DIM, START_GROUP,
                          V0_LAYER, V1_BLOBS, VARINT, _tag, _varint_bytes, blob_header, blob_pieces,
                          layer_pieces, legacy_ok, length_field, net_pieces, split_message)


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


@dataclass
class LayerRecord:
    """One layer of the file: its name, type string, the non-blob fields and the blob records."""
    name: str
    type: str
    param: object            # LayerParameter or V1LayerParameter, without blobs
    blobs: list = field(default_factory=list)
    v1: bool = False


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------

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


def read_layers(buf, source):
    """Walk a NetParameter in `buf`; return (header NetParameter without layers, [LayerRecord])."""
    r = Reader(buf, source)
    end = len(buf)
    header = bytearray()
    layers = []
    pos = 0
    while pos < end:
        try:
            number, wire, start, stop, _ = r.field(pos, end)
        except CaffeError:
            _explain_truncated_layer(r, pos, len(layers))
            raise
        pos = stop
        if number in (NET_LAYERS_V1, NET_LAYER) and wire == LENGTH:
            layers.append(_read_layer(r, start, stop, v1=number == NET_LAYERS_V1, index=len(layers)))
        else:
            header += _raw_field(r, number, wire, start, stop)
    net = pb.NetParameter()
    _parse(net, bytes(header), source, "the net's header fields")
    _check_text(net, source, "the net")
    if any(l.v1 for l in layers) and any(not l.v1 for l in layers):
        raise CaffeError(f"{source}: the net mixes `layer` (current format) and `layers` (V1); use one")
    return net, layers


def _explain_truncated_layer(r, pos, index):
    """A layer running past the end of the file: walk what is there, so the error names the layer
    and the blob where the file stops (when the cut falls inside one)."""
    end = len(r.buf)
    try:
        tag, p = r.varint(pos, end)
        length, p = r.varint(p, end)
    except CaffeError:
        return
    if tag not in ((NET_LAYER << 3) | LENGTH, (NET_LAYERS_V1 << 3) | LENGTH) or p + length <= end:
        return
    blob_field = V1_BLOBS if tag >> 3 == NET_LAYERS_V1 else LAYER_BLOBS
    rest, blobs, cut = bytearray(), 0, "its fields"
    q = p
    while q < end:
        try:
            number, wire, s, e, _ = r.field(q, end)
        except CaffeError:
            if (r.buf[q] >> 3) == blob_field:
                cut = f"blob {blobs}"
            break
        q = e
        if number == blob_field and wire == LENGTH:
            blobs += 1
        else:
            rest += _raw_field(r, number, wire, s, e)
    param = pb.V1LayerParameter() if blob_field == V1_BLOBS else pb.LayerParameter()
    try:
        param.ParseFromString(bytes(rest))
    except Exception:
        pass
    name = f"layer '{param.name}'" if param.name else f"layer #{index}"
    r.context = "the net"
    r.fail(pos, f"the file ends inside {name} ({cut}): {name} needs {length} bytes, "
                f"the file has {end - p}: it is truncated (or that length is corrupt)")


def _raw_field(r, number, wire, start, stop):
    """Re-encode one field's tag and payload (used for the small non-blob parts)."""
    tag = _varint_bytes((number << 3) | wire)
    if wire == LENGTH:
        return tag + _varint_bytes(stop - start) + bytes(r.buf[start:stop])
    return tag + bytes(r.buf[start:stop]) if wire != VARINT else tag + _varint_bytes(_value_at(r, start, stop))


def _value_at(r, start, stop):
    value, _ = r.varint(start, stop)
    return value


def _parse(message, data, source, what):
    try:
        message.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError, or ValueError for bad UTF-8 in a string
        raise CaffeError(f"{source}: corrupt caffemodel: {what} do not parse as "
                         f"{message.DESCRIPTOR.name} ({e})") from None


def _read_layer(r, start, stop, v1, index):
    blob_field = V1_BLOBS if v1 else LAYER_BLOBS
    r.context = f"layer #{index}"
    rest = bytearray()
    spans = []
    for number, wire, s, e, _ in r.fields(start, stop):
        if number == blob_field and wire == LENGTH:
            spans.append((s, e))
        elif v1 and number == V0_LAYER:
            raise CaffeError(f"{r.source}: layer #{index} is in Caffe's V0 format (`layers {{ layer {{ ... }} }}`, "
                             "before 2014), which is not supported; upgrade the file with Caffe's "
                             "upgrade_net_proto_binary first")
        else:
            rest += _raw_field(r, number, wire, s, e)
    param = pb.V1LayerParameter() if v1 else pb.LayerParameter()
    _parse(param, bytes(rest), r.source, f"the fields of layer #{index}")
    _check_text(param, r.source, f"layer #{index}")
    if v1:
        if param.HasField("type"):
            enum = pb.V1LayerParameter.LayerType.Name(param.type)
            type_name = V1_TYPE_NAMES.get(enum, enum)
        else:
            type_name = ""
    else:
        type_name = param.type
    name = param.name
    r.context = f"layer '{name}'"
    blobs = []
    for j, (s, e) in enumerate(spans):
        r.context = f"layer '{name}' blob {j}"
        blobs.append(read_blob(r, s, e))
    r.context = "the net"
    return LayerRecord(name, type_name, param, blobs, v1)


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


def _check_text(message, source, what):
    problem = text_problem(message, what)
    if problem:
        raise CaffeError(f"{source}: corrupt caffemodel: {problem}")



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

