"""Weight files: the hand-walked wire codec against protobuf's own parser and serializer (V1 and
current format, packed and unpacked floats, double_data), Caffe's HDF5 layout, copying into a
Net with Caffe's shape rules, and a CaffeError for every kind of bad file."""
import os
import struct

import h5py
import numpy as np
import pytest
import torch

import vgg_caffe.io as vgg_io
from vgg_caffe.io import caffemodel as weights
from vgg_caffe.io import wire
from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net
from vgg_caffe.proto import pb

RNG = np.random.default_rng(1234)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# -- files written with protobuf itself (the independent writer) -------------------------------

def current_net():
    """A current-format NetParameter with blobs and a spread of non-blob fields."""
    net = pb.NetParameter(name="cur", force_backward=True)
    net.input_shape.add().dim.extend([1, 3, 6, 6])
    conv = net.layer.add(name="conv1", type="Convolution", bottom=["data"], top=["conv1"])
    conv.param.add(lr_mult=1, decay_mult=1)
    conv.param.add(lr_mult=2, decay_mult=0)
    conv.convolution_param.num_output = 4
    conv.convolution_param.kernel_size.append(3)
    conv.convolution_param.pad.append(1)
    conv.include.add(phase=pb.TEST)
    for shape in ((4, 3, 3, 3), (4,)):
        blob = conv.blobs.add()
        blob.shape.dim.extend(shape)
        blob.data.extend(randn(*shape).ravel())
    net.layer.add(name="relu1", type="ReLU", bottom=["conv1"], top=["conv1"])
    fc = net.layer.add(name="fc", type="InnerProduct", bottom=["conv1"], top=["fc"], loss_weight=[0.5])
    fc.inner_product_param.num_output = 5
    for shape in ((5, 144), (5,)):
        blob = fc.blobs.add()
        blob.shape.dim.extend(shape)
        blob.data.extend(randn(*shape).ravel())
    return net


def v1_net():
    """A V1 NetParameter with legacy 4-d dims (conv weight, (1,1,1,N) bias, (1,1,N,K) fc weight)."""
    net = pb.NetParameter(name="old", input=["data"], input_dim=[1, 3, 6, 6])
    conv = net.layers.add(name="conv1", type=pb.V1LayerParameter.CONVOLUTION, bottom=["data"], top=["conv1"])
    conv.blobs_lr.extend([1, 2])
    conv.weight_decay.extend([1, 0])
    conv.convolution_param.num_output = 4
    conv.convolution_param.kernel_size.append(3)
    conv.convolution_param.pad.append(1)
    for dims in ((4, 3, 3, 3), (1, 1, 1, 4)):
        blob = conv.blobs.add(num=dims[0], channels=dims[1], height=dims[2], width=dims[3])
        blob.data.extend(randn(*dims).ravel())
    net.layers.add(name="relu1", type=pb.V1LayerParameter.RELU, bottom=["conv1"], top=["conv1"])
    fc = net.layers.add(name="fc", type=pb.V1LayerParameter.INNER_PRODUCT, bottom=["conv1"], top=["fc"])
    fc.inner_product_param.num_output = 5
    for dims in ((1, 1, 5, 144), (1, 1, 1, 5)):
        blob = fc.blobs.add(num=dims[0], channels=dims[1], height=dims[2], width=dims[3])
        blob.data.extend(randn(*dims).ravel())
    return net


def save(tmp_path, message, name="w.caffemodel"):
    path = tmp_path / name
    path.write_bytes(message.SerializeToString() if hasattr(message, "SerializeToString") else message)
    return str(path)


def proto_arrays(layer):
    out = []
    for b in layer.blobs:
        values = np.array(b.double_data if len(b.double_data) else b.data)
        out.append(values)
    return out


# -- the codec against protobuf ----------------------------------------------------------------

@pytest.mark.parametrize("make", [current_net, v1_net])
def test_read_agrees_with_protobuf(tmp_path, make):
    net = make()
    path = save(tmp_path, net)
    with weights.Caffemodel(path) as f:
        layers = list(net.layer) or list(net.layers)
        assert list(f.layers) == [l.name for l in layers]
        for layer in layers:
            stored = f.layers[layer.name]
            meta = type(layer)()
            meta.CopyFrom(layer)
            meta.ClearField("blobs")
            assert stored.param == meta                     # every non-blob field, via the schema
            for blob, want in zip(stored.blobs, proto_arrays(layer)):
                np.testing.assert_array_equal(blob.read().ravel(), want.astype(np.float32))
        header = pb.NetParameter()
        header.CopyFrom(net)
        header.ClearField("layer")
        header.ClearField("layers")
        assert f.net == header


