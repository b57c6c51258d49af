"""caffe_pb2.py cannot drift from caffe.proto, and the schema is Caffe's, message for message.

The committed module is compared with a fresh protoc run as a FileDescriptorProto (the serialized
descriptor), not as text, so the protoc / grpcio-tools version does not matter. The table CAFFE
below is upstream caffe.proto (BVLC/caffe 9b89154) written out again by hand, independently of our
schema file: every message, every field's number, label, type and default, every enum value.
"""
import os
import struct

import numpy as np
import pytest
from google.protobuf import descriptor, descriptor_pb2
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


# ----------------------------------------------------------------------------------------------
# Caffe's schema (BVLC/caffe 9b89154, src/caffe/proto/caffe.proto), written out field by field.
# One entry per message: "TYPE NAME=NUMBER [DEFAULT]" separated by ";". A leading + marks a
# repeated field, ! a required one; TYPE is a scalar type or the message / enum name; DEFAULT is
# a number, a bare string ('' for the empty string), true/false or an enum value name.
# ----------------------------------------------------------------------------------------------
CAFFE = {
    "BlobShape": "+int64 dim=1",
    "BlobProto": "BlobShape shape=7; +float data=5; +float diff=6; +double double_data=8; +double double_diff=9;"
                 "int32 num=1 0; int32 channels=2 0; int32 height=3 0; int32 width=4 0",
    "BlobProtoVector": "+BlobProto blobs=1",
    "Datum": "int32 channels=1; int32 height=2; int32 width=3; bytes data=4; int32 label=5; +float float_data=6;"
             "bool encoded=7 false",
    "FillerParameter": "string type=1 constant; float value=2 0; float min=3 0; float max=4 1; float mean=5 0;"
                       "float std=6 1; int32 sparse=7 -1; VarianceNorm variance_norm=8 FAN_IN",
    "NetParameter": "string name=1; +string input=3; +BlobShape input_shape=8; +int32 input_dim=4;"
                    "bool force_backward=5 false; NetState state=6; bool debug_info=7 false;"
                    "+LayerParameter layer=100; +V1LayerParameter layers=2",
    "SolverParameter": "string net=24; NetParameter net_param=25; string train_net=1; +string test_net=2;"
                       "NetParameter train_net_param=21; +NetParameter test_net_param=22; NetState train_state=26;"
                       "+NetState test_state=27; +int32 test_iter=3; int32 test_interval=4 0;"
                       "bool test_compute_loss=19 false; bool test_initialization=32 true; float base_lr=5;"
                       "int32 display=6; int32 average_loss=33 1; int32 max_iter=7; int32 iter_size=36 1;"
                       "string lr_policy=8; float gamma=9; float power=10; float momentum=11; float weight_decay=12;"
                       "string regularization_type=29 L2; int32 stepsize=13; +int32 stepvalue=34;"
                       "float clip_gradients=35 -1; int32 snapshot=14 0; string snapshot_prefix=15;"
                       "bool snapshot_diff=16 false; SnapshotFormat snapshot_format=37 BINARYPROTO;"
                       "SolverMode solver_mode=17 GPU; int32 device_id=18 0; int64 random_seed=20 -1;"
                       "string type=40 SGD; float delta=31 1e-8; float momentum2=39 0.999; float rms_decay=38 0.99;"
                       "bool debug_info=23 false; bool snapshot_after_train=28 true; SolverType solver_type=30 SGD;"
                       "bool layer_wise_reduce=41 true; +string weights=42",
    "SolverState": "int32 iter=1; string learned_net=2; +BlobProto history=3; int32 current_step=4 0",
    "NetState": "Phase phase=1 TEST; int32 level=2 0; +string stage=3",
    "NetStateRule": "Phase phase=1; int32 min_level=2; int32 max_level=3; +string stage=4; +string not_stage=5",
    "ParamSpec": "string name=1; DimCheckMode share_mode=2; float lr_mult=3 1; float decay_mult=4 1",
    "LayerParameter": "string name=1; string type=2; +string bottom=3; +string top=4; Phase phase=10;"
                      "+float loss_weight=5; +ParamSpec param=6; +BlobProto blobs=7; +bool propagate_down=11;"
                      "+NetStateRule include=8; +NetStateRule exclude=9;"
                      "TransformationParameter transform_param=100; LossParameter loss_param=101;"
                      "AccuracyParameter accuracy_param=102; ArgMaxParameter argmax_param=103;"
                      "BatchNormParameter batch_norm_param=139; BiasParameter bias_param=141;"
                      "ClipParameter clip_param=148; ConcatParameter concat_param=104;"
                      "ContrastiveLossParameter contrastive_loss_param=105; ConvolutionParameter convolution_param=106;"
                      "CropParameter crop_param=144; DataParameter data_param=107; DropoutParameter dropout_param=108;"
                      "DummyDataParameter dummy_data_param=109; EltwiseParameter eltwise_param=110;"
                      "ELUParameter elu_param=140; EmbedParameter embed_param=137; ExpParameter exp_param=111;"
                      "FlattenParameter flatten_param=135; HDF5DataParameter hdf5_data_param=112;"
                      "HDF5OutputParameter hdf5_output_param=113; HingeLossParameter hinge_loss_param=114;"
                      "ImageDataParameter image_data_param=115; InfogainLossParameter infogain_loss_param=116;"
                      "InnerProductParameter inner_product_param=117; InputParameter input_param=143;"
                      "LogParameter log_param=134; LRNParameter lrn_param=118;"
                      "MemoryDataParameter memory_data_param=119; MVNParameter mvn_param=120;"
                      "ParameterParameter parameter_param=145; PoolingParameter pooling_param=121;"
                      "PowerParameter power_param=122; PReLUParameter prelu_param=131;"
                      "PythonParameter python_param=130; RecurrentParameter recurrent_param=146;"
                      "ReductionParameter reduction_param=136; ReLUParameter relu_param=123;"
                      "ReshapeParameter reshape_param=133; ScaleParameter scale_param=142;"
                      "SigmoidParameter sigmoid_param=124; SoftmaxParameter softmax_param=125;"
                      "SPPParameter spp_param=132; SliceParameter slice_param=126; SwishParameter swish_param=147;"
                      "TanHParameter tanh_param=127; ThresholdParameter threshold_param=128;"
                      "TileParameter tile_param=138; WindowDataParameter window_data_param=129",
    "TransformationParameter": "float scale=1 1; bool mirror=2 false; uint32 crop_size=3 0; string mean_file=4;"
                               "+float mean_value=5; bool force_color=6 false; bool force_gray=7 false",
    "LossParameter": "int32 ignore_label=1; NormalizationMode normalization=3 VALID; bool normalize=2",
    "AccuracyParameter": "uint32 top_k=1 1; int32 axis=2 1; int32 ignore_label=3",
    "ArgMaxParameter": "bool out_max_val=1 false; uint32 top_k=2 1; int32 axis=3",
    "ClipParameter": "!float min=1; !float max=2",
    "ConcatParameter": "int32 axis=2 1; uint32 concat_dim=1 1",
    "BatchNormParameter": "bool use_global_stats=1; float moving_average_fraction=2 0.999; float eps=3 1e-5",
    "BiasParameter": "int32 axis=1 1; int32 num_axes=2 1; FillerParameter filler=3",
    "ContrastiveLossParameter": "float margin=1 1; bool legacy_version=2 false",
    "ConvolutionParameter": "uint32 num_output=1; bool bias_term=2 true; +uint32 pad=3; +uint32 kernel_size=4;"
                            "+uint32 stride=6; +uint32 dilation=18; uint32 pad_h=9 0; uint32 pad_w=10 0;"
                            "uint32 kernel_h=11; uint32 kernel_w=12; uint32 stride_h=13; uint32 stride_w=14;"
                            "uint32 group=5 1; FillerParameter weight_filler=7; FillerParameter bias_filler=8;"
                            "Engine engine=15 DEFAULT; int32 axis=16 1; bool force_nd_im2col=17 false",
    "CropParameter": "int32 axis=1 2; +uint32 offset=2",
    "DataParameter": "string source=1; uint32 batch_size=4; uint32 rand_skip=7 0; DB backend=8 LEVELDB;"
                     "float scale=2 1; string mean_file=3; uint32 crop_size=5 0; bool mirror=6 false;"
                     "bool force_encoded_color=9 false; uint32 prefetch=10 4",
    "DropoutParameter": "float dropout_ratio=1 0.5",
    "DummyDataParameter": "+FillerParameter data_filler=1; +BlobShape shape=6; +uint32 num=2; +uint32 channels=3;"
                          "+uint32 height=4; +uint32 width=5",
    "EltwiseParameter": "EltwiseOp operation=1 SUM; +float coeff=2; bool stable_prod_grad=3 true",
    "ELUParameter": "float alpha=1 1",
    "EmbedParameter": "uint32 num_output=1; uint32 input_dim=2; bool bias_term=3 true;"
                      "FillerParameter weight_filler=4; FillerParameter bias_filler=5",
    "ExpParameter": "float base=1 -1; float scale=2 1; float shift=3 0",
    "FlattenParameter": "int32 axis=1 1; int32 end_axis=2 -1",
    "HDF5DataParameter": "string source=1; uint32 batch_size=2; bool shuffle=3 false",
    "HDF5OutputParameter": "string file_name=1",
    "HingeLossParameter": "Norm norm=1 L1",
    "ImageDataParameter": "string source=1; uint32 batch_size=4 1; uint32 rand_skip=7 0; bool shuffle=8 false;"
                          "uint32 new_height=9 0; uint32 new_width=10 0; bool is_color=11 true; float scale=2 1;"
                          "string mean_file=3; uint32 crop_size=5 0; bool mirror=6 false; string root_folder=12 ''",
    "InfogainLossParameter": "string source=1; int32 axis=2 1",
    "InnerProductParameter": "uint32 num_output=1; bool bias_term=2 true; FillerParameter weight_filler=3;"
                             "FillerParameter bias_filler=4; int32 axis=5 1; bool transpose=6 false",
    "InputParameter": "+BlobShape shape=1",
    "LogParameter": "float base=1 -1; float scale=2 1; float shift=3 0",
    "LRNParameter": "uint32 local_size=1 5; float alpha=2 1; float beta=3 0.75; NormRegion norm_region=4 ACROSS_CHANNELS;"
                    "float k=5 1; Engine engine=6 DEFAULT",
    "MemoryDataParameter": "uint32 batch_size=1; uint32 channels=2; uint32 height=3; uint32 width=4",
    "MVNParameter": "bool normalize_variance=1 true; bool across_channels=2 false; float eps=3 1e-9",
    "ParameterParameter": "BlobShape shape=1",
    "PoolingParameter": "PoolMethod pool=1 MAX; uint32 pad=4 0; uint32 pad_h=9 0; uint32 pad_w=10 0;"
                        "uint32 kernel_size=2; uint32 kernel_h=5; uint32 kernel_w=6; uint32 stride=3 1; uint32 stride_h=7;"
                        "uint32 stride_w=8; Engine engine=11 DEFAULT; bool global_pooling=12 false;"
                        "RoundMode round_mode=13 CEIL",
    "PowerParameter": "float power=1 1; float scale=2 1; float shift=3 0",
    "PythonParameter": "string module=1; string layer=2; string param_str=3 ''; bool share_in_parallel=4 false",
    "RecurrentParameter": "uint32 num_output=1 0; FillerParameter weight_filler=2; FillerParameter bias_filler=3;"
                          "bool debug_info=4 false; bool expose_hidden=5 false",
    "ReductionParameter": "ReductionOp operation=1 SUM; int32 axis=2 0; float coeff=3 1",
    "ReLUParameter": "float negative_slope=1 0; Engine engine=2 DEFAULT",
    "ReshapeParameter": "BlobShape shape=1; int32 axis=2 0; int32 num_axes=3 -1",
    "ScaleParameter": "int32 axis=1 1; int32 num_axes=2 1; FillerParameter filler=3; bool bias_term=4 false;"
                      "FillerParameter bias_filler=5",
    "SigmoidParameter": "Engine engine=1 DEFAULT",
    "SliceParameter": "int32 axis=3 1; +uint32 slice_point=2; uint32 slice_dim=1 1",
    "SoftmaxParameter": "Engine engine=1 DEFAULT; int32 axis=2 1",
    "SwishParameter": "float beta=1 1",
    "TanHParameter": "Engine engine=1 DEFAULT",
    "TileParameter": "int32 axis=1 1; int32 tiles=2",
    "ThresholdParameter": "float threshold=1 0",
    "WindowDataParameter": "string source=1; float scale=2 1; string mean_file=3; uint32 batch_size=4;"
                           "uint32 crop_size=5 0; bool mirror=6 false; float fg_threshold=7 0.5;"
                           "float bg_threshold=8 0.5; float fg_fraction=9 0.25; uint32 context_pad=10 0;"
                           "string crop_mode=11 warp; bool cache_images=12 false; string root_folder=13 ''",
    "SPPParameter": "uint32 pyramid_height=1; PoolMethod pool=2 MAX; Engine engine=6 DEFAULT",
    "V1LayerParameter": "+string bottom=2; +string top=3; string name=4; +NetStateRule include=32;"
                        "+NetStateRule exclude=33; LayerType type=5; +BlobProto blobs=6; +string param=1001;"
                        "+DimCheckMode blob_share_mode=1002; +float blobs_lr=7; +float weight_decay=8;"
                        "+float loss_weight=35; AccuracyParameter accuracy_param=27; ArgMaxParameter argmax_param=23;"
                        "ConcatParameter concat_param=9; ContrastiveLossParameter contrastive_loss_param=40;"
                        "ConvolutionParameter convolution_param=10; DataParameter data_param=11;"
                        "DropoutParameter dropout_param=12; DummyDataParameter dummy_data_param=26;"
                        "EltwiseParameter eltwise_param=24; ExpParameter exp_param=41;"
                        "HDF5DataParameter hdf5_data_param=13; HDF5OutputParameter hdf5_output_param=14;"
                        "HingeLossParameter hinge_loss_param=29; ImageDataParameter image_data_param=15;"
                        "InfogainLossParameter infogain_loss_param=16; InnerProductParameter inner_product_param=17;"
                        "LRNParameter lrn_param=18; MemoryDataParameter memory_data_param=22;"
                        "MVNParameter mvn_param=34; PoolingParameter pooling_param=19; PowerParameter power_param=21;"
                        "ReLUParameter relu_param=30; SigmoidParameter sigmoid_param=38;"
                        "SoftmaxParameter softmax_param=39; SliceParameter slice_param=31; TanHParameter tanh_param=37;"
                        "ThresholdParameter threshold_param=25; WindowDataParameter window_data_param=20;"
                        "TransformationParameter transform_param=36; LossParameter loss_param=42;"
                        "V0LayerParameter layer=1",
    "V0LayerParameter": "string name=1; string type=2; uint32 num_output=3; bool biasterm=4 true;"
                        "FillerParameter weight_filler=5; FillerParameter bias_filler=6; uint32 pad=7 0;"
                        "uint32 kernelsize=8; uint32 group=9 1; uint32 stride=10 1; PoolMethod pool=11 MAX;"
                        "float dropout_ratio=12 0.5; uint32 local_size=13 5; float alpha=14 1; float beta=15 0.75;"
                        "float k=22 1; string source=16; float scale=17 1; string meanfile=18; uint32 batchsize=19;"
                        "uint32 cropsize=20 0; bool mirror=21 false; +BlobProto blobs=50; +float blobs_lr=51;"
                        "+float weight_decay=52; uint32 rand_skip=53 0; float det_fg_threshold=54 0.5;"
                        "float det_bg_threshold=55 0.5; float det_fg_fraction=56 0.25; uint32 det_context_pad=58 0;"
                        "string det_crop_mode=59 warp; int32 new_num=60 0; int32 new_channels=61 0;"
                        "int32 new_height=62 0; int32 new_width=63 0; bool shuffle_images=64 false;"
                        "uint32 concat_dim=65 1; HDF5OutputParameter hdf5_output_param=1001",
    "PReLUParameter": "FillerParameter filler=1; bool channel_shared=2 false",
}

