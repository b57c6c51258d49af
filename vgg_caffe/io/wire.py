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

The same primitives (Reader and read_blob of vgg_caffe.io.wire_blob, blob_pieces and length_field
of wire_encode) read and write the history blobs of a binary .solverstate (solverstate.py): one
codec for both files.
"""
from dataclasses import dataclass, field

from ..errors import CaffeError
from ..proto import V1_TYPE_NAMES, pb
from .checks import text_problem
# The constants and the encoders live in wire_encode; re-exported so `wire.X` names the codec.
from .wire_encode import (BLOB_CHANNELS, BLOB_DATA, BLOB_DIFF, BLOB_DOUBLE_DATA, BLOB_DOUBLE_DIFF,  # noqa: F401
                          BLOB_HEIGHT, BLOB_NUM, BLOB_SHAPE, BLOB_WIDTH, END_GROUP, F32, F64, FIXED32, FIXED64,
                          LAYER_BLOBS, LEGACY_FIELDS, LENGTH, NET_LAYER, NET_LAYERS_V1, SHAPE_DIM, START_GROUP,
                          V0_LAYER, V1_BLOBS, VARINT, _tag, _varint_bytes, blob_header, blob_pieces,
                          layer_pieces, legacy_ok, length_field, net_pieces, split_message)
# The walker and the blob reader live in wire_blob (solverstate.py reads its history with them).
from .wire_blob import BlobRecord, Reader, read_blob  # noqa: F401


@dataclass
class LayerRecord:
    """One layer of the file: its name, type string, the non-blob fields and the blob records."""
    name: str
    type: str
    param: object            # LayerParameter or V1LayerParameter, without blobs
    blobs: list = field(default_factory=list)
    v1: bool = False


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


def _check_text(message, source, what):
    problem = text_problem(message, what)
    if problem:
        raise CaffeError(f"{source}: corrupt caffemodel: {problem}")