@pytest.mark.parametrize("make", [current_net, v1_net])
def test_write_equals_serialize_to_string(tmp_path, make):
    net = make()
    v1 = bool(len(net.layers))
    items = []
    for layer in (net.layers if v1 else net.layer):
        meta = type(layer)()
        meta.CopyFrom(layer)
        meta.ClearField("blobs")
        shapes = [(b.num, b.channels, b.height, b.width) if v1 else tuple(b.shape.dim) for b in layer.blobs]
        items.append((meta, [np.array(b.data, np.float32).reshape(s) for b, s in zip(layer.blobs, shapes)]))
    header = pb.NetParameter()
    header.CopyFrom(net)
    header.ClearField("layer")
    header.ClearField("layers")
    ours = b"".join(bytes(p) for p in wire.net_pieces(header, items, v1=v1))
    assert ours == net.SerializeToString()
    back = pb.NetParameter()
    back.ParseFromString(ours)
    assert back == net


def test_write_weights_v1_legacy_dims_parse_back(tmp_path):
    w, b, fc = randn(4, 3, 3, 3), randn(4), randn(5, 7)
    path = str(tmp_path / "v1.caffemodel")
    weights.write_weights(path, {"conv1": ("Convolution", [w, b]), "fc": ("InnerProduct", [fc])}, v1=True)
    net = pb.NetParameter()
    net.ParseFromString(open(path, "rb").read())
    assert [l.name for l in net.layers] == ["conv1", "fc"] and not len(net.layer)
    bias = net.layers[0].blobs[1]
    assert (bias.num, bias.channels, bias.height, bias.width) == (1, 1, 1, 4)
    fcw = net.layers[1].blobs[0]
    assert (fcw.num, fcw.channels, fcw.height, fcw.width) == (1, 1, 5, 7)
    np.testing.assert_array_equal(np.array(fcw.data, np.float32), fc.ravel())
    got = weights.read_weights(path)
    assert got["fc"][0] == "InnerProduct" and got["fc"][1][0].shape == (5, 7)
    assert got["conv1"][1][1].shape == (4,)
    assert weights.read_weights(path, modern_shapes=False)["conv1"][1][1].shape == (1, 1, 1, 4)


def _tag(number, wire_type):
    return wire._varint_bytes((number << 3) | wire_type)


def _len_field(number, payload):
    return _tag(number, 2) + wire._varint_bytes(len(payload)) + payload


def test_unpacked_split_and_double_data_agree_with_protobuf(tmp_path):
    """Encodings protobuf accepts but never writes for [packed=true]: unpacked floats, a packed
    field split in several runs, double_data. Written here byte by byte, read by both parsers."""
    vals = randn(12)
    unpacked = b"".join(_tag(5, 5) + struct.pack("<f", v) for v in vals[:7])
    split = _len_field(5, vals[7:10].tobytes()) + unpacked + _len_field(5, vals[10:].tobytes())
    dims = _len_field(7, _len_field(1, bytes([12])))
    doubles = RNG.standard_normal(5)
    double_unpacked = b"".join(_tag(8, 1) + struct.pack("<d", v) for v in doubles[:3])
    double_blob = _len_field(8, doubles[3:].tobytes()) + double_unpacked + _len_field(7, _len_field(1, bytes([5])))
    layer = _len_field(1, b"mixed") + _len_field(2, b"Convolution")
    layer += _len_field(7, split + dims) + _len_field(7, double_blob) + _len_field(7, unpacked + dims[:0])
    data = _len_field(100, layer)
    ref = pb.NetParameter()
    ref.ParseFromString(data)
    path = save(tmp_path, data)
    with weights.Caffemodel(path) as f:
        blobs = f.layers["mixed"].blobs
        got = [b.read().ravel() for b in blobs]
    rb = ref.layer[0].blobs
    np.testing.assert_array_equal(got[0], np.array(rb[0].data, np.float32))
    np.testing.assert_array_equal(got[0], np.concatenate([vals[7:10], vals[:7], vals[10:]]))
    np.testing.assert_array_equal(got[1], np.array(rb[1].double_data))
    assert got[1].dtype == np.float64
    np.testing.assert_array_equal(got[2], vals[:7])