# The project's own fields (numbered from 1001, where upstream has nothing), kept across schema edits.
PROJECT = {
    "SolverParameter": "string plateau_metric=1001 accuracy; int32 plateau_patience=1002 1;"
                       "int32 plateau_max_drops=1003 3; float plateau_threshold=1004 0",
    "SolverState": "float plateau_best=1001; int32 plateau_bad_tests=1002 0",
}

ENGINE = dict(DEFAULT=0, CAFFE=1, CUDNN=2)
POOL = dict(MAX=0, AVE=1, STOCHASTIC=2)
ENUMS = {  # (message or None for the file, enum) -> {value name: number}
    (None, "Phase"): dict(TRAIN=0, TEST=1),
    ("FillerParameter", "VarianceNorm"): dict(FAN_IN=0, FAN_OUT=1, AVERAGE=2),
    ("SolverParameter", "SnapshotFormat"): dict(HDF5=0, BINARYPROTO=1),
    ("SolverParameter", "SolverMode"): dict(CPU=0, GPU=1),
    ("SolverParameter", "SolverType"): dict(SGD=0, NESTEROV=1, ADAGRAD=2, RMSPROP=3, ADADELTA=4, ADAM=5),
    ("ParamSpec", "DimCheckMode"): dict(STRICT=0, PERMISSIVE=1),
    ("V1LayerParameter", "DimCheckMode"): dict(STRICT=0, PERMISSIVE=1),
    ("LossParameter", "NormalizationMode"): dict(FULL=0, VALID=1, BATCH_SIZE=2, NONE=3),
    ("ConvolutionParameter", "Engine"): ENGINE, ("LRNParameter", "Engine"): ENGINE,
    ("PoolingParameter", "Engine"): ENGINE, ("ReLUParameter", "Engine"): ENGINE,
    ("SigmoidParameter", "Engine"): ENGINE, ("SoftmaxParameter", "Engine"): ENGINE,
    ("TanHParameter", "Engine"): ENGINE, ("SPPParameter", "Engine"): ENGINE,
    ("DataParameter", "DB"): dict(LEVELDB=0, LMDB=1),
    ("EltwiseParameter", "EltwiseOp"): dict(PROD=0, SUM=1, MAX=2),
    ("HingeLossParameter", "Norm"): dict(L1=1, L2=2),
    ("LRNParameter", "NormRegion"): dict(ACROSS_CHANNELS=0, WITHIN_CHANNEL=1),
    ("PoolingParameter", "PoolMethod"): POOL, ("SPPParameter", "PoolMethod"): POOL,
    ("V0LayerParameter", "PoolMethod"): POOL,
    ("PoolingParameter", "RoundMode"): dict(CEIL=0, FLOOR=1),
    ("ReductionParameter", "ReductionOp"): dict(SUM=1, ASUM=2, SUMSQ=3, MEAN=4),
    ("V1LayerParameter", "LayerType"): dict(
        NONE=0, ABSVAL=35, ACCURACY=1, ARGMAX=30, BNLL=2, CONCAT=3, CONTRASTIVE_LOSS=37, CONVOLUTION=4, DATA=5,
        DECONVOLUTION=39, DROPOUT=6, DUMMY_DATA=32, EUCLIDEAN_LOSS=7, ELTWISE=25, EXP=38, FLATTEN=8, HDF5_DATA=9,
        HDF5_OUTPUT=10, HINGE_LOSS=28, IM2COL=11, IMAGE_DATA=12, INFOGAIN_LOSS=13, INNER_PRODUCT=14, LRN=15,
        MEMORY_DATA=29, MULTINOMIAL_LOGISTIC_LOSS=16, MVN=34, POOLING=17, POWER=26, RELU=18, SIGMOID=19,
        SIGMOID_CROSS_ENTROPY_LOSS=27, SILENCE=36, SOFTMAX=20, SOFTMAX_LOSS=21, SPLIT=22, SLICE=33, TANH=23,
        WINDOW_DATA=24, THRESHOLD=31),
}

