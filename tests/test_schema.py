"""caffe_pb2.py cannot drift from caffe.proto, and the schema has Caffe's wire numbers (CAFFE.md §1).

The committed module is compared with a fresh protoc run as a FileDescriptorProto (the serialized
descriptor), not as text, so the protoc / grpcio-tools version does not matter. The tables below
are written from CAFFE.md §1 (upstream caffe.proto), independently of our schema file.
"""
import os
import struct

import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from vgg_caffe.proto import pb

PROTO_DIR = os.path.join(os.path.dirname(pb.__file__))


def compile_descriptor(proto_dir, tmp_path):
    out = tmp_path / "caffe.desc"
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"--descriptor_set_out={out}", "caffe.proto"])
    assert rc == 0, "protoc failed on caffe.proto"
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    assert len(files) == 1
    return _without_json_names(files[0])


def committed_descriptor():
    return _without_json_names(descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb))


def _without_json_names(file_proto):
    """Normalise what differs between protoc versions but not in the schema: protoc's descriptor
    sets carry json_name (derived from the field name) where the Python generator strips it, and
    versions spell float defaults differently ("1e-08" vs "9.99999994e-09", the same float32)."""
    float_types = (descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT, descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE)

    def strip(messages):
        for m in messages:
            for f in m.field:
                f.ClearField("json_name")
                if f.type in float_types and f.HasField("default_value"):
                    value = float(f.default_value)
                    if f.type == float_types[0]:
                        value = struct.unpack("<f", struct.pack("<f", value))[0]
                    f.default_value = repr(value)
            strip(m.nested_type)
    strip(file_proto.message_type)
    return file_proto


def test_committed_module_matches_proto(tmp_path):
    fresh = compile_descriptor(PROTO_DIR, tmp_path)
    committed = committed_descriptor()
    if fresh != committed:
        fresh_msgs = {m.name: m for m in fresh.message_type}
        stale = [m.name for m in committed.message_type if fresh_msgs.get(m.name) != m]
        pytest.fail("vgg_caffe/proto/caffe_pb2.py is stale; run `make proto`. Differing messages: "
                    + ", ".join(stale or ["(file options or enums)"]))


def test_drift_is_detected(tmp_path):
    """The comparison above really fails when caffe.proto gains a field without regenerating."""
    src = open(os.path.join(PROTO_DIR, "caffe.proto")).read()
    edited = src.replace("message BlobShape {", "message BlobShape {\n  optional int32 drift_probe = 99;", 1)
    assert edited != src
    d = tmp_path / "edited"
    d.mkdir()
    (d / "caffe.proto").write_text(edited)
    assert compile_descriptor(str(d), tmp_path) != committed_descriptor()