def test_double_blob_copies_into_float_net(tmp_path):
    net = Net(tiny_prototxt(), phase="TEST")
    w = RNG.standard_normal((4, 3, 3, 3))
    path = str(tmp_path / "d.caffemodel")
    weights.write_weights(path, {"conv1": ("Convolution", [w, np.zeros(4)]),
                                 "conv2": ("Convolution", [np.ones((2, 4, 1, 1)), np.ones(2)])})
    msg = pb.NetParameter()
    msg.ParseFromString(open(path, "rb").read())
    assert len(msg.layer[0].blobs[0].double_data) == w.size and not len(msg.layer[0].blobs[0].data)
    net.copy_from(path)
    np.testing.assert_array_equal(net.params["conv1"][0].detach().numpy(), w.astype(np.float32))


# -- nets --------------------------------------------------------------------------------------

def tiny_prototxt(extra=""):
    return """
name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 6 dim: 6 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
        convolution_param { num_output: 2 kernel_size: 1 } }
""" + extra


FC = """layer { name: "fc" type: "InnerProduct" bottom: "conv2" top: "fc" inner_product_param { num_output: 5 } }"""


def test_copy_v1_legacy_into_net_and_report(tmp_path):
    src = v1_net()
    src.layers[2].blobs[0].height, src.layers[2].blobs[0].width = 5, 72   # fc takes conv2's 2*6*6
    del src.layers[2].blobs[0].data[:]
    fc_w = randn(5, 72)
    src.layers[2].blobs[0].data.extend(fc_w.ravel())
    path = save(tmp_path, src)
    net = Net(tiny_prototxt(FC), phase="TEST")
    report = net.copy_from(path, strict=False)
    assert report.copied == ["conv1", "fc"] and report.missing == ["conv2"] and report.skipped == []
    conv = src.layers[0]
    np.testing.assert_array_equal(net.params["conv1"][0].detach().numpy().ravel(), np.array(conv.blobs[0].data, np.float32))
    np.testing.assert_array_equal(net.params["conv1"][1].detach().numpy(), np.array(conv.blobs[1].data, np.float32))
    np.testing.assert_array_equal(net.params["fc"][0].detach().numpy(), fc_w)
    with pytest.raises(CaffeError, match=r"conv2.*learnable"):
        net.copy_from(path)                                  # strict: conv2 has nothing in the file


def test_extra_file_layers_are_skipped_and_selective_copy(tmp_path):
    layers = {"conv1": ("Convolution", [randn(4, 3, 3, 3), randn(4)]),
              "conv2": ("Convolution", [randn(2, 4, 1, 1), randn(2)]),
              "conv9": ("Convolution", [randn(1, 1, 1, 1)])}
    path = str(tmp_path / "x.caffemodel")
    weights.write_weights(path, layers)
    net = Net(tiny_prototxt(), phase="TEST")
    report = net.copy_from(path)
    assert report.skipped == ["conv9"] and report.copied == ["conv1", "conv2"] and "conv9" in str(report)
    fresh = Net(tiny_prototxt(), phase="TEST")
    report = fresh.copy_from(path, layers=["conv2"])
    assert report.copied == ["conv2"] and set(report.skipped) == {"conv1", "conv9"}
    assert not fresh.params["conv1"][0].detach().any()
    np.testing.assert_array_equal(fresh.params["conv2"][0].detach().numpy(), layers["conv2"][1][0])
    with pytest.raises(CaffeError, match="conv7"):
        fresh.copy_from(path, layers=["conv7"])


def test_wrong_shape_names_layer_blob_and_shapes_and_leaves_net_unchanged(tmp_path):
    path = str(tmp_path / "bad.caffemodel")
    weights.write_weights(path, {"conv1": ("Convolution", [randn(4, 3, 3, 3), randn(4)]),
                                 "conv2": ("Convolution", [randn(2, 4, 3, 3), randn(2)])})
    net = Net(tiny_prototxt(), phase="TEST")
    with pytest.raises(CaffeError) as e:
        net.copy_from(path)
    msg = str(e.value)
    assert path in msg and "'conv2' blob 0" in msg and "(2, 4, 1, 1)" in msg and "(2, 4, 3, 3)" in msg
    assert not net.params["conv1"][0].detach().any()         # checked before anything was copied


