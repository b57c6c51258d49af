"""The protobuf wire format of Caffe's messages: field numbers, wire types and the encoders.

Writing emits fields in field-number order, as protobuf's serializer does, so the bytes equal
SerializeToString of the same message, with float data written from the array's own buffer
(no copy into a repeated field). vgg_caffe.io.wire walks the same format for reading.
"""
import numpy as np


# Field numbers of NetParameter, (V1)LayerParameter, BlobProto and BlobShape in Caffe's schema.
NET_LAYERS_V1, NET_LAYER = 2, 100
V1_BLOBS, LAYER_BLOBS = 6, 7
V0_LAYER = 1          # V1LayerParameter.layer: the V0 format nested inside
BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH = 1, 2, 3, 4
BLOB_DATA, BLOB_DIFF, BLOB_SHAPE, BLOB_DOUBLE_DATA, BLOB_DOUBLE_DIFF = 5, 6, 7, 8, 9
SHAPE_DIM = 1
LEGACY_FIELDS = {BLOB_NUM: 0, BLOB_CHANNELS: 1, BLOB_HEIGHT: 2, BLOB_WIDTH: 3}

VARINT, FIXED64, LENGTH, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5

F32, F64 = np.dtype("<f4"), np.dtype("<f8")


def _varint_bytes(value):
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _tag(number, wire):
    return _varint_bytes((number << 3) | wire)


def length_field(number, size):
    """The tag and length of a length-delimited field `number` whose payload is `size` bytes."""
    return _tag(number, LENGTH) + _varint_bytes(size)


def blob_header(shape, nbytes, legacy=False, double=False, shape_first=False):
    """Bytes of a BlobProto up to its data (exclusive), and the bytes after it.

    Field order is protobuf's: num, channels, height, width (1-4), data (5), shape (7) /
    double_data (8). Returns (before, after) with the data tag and length inside `before`.
    shape_first puts shape (7) before data (the order our .solverstate files have always had;
    protobuf parses either), leaving `after` empty."""
    before = bytearray()
    after = bytearray()
    shape = tuple(int(d) for d in shape)
    if legacy:
        dims = (1,) * (4 - len(shape)) + shape
        for number, d in zip((BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH), dims):
            before += _tag(number, VARINT) + _varint_bytes(d)
    data_field = BLOB_DOUBLE_DATA if double else BLOB_DATA
    shape_bytes = b""
    if not legacy:
        packed = b"".join(_varint_bytes(d) for d in shape)
        inner = (length_field(SHAPE_DIM, len(packed)) + packed) if shape else b""
        shape_bytes = length_field(BLOB_SHAPE, len(inner)) + inner
    data_head = length_field(data_field, nbytes) if nbytes else b""
    if data_field < BLOB_SHAPE and not shape_first:
        before += data_head
        after += shape_bytes
    else:
        before += shape_bytes + data_head
    return bytes(before), bytes(after)


def split_message(message, at):
    """Serialize `message` as two byte strings: the fields numbered below `at` and those above.

    Protobuf writes known fields in number order, so a repeated field numbered `at` written
    between the two gives the bytes SerializeToString would."""
    low = type(message)()
    high = type(message)()
    for fd, value in message.ListFields():
        if fd.number == at:
            continue
        target = low if fd.number < at else high
        if _repeated(fd):
            getattr(target, fd.name).extend(value)
        elif fd.type == fd.TYPE_MESSAGE:
            getattr(target, fd.name).CopyFrom(value)
        else:
            setattr(target, fd.name, value)
    return low.SerializeToString(), high.SerializeToString()


def legacy_ok(shape):
    return len(shape) <= 4


def blob_pieces(array, legacy=False, shape_first=False):
    """(header bytes, data buffer, trailer bytes) of one BlobProto for `array` (float32 or float64);
    `shape_first` as in blob_header."""
    double = array.dtype == np.float64
    # ascontiguousarray makes a 0-d array 1-d: keep the blob's own shape (a shared PReLU slope is 0-d).
    array = np.ascontiguousarray(array, dtype=F64 if double else F32).reshape(np.shape(array))
    before, after = blob_header(array.shape, array.nbytes, legacy and legacy_ok(array.shape), double,
                                shape_first)
    data = memoryview(array.reshape(-1)).cast("B") if array.size else b""
    return before, data, after


def layer_pieces(param, arrays, v1):
    """The pieces of one layer field of the NetParameter: a list of bytes/buffers whose
    concatenation is the field (tag, length, content)."""
    blob_field = V1_BLOBS if v1 else LAYER_BLOBS
    low, high = split_message(param, blob_field)
    body = [low]
    for a in arrays:
        before, data, after = blob_pieces(a, legacy=v1)
        size = len(before) + len(data) + len(after)
        body += [length_field(blob_field, size) + before, data, after]
    body.append(high)
    length = sum(len(p) for p in body)
    return [length_field(NET_LAYERS_V1 if v1 else NET_LAYER, length)] + body


def net_pieces(header, layers, v1=False):
    """Pieces of a whole NetParameter: `header` (a NetParameter without layers) and
    [(LayerParameter or V1LayerParameter, [arrays])]. Header fields numbered below the layer
    field come first, the rest after, as protobuf orders them."""
    low, high = split_message(header, NET_LAYERS_V1 if v1 else NET_LAYER)
    pieces = [low]
    for param, arrays in layers:
        pieces += layer_pieces(param, arrays, v1)
    pieces.append(high)
    return pieces



def _repeated(fd):
    # protobuf >= 5 has is_repeated and deprecates label
    flag = getattr(fd, "is_repeated", None)
    return flag if isinstance(flag, bool) else fd.label == fd.LABEL_REPEATED