# message -> {field: number}, from CAFFE.md §1.
FIELD_NUMBERS = {
    "NetParameter": dict(name=1, layers=2, input=3, input_dim=4, force_backward=5, state=6, debug_info=7,
                         input_shape=8, layer=100),
    "LayerParameter": dict(name=1, type=2, bottom=3, top=4, loss_weight=5, param=6, blobs=7, include=8,
                           exclude=9, phase=10, propagate_down=11, transform_param=100, loss_param=101,
                           accuracy_param=102, concat_param=104, convolution_param=106, data_param=107,
                           dropout_param=108, hdf5_data_param=112, image_data_param=115,
                           inner_product_param=117, lrn_param=118, pooling_param=121, relu_param=123,
                           softmax_param=125, python_param=130, flatten_param=135, input_param=143),
    "ParamSpec": dict(name=1, share_mode=2, lr_mult=3, decay_mult=4),
    "NetStateRule": dict(phase=1, min_level=2, max_level=3, stage=4, not_stage=5),
    "V1LayerParameter": dict(bottom=2, top=3, name=4, type=5, blobs=6, blobs_lr=7, weight_decay=8,
                             concat_param=9, convolution_param=10, data_param=11, dropout_param=12,
                             inner_product_param=17, lrn_param=18, pooling_param=19, accuracy_param=27,
                             relu_param=30, softmax_param=39, include=32, exclude=33, loss_weight=35,
                             transform_param=36, loss_param=42, param=1001, blob_share_mode=1002),
    "BlobProto": dict(num=1, channels=2, height=3, width=4, data=5, diff=6, shape=7, double_data=8,
                      double_diff=9),
    "BlobShape": dict(dim=1),
    "Datum": dict(channels=1, height=2, width=3, data=4, label=5, float_data=6, encoded=7),
    "ConvolutionParameter": dict(num_output=1, bias_term=2, pad=3, kernel_size=4, group=5, stride=6,
                                 weight_filler=7, bias_filler=8, pad_h=9, pad_w=10, kernel_h=11, kernel_w=12,
                                 stride_h=13, stride_w=14, engine=15, axis=16, force_nd_im2col=17, dilation=18),
    "PoolingParameter": dict(pool=1, kernel_size=2, stride=3, pad=4, kernel_h=5, kernel_w=6, stride_h=7,
                             stride_w=8, pad_h=9, pad_w=10, engine=11, global_pooling=12, round_mode=13),
    "InnerProductParameter": dict(num_output=1, bias_term=2, weight_filler=3, bias_filler=4, axis=5, transpose=6),
    "LRNParameter": dict(local_size=1, alpha=2, beta=3, norm_region=4, k=5, engine=6),
    "DropoutParameter": dict(dropout_ratio=1),
    "ReLUParameter": dict(negative_slope=1),
    "SoftmaxParameter": dict(axis=2),
    "DataParameter": dict(source=1, scale=2, mean_file=3, batch_size=4, crop_size=5, mirror=6, rand_skip=7,
                          backend=8, prefetch=10),
    "TransformationParameter": dict(scale=1, mirror=2, crop_size=3, mean_file=4, mean_value=5, force_color=6,
                                    force_gray=7),
    "AccuracyParameter": dict(top_k=1, axis=2, ignore_label=3),
    "InputParameter": dict(shape=1),
    "PythonParameter": dict(module=1, layer=2, param_str=3),
    "ConcatParameter": dict(axis=2),
    "LossParameter": dict(ignore_label=1, normalize=2, normalization=3),
    "FillerParameter": dict(type=1, value=2, min=3, max=4, mean=5, std=6, sparse=7, variance_norm=8),
    "SolverParameter": dict(train_net=1, test_net=2, test_iter=3, test_interval=4, base_lr=5, display=6,
                            max_iter=7, lr_policy=8, gamma=9, power=10, momentum=11, weight_decay=12,
                            stepsize=13, snapshot=14, snapshot_prefix=15, snapshot_diff=16, solver_mode=17,
                            device_id=18, random_seed=20, net=24, net_param=25, regularization_type=29,
                            test_initialization=32, average_loss=33, stepvalue=34, clip_gradients=35,
                            iter_size=36, snapshot_format=37, type=40, weights=42),
    "SolverState": dict(iter=1, learned_net=2, history=3, current_step=4),
}

# (message, enum) -> {name: value}; the V1 type list is the one CAFFE.md names.
ENUM_VALUES = {
    (None, "Phase"): dict(TRAIN=0, TEST=1),
    ("V1LayerParameter", "LayerType"): dict(ACCURACY=1, CONCAT=3, CONVOLUTION=4, DATA=5, DROPOUT=6, FLATTEN=8,
                                            HDF5_DATA=9, IMAGE_DATA=12, INNER_PRODUCT=14, LRN=15, POOLING=17,
                                            RELU=18, SIGMOID=19, SOFTMAX=20, SOFTMAX_LOSS=21, SPLIT=22,
                                            TANH=23, ELTWISE=25, DECONVOLUTION=39),
    ("PoolingParameter", "PoolMethod"): dict(MAX=0, AVE=1, STOCHASTIC=2),
    ("PoolingParameter", "RoundMode"): dict(CEIL=0, FLOOR=1),
    ("LRNParameter", "NormRegion"): dict(ACROSS_CHANNELS=0, WITHIN_CHANNEL=1),
    ("DataParameter", "DB"): dict(LEVELDB=0, LMDB=1),
    ("LossParameter", "NormalizationMode"): dict(FULL=0, VALID=1, BATCH_SIZE=2, NONE=3),
    ("SolverParameter", "SnapshotFormat"): dict(HDF5=0, BINARYPROTO=1),
}