def test_legacy_shape_rule_is_right_aligned():
    blob = weights.CaffemodelBlob(None, wire.BlobRecord((1, 1, 5, 7), True, count=35), "x")
    assert vgg_io.shape_matches((5, 7), blob)
    assert not vgg_io.shape_matches((7, 5), blob)
    assert not vgg_io.shape_matches((1, 5, 7, 1), blob)
    assert vgg_io.shape_matches((1, 1, 5, 7), blob)
    modern = weights.CaffemodelBlob(None, wire.BlobRecord((1, 1, 5, 7), False, count=35), "x")
    assert not vgg_io.shape_matches((5, 7), modern)         # the shape field compares exactly


def test_blob_count_mismatch(tmp_path):
    path = str(tmp_path / "n.caffemodel")
    weights.write_weights(path, {"conv1": ("Convolution", [randn(4, 3, 3, 3)]),
                                 "conv2": ("Convolution", [randn(2, 4, 1, 1), randn(2)])})
    with pytest.raises(CaffeError, match=r"conv1.*1 blob\(s\).*has 2"):
        Net(tiny_prototxt(), phase="TEST").copy_from(path)


def test_weights_of_another_net(tmp_path):
    path = str(tmp_path / "other.caffemodel")
    weights.write_weights(path, {"fc6": ("InnerProduct", [randn(3, 2)]), "fc7": ("InnerProduct", [randn(2, 3)])})
    with pytest.raises(CaffeError, match=r"no layer name matches.*fc6.*conv1"):
        Net(tiny_prototxt(), phase="TEST").copy_from(path, strict=False)


def test_save_net_round_trip_and_opencv_reads_it(tmp_path):
    cv2 = pytest.importorskip("cv2")
    net = Net(tiny_prototxt(), phase="TEST").fill(seed=3)
    for p in net.parameters():
        p.data.normal_()
    path = str(tmp_path / "saved.caffemodel")
    net.save(path)
    msg = pb.NetParameter()
    msg.ParseFromString(open(path, "rb").read())
    assert [l.name for l in msg.layer] == net.layer_names            # every layer, as Net::ToProto
    assert msg.layer[1].convolution_param.num_output == 4
    assert list(msg.layer[1].blobs[0].shape.dim) == [4, 3, 3, 3]
    again = Net(tiny_prototxt(), phase="TEST", weights=path)
    for a, b in zip(net.parameters(), again.parameters()):
        assert torch.equal(a, b)
    # OpenCV's Caffe importer: an independent reader of the same file.
    proto = tmp_path / "tiny.prototxt"
    proto.write_text(tiny_prototxt())
    cvnet = cv2.dnn.readNetFromCaffe(str(proto), path)
    np.testing.assert_array_equal(cvnet.getParam("conv1", 0), net.params["conv1"][0].detach().numpy())
    np.testing.assert_array_equal(cvnet.getParam("conv2", 1).ravel(), net.params["conv2"][1].detach().numpy())
    x = randn(1, 3, 6, 6)
    cvnet.setInput(x)
    ref = cvnet.forward("conv2")
    ours = net(data=torch.from_numpy(x))["conv2"].detach().numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_hdf5_layout_round_trip_and_shared_blob(tmp_path):
    shared = tiny_prototxt("""
layer { name: "conv3" type: "Convolution" bottom: "conv2" top: "conv3" param { name: "w" } param { name: "b" }
        convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "conv4" type: "Convolution" bottom: "conv3" top: "conv4" param { name: "w" } param { name: "b" }
        convolution_param { num_output: 2 kernel_size: 1 } }""")
    net = Net(shared, phase="TEST")
    for p in net.parameters():
        p.data.normal_()
    path = str(tmp_path / "w.h5")
    net.save(path)
    with h5py.File(path, "r") as h5:                 # Caffe's Net::ToHDF5 layout, read with h5py
        assert list(h5["data"]) == sorted(net.layer_names)
        assert list(h5["data/relu1"]) == []
        np.testing.assert_array_equal(h5["data/conv1/0"][()], net.params["conv1"][0].detach().numpy())
        assert h5["data/conv1/1"].shape == (4,)
        assert list(h5["data/conv3"]) == ["0", "1"] and list(h5["data/conv4"]) == []   # owner only
    again = Net(shared, phase="TEST")
    report = again.copy_from(path)
    assert report.copied == ["conv1", "conv2", "conv3"] and not report.missing
    for a, b in zip(net.parameters(), again.parameters()):
        assert torch.equal(a, b)
    got = weights.read_weights(path)
    assert got["conv4"] == ("", []) and got["conv1"][1][1].shape == (4,)