FD = descriptor.FieldDescriptor
SCALARS = {"double": FD.TYPE_DOUBLE, "float": FD.TYPE_FLOAT, "int64": FD.TYPE_INT64, "uint32": FD.TYPE_UINT32,
           "int32": FD.TYPE_INT32, "bool": FD.TYPE_BOOL, "string": FD.TYPE_STRING, "bytes": FD.TYPE_BYTES}


def parse_spec(spec):
    """'+int64 dim=1; float eps=3 1e-5' -> {name: (label, type, number, default text or None)}."""
    fields = {}
    for item in filter(None, (s.strip() for s in spec.split(";"))):
        parts = item.split()
        kind, (name, number) = parts[0], parts[1].split("=")
        label = {"+": "repeated", "!": "required"}.get(kind[0], "optional")
        fields[name] = (label, kind.lstrip("+!"), int(number), parts[2] if len(parts) > 2 else None)
    return fields


def expected_default(field, text):
    if field.enum_type is not None:
        return field.enum_type.values_by_name[text].number
    if field.type == FD.TYPE_BOOL:
        return {"true": True, "false": False}[text]
    if field.type == FD.TYPE_STRING:
        return "" if text == "''" else text
    if field.type == FD.TYPE_FLOAT:
        return struct.unpack("<f", struct.pack("<f", float(text)))[0]   # Caffe's float32 default
    return float(text) if field.type == FD.TYPE_DOUBLE else int(text)