# (message, field) -> default, from CAFFE.md.
DEFAULTS = {
    ("ParamSpec", "lr_mult"): 1.0, ("ParamSpec", "decay_mult"): 1.0,
    ("PoolingParameter", "stride"): 1, ("PoolingParameter", "round_mode"): 0,
    ("InnerProductParameter", "axis"): 1, ("LRNParameter", "local_size"): 5, ("LRNParameter", "alpha"): 1.0,
    ("LRNParameter", "beta"): 0.75, ("LRNParameter", "k"): 1.0, ("LRNParameter", "norm_region"): 0,
    ("DropoutParameter", "dropout_ratio"): 0.5, ("DataParameter", "backend"): 0,
    ("LossParameter", "normalization"): 1, ("FillerParameter", "type"): "constant",
    ("SolverParameter", "random_seed"): -1, ("SolverParameter", "test_initialization"): True,
    ("SolverParameter", "clip_gradients"): -1.0, ("SolverParameter", "snapshot_format"): 1,
    ("SolverParameter", "type"): "SGD", ("SolverParameter", "regularization_type"): "L2",
    ("BlobProto", "num"): 0, ("BlobProto", "channels"): 0, ("BlobProto", "height"): 0, ("BlobProto", "width"): 0,
}


@pytest.mark.parametrize("message", sorted(FIELD_NUMBERS))
def test_field_numbers(message):
    desc = pb.DESCRIPTOR.message_types_by_name[message]
    have = {name: desc.fields_by_name[name].number for name in FIELD_NUMBERS[message] if name in desc.fields_by_name}
    missing = sorted(set(FIELD_NUMBERS[message]) - set(have))
    assert not missing, f"{message} lacks fields {missing}"
    assert have == FIELD_NUMBERS[message]


def test_no_field_number_used_twice():
    for desc in pb.DESCRIPTOR.message_types_by_name.values():
        numbers = [f.number for f in desc.fields]
        assert len(numbers) == len(set(numbers)), desc.name


@pytest.mark.parametrize("owner,enum", sorted(ENUM_VALUES, key=str))
def test_enum_values(owner, enum):
    desc = (pb.DESCRIPTOR if owner is None else pb.DESCRIPTOR.message_types_by_name[owner]).enum_types_by_name[enum]
    values = {v.name: v.number for v in desc.values}
    for name, number in ENUM_VALUES[(owner, enum)].items():
        assert values.get(name) == number, f"{owner}.{enum}.{name}: {values.get(name)} != {number}"


def test_defaults():
    for (message, field), value in DEFAULTS.items():
        assert pb.DESCRIPTOR.message_types_by_name[message].fields_by_name[field].default_value == value, \
            (message, field)


def test_wire_format_of_packed_and_legacy_fields():
    """BlobShape.dim and BlobProto.data are packed (one length-delimited record), as Caffe writes them."""
    shape = pb.BlobShape(dim=[2, 3])
    # field 1, wire type 2 (0x0a), length 2, varints 2 and 3.
    assert shape.SerializeToString() == bytes([0x0A, 2, 2, 3])
    blob = pb.BlobProto(data=[1.0])
    assert blob.SerializeToString() == bytes([0x2A, 4]) + bytes.fromhex("0000803f")
    # A V1 type enum is a varint on field 5 of V1LayerParameter.
    v1 = pb.V1LayerParameter(type=pb.V1LayerParameter.CONVOLUTION)
    assert v1.SerializeToString() == bytes([0x28, 4])