def test_hdf5_errors(tmp_path):
    path = str(tmp_path / "nodata.h5")
    with h5py.File(path, "w") as h5:
        h5.create_group("diff")
    with pytest.raises(CaffeError, match=r"nodata.h5.*no group 'data'"):
        weights.read_weights(path)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("data/conv1/0", data=np.zeros((4, 3, 3, 3), np.float32))
    with pytest.raises(CaffeError, match=r"conv1.*1 blob\(s\).*has 2"):
        Net(tiny_prototxt(), phase="TEST").copy_from(path, strict=False)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("data/conv1/0", data=np.zeros((1, 1, 4, 27), np.float32))
        h5.create_dataset("data/conv1/1", data=np.zeros(4, np.float32))
    with pytest.raises(CaffeError, match=r"'conv1' blob 0: shape mismatch"):
        Net(tiny_prototxt(), phase="TEST").copy_from(path, strict=False)
    bad = tmp_path / "trunc.h5"
    bad.write_bytes(open(path, "rb").read()[:300])
    with pytest.raises(CaffeError, match="trunc.h5"):
        weights.read_weights(str(bad))


# -- bad caffemodels ---------------------------------------------------------------------------

def test_empty_and_missing_file(tmp_path):
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    with pytest.raises(CaffeError, match="empty.caffemodel: the file is empty"):
        weights.read_weights(str(empty))
    with pytest.raises(CaffeError, match="no such file"):
        weights.read_weights(str(tmp_path / "nope.caffemodel"))


@pytest.mark.parametrize("make", [current_net, v1_net])
def test_truncated_anywhere(tmp_path, make):
    """Cut anywhere inside a layer (header, mid-blob): a CaffeError naming the file. A cut that
    falls exactly between two top-level fields leaves a shorter valid message, as protobuf
    agrees; then the layers read are exactly those before the cut."""
    net = make()
    data = net.SerializeToString()
    path = tmp_path / "cut.caffemodel"
    raised = 0
    for cut in sorted(set(range(1, 60)) | set(range(60, len(data), 37)) | {len(data) - 1}):
        path.write_bytes(data[:cut])
        ref = pb.NetParameter()
        try:
            ref.ParseFromString(data[:cut])
        except Exception:
            ref = None
        if ref is None:
            with pytest.raises(CaffeError, match="cut.caffemodel: corrupt or truncated"):
                weights.read_weights(str(path))
            raised += 1
        else:
            got = weights.read_weights(str(path))
            assert list(got) == [l.name for l in (ref.layer or ref.layers)]
    assert raised > 0.9 * len(range(1, len(data), 37))
    blob_start = data.index(struct.pack("<f", (net.layer or net.layers)[0].blobs[0].data[0]))
    path.write_bytes(data[:blob_start + 10])                 # mid-blob
    with pytest.raises(CaffeError, match=r"ends inside layer 'conv1' \(blob 0\).*truncated"):
        weights.read_weights(str(path))


def test_corrupt_varint_and_length_past_end(tmp_path):
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(b"\x0a" + b"\xff" * 11)
    with pytest.raises(CaffeError, match=r"bad.caffemodel.*byte 1.*varint longer than 10 bytes"):
        weights.read_weights(str(path))
    good = current_net().SerializeToString()
    # the first layer's length field (after the header fields) made huge
    pos = good.index(_tag(100, 2))
    path.write_bytes(good[:pos + 2] + wire._varint_bytes(1 << 40) + good[pos + 2:])
    with pytest.raises(CaffeError, match=r"needs 1099511627776 bytes"):
        weights.read_weights(str(path))


def test_bit_flips_never_escape_as_other_errors(tmp_path):
    """Flipping any bit of the structural bytes gives either a file that still parses (protobuf
    agrees) or a CaffeError naming the file, never an exception from inside."""
    data = bytearray(v1_net().SerializeToString())
    path = tmp_path / "flip.caffemodel"
    rng = np.random.default_rng(7)
    positions = list(range(0, 40)) + list(rng.integers(0, len(data), 80))
    errors = 0
    for pos in positions:
        flipped = bytearray(data)
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(flipped))
        try:
            weights.read_weights(str(path))
        except CaffeError as e:
            assert "flip.caffemodel" in str(e)
            errors += 1
    assert errors > 0