def test_every_upstream_message_and_nothing_else():
    assert set(pb.DESCRIPTOR.message_types_by_name) == set(CAFFE)
    assert set(pb.DESCRIPTOR.enum_types_by_name) == {"Phase"}


@pytest.mark.parametrize("message", sorted(CAFFE))
def test_fields_match_caffe(message):
    desc = pb.DESCRIPTOR.message_types_by_name[message]
    spec = parse_spec(CAFFE[message] + ";" + PROJECT.get(message, ""))
    assert set(desc.fields_by_name) == set(spec), f"{message}: extra {set(desc.fields_by_name) - set(spec)}, " \
                                                  f"missing {set(spec) - set(desc.fields_by_name)}"
    for name, (label, kind, number, default) in spec.items():
        field = desc.fields_by_name[name]
        where = f"{message}.{name}"
        have = "repeated" if field.is_repeated else "required" if field.is_required else "optional"
        assert (field.number, have) == (number, label), where
        if kind in SCALARS:
            assert field.type == SCALARS[kind], where
        else:
            named = field.message_type or field.enum_type
            assert named is not None and named.name == kind, where
        if default is None:
            assert not field.has_default_value, f"{where} has a default Caffe does not give it"
        else:
            assert field.has_default_value and field.default_value == expected_default(field, default), where
    # The project's fields keep to the range upstream leaves free.
    assert all(n >= 1001 for _, _, n, _ in parse_spec(PROJECT.get(message, "")).values())


@pytest.mark.parametrize("owner,enum", sorted(ENUMS, key=str))
def test_enum_values(owner, enum):
    desc = (pb.DESCRIPTOR if owner is None else pb.DESCRIPTOR.message_types_by_name[owner]).enum_types_by_name[enum]
    assert {v.name: v.number for v in desc.values} == ENUMS[(owner, enum)]


def test_every_enum_is_listed():
    found = {(None, e) for e in pb.DESCRIPTOR.enum_types_by_name}
    for desc in pb.DESCRIPTOR.message_types_by_name.values():
        found |= {(desc.name, e.name) for e in desc.enum_types}
    assert found == set(ENUMS)


def test_param_messages_follow_caffes_naming():
    """LayerParameter's foo_bar_param holds a FooBarParameter (letter case aside; transform_param is
    Caffe's one exception), and every V1 per-type field has a current-format twin of the same type,
    which the V1 upgrade relies on."""
    layer = pb.LayerParameter.DESCRIPTOR
    for field in layer.fields:
        if field.name.endswith("_param"):
            stem = field.name[:-len("_param")].replace("_", "")
            expected = "transformation" if stem == "transform" else stem
            assert field.message_type.name.lower() == expected + "parameter", field.name
    for field in pb.V1LayerParameter.DESCRIPTOR.fields:
        if field.name.endswith("_param"):
            assert layer.fields_by_name[field.name].message_type is field.message_type, field.name