def test_data_count_disagreeing_with_shape_is_reported(tmp_path):
    net = current_net()
    del net.layer[0].blobs[1].data[-1]
    path = save(tmp_path, net)
    target = Net(tiny_prototxt(), phase="TEST")
    # One reader, one message: copying into a net and reading the arrays refuse it alike.
    message = r"corrupt caffemodel: layer 'conv1' blob 1: shape \(4,\) needs 4 values but the blob holds 3"
    with pytest.raises(CaffeError, match=message):
        target.copy_from(path, strict=False)
    with pytest.raises(CaffeError, match=message):
        weights.read_weights(path)


def test_v0_layers_are_refused_by_name(tmp_path):
    v0 = _len_field(2, _len_field(1, _len_field(1, b"conv1")))     # layers { layer { name: "conv1" } }
    with pytest.raises(CaffeError, match="V0 format"):
        weights.read_weights(save(tmp_path, v0))


# -- VGG-16 layout -----------------------------------------------------------------------------

def test_vgg16_v1_file_with_legacy_dims_loads_into_generated_net(tmp_path):
    """A V1 file with VGG-16's layer names, types and legacy dims (widths / 16, 32x32 input),
    written with protobuf, loads into the net netgen generates for configuration D."""
    from vgg_caffe.vgg.netgen import Options, deploy_net
    opts = Options(width_div=16, crop=32, num_classes=10, deploy_batch=1)
    deploy = deploy_net("D", opts)
    net = Net(deploy, phase="TEST")
    v1 = pb.NetParameter(name="VGG_ILSVRC_16_layers", input=["data"], input_dim=[10, 3, 224, 224])
    types = {"Convolution": pb.V1LayerParameter.CONVOLUTION, "InnerProduct": pb.V1LayerParameter.INNER_PRODUCT,
             "ReLU": pb.V1LayerParameter.RELU, "Pooling": pb.V1LayerParameter.POOLING,
             "Dropout": pb.V1LayerParameter.DROPOUT, "Softmax": pb.V1LayerParameter.SOFTMAX}
    expected = {}
    for name, layer in zip(net.layer_names, net.layers.values()):
        if layer.type == "Input":
            continue
        l1 = v1.layers.add(name=name, type=types[layer.type], bottom=layer.param.bottom, top=layer.param.top)
        for blob in layer.blobs:
            shape = tuple(blob.shape)
            dims = (1,) * (4 - len(shape)) + shape
            values = randn(*shape)
            expected.setdefault(name, []).append(values)
            l1.blobs.add(num=dims[0], channels=dims[1], height=dims[2], width=dims[3]).data.extend(values.ravel())
    names = [l.name for l in v1.layers]
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"] and names[-3:] == ["drop7", "fc8", "prob"]
    path = save(tmp_path, v1, "VGG_ILSVRC_16_layers.caffemodel")
    report = net.copy_from(path)
    assert len(report.copied) == 16 and not report.missing and not report.skipped
    for name, arrays in expected.items():
        for param, want in zip(net.params[name], arrays):
            np.testing.assert_array_equal(param.detach().numpy(), want)
    read = weights.read_weights(path)
    assert read["fc6"][1][0].shape == expected["fc6"][0].shape and read["fc8"][1][1].ndim == 1


def test_copy_into_a_double_net_takes_the_conversion_path(tmp_path):
    """Parameters that cannot be filled straight from the file (float64 here; GPU tensors alike)
    get the values through a host array."""
    w, b = randn(4, 3, 3, 3), randn(4)
    path = str(tmp_path / "f.caffemodel")
    weights.write_weights(path, {"conv1": ("Convolution", [w, b]),
                                 "conv2": ("Convolution", [randn(2, 4, 1, 1), randn(2)])})
    net = Net(tiny_prototxt(), phase="TEST").double()
    net.copy_from(path)
    assert net.params["conv1"][0].dtype == torch.float64
    np.testing.assert_array_equal(net.params["conv1"][0].detach().numpy(), w.astype(np.float64))
    np.testing.assert_array_equal(net.params["conv1"][1].detach().numpy(), b.astype(np.float64))


# -- files of another kind given as weights ----------------------------------------------------

def _tiny_weights(tmp_path):
    w = {"conv1": ("Convolution", [randn(4, 3, 3, 3), randn(4)]),
         "conv2": ("Convolution", [randn(2, 4, 1, 1), randn(2)])}
    path = str(tmp_path / "tiny.caffemodel")
    weights.write_weights(path, w)
    return path, w


@pytest.mark.parametrize("suffix,kind", [(".safetensors", "safetensors"), (".pth", "PyTorch"), (".pt", "PyTorch")])
def test_state_dict_given_as_weights_is_named_with_the_conversion(tmp_path, suffix, kind):
    """A safetensors or torch.save (zip) file is refused before parsing, saying what it is and
    the conversion; that conversion then loads, with the same values."""
    from vgg_caffe.io import convert as weights_convert
    src, w = _tiny_weights(tmp_path)
    sd = str(tmp_path / f"tiny{suffix}")
    weights_convert.convert(src, sd)
    head = open(sd, "rb").read(9)
    assert head[8:9] == b"{" if kind == "safetensors" else head[:4] == b"PK\x03\x04"
    msg = (rf"tiny{suffix} is a {kind} file, not a \.caffemodel or Caffe HDF5 file; convert it with "
           rf"tools/convert_caffemodel\.py .*tiny{suffix} OUT\.caffemodel$")
    net = Net(tiny_prototxt(), phase="TEST")
    before = [p.detach().clone() for p in net.params["conv1"]]
    with pytest.raises(CaffeError, match=msg):
        weights.read_weights(sd)
    with pytest.raises(CaffeError, match=msg):
        net.copy_from(sd)
    assert all(torch.equal(a, b) for a, b in zip(before, net.params["conv1"]))
    back = str(tmp_path / "back.caffemodel")
    weights_convert.convert(sd, back)
    net.copy_from(back)
    np.testing.assert_array_equal(net.params["conv1"][0].detach().numpy(), w["conv1"][1][0])


def test_foreign_content_under_a_caffemodel_name(tmp_path):
    """Detected by content whatever the name: safetensors, zip and legacy-pickle torch files,
    with a hint to rename them (the converter goes by suffix)."""
    from safetensors.numpy import save_file
    st = tmp_path / "st.caffemodel"
    save_file({"conv1.0": randn(2, 3)}, str(st))
    with pytest.raises(CaffeError, match=r"st\.caffemodel is a safetensors file.*give it a \.safetensors name"):
        weights.read_weights(str(st))
    zipped = tmp_path / "zip.caffemodel"
    torch.save({"conv1.0": torch.zeros(2)}, str(zipped))
    with pytest.raises(CaffeError, match=r"zip\.caffemodel is a PyTorch file.*give it a \.pth name"):
        weights.read_weights(str(zipped))
    legacy = tmp_path / "legacy.caffemodel"
    torch.save({"conv1.0": torch.zeros(2)}, str(legacy), _use_new_zipfile_serialization=False)
    assert legacy.read_bytes()[:1] == b"\x80"
    with pytest.raises(CaffeError, match=r"legacy\.caffemodel is a PyTorch file"):
        weights.read_weights(str(legacy))


@pytest.mark.parametrize("name,iteration", [("snap_iter_5.solverstate", 5), ("renamed.caffemodel", 5),
                                            ("zero_iter.caffemodel", 0), ("snap_iter_5.solverstate.h5", 5)])
def test_solverstate_given_as_weights(tmp_path, name, iteration):
    """A solverstate (binary, by suffix or by content: iter as field 1, or learned_net's file
    name when iter is 0; or HDF5) is named as such, not 'corrupt caffemodel at byte 2'."""
    from vgg_caffe.io import solverstate
    path = str(tmp_path / name)
    state = pb.SolverState(iter=iteration, learned_net=str(tmp_path / "snap_iter_5.caffemodel"))
    solverstate.write(path, state, [randn(4, 3, 3, 3), randn(4)])
    net = Net(tiny_prototxt(), phase="TEST")
    msg = rf"{name} is (a|an HDF5) \.solverstate .*not .*weights.*solve --snapshot"
    with pytest.raises(CaffeError, match=msg):
        weights.read_weights(path)
    with pytest.raises(CaffeError, match=msg):
        net.copy_from(path)


@pytest.mark.parametrize("make", [current_net, v1_net])
def test_real_caffemodels_are_not_taken_for_foreign_files(tmp_path, make):
    net = make()
    for name in ("m.caffemodel", "m.bin", "m"):
        got = weights.read_weights(save(tmp_path, net, name))
        assert list(got) == [l.name for l in (net.layer or net.layers)]