def test_no_field_number_used_twice():
    def walk(desc):
        numbers = [f.number for f in desc.fields]
        assert len(numbers) == len(set(numbers)), desc.full_name
        for nested in desc.nested_types:
            walk(nested)
    for desc in pb.DESCRIPTOR.message_types_by_name.values():
        walk(desc)


def test_defaults_seen_through_messages():
    """A few defaults as a layer sees them on an empty message (float32, as Caffe stores them)."""
    bn, scale = pb.BatchNormParameter(), pb.ScaleParameter()
    assert (bn.use_global_stats, bn.moving_average_fraction, bn.eps) == (False, np.float32(0.999), np.float32(1e-5))
    assert (scale.axis, scale.num_axes, scale.bias_term, scale.HasField("filler")) == (1, 1, False, False)
    assert (pb.SolverParameter().type, pb.SolverParameter().rms_decay) == ("SGD", np.float32(0.99))
    assert pb.WindowDataParameter().crop_mode == "warp" and pb.V0LayerParameter().det_crop_mode == "warp"
    assert pb.ReductionParameter().operation == pb.ReductionParameter.SUM == 1
    assert not pb.ClipParameter(min=0).IsInitialized()   # required, as in Caffe


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
    # LayerParameter.batch_norm_param is field 139: tag (139 << 3 | 2) = 1114 as a two-byte varint.
    lp = pb.LayerParameter(batch_norm_param=pb.BatchNormParameter(eps=1.0))
    assert lp.SerializeToString() == bytes([0xDA, 0x08, 5, 0x1D]) + struct.pack("<f", 1.0)
