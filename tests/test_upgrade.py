"""V1 nets (the released VGG files' format) are upgraded, not rejected: text and binary, through
read_net / Net and through tools/upgrade_net_proto.py. OpenCV's Caffe importer, which reads V1
itself, is the independent reference: it must compute the same on the V1 files and on ours.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from vgg_caffe.errors import CaffeError
from vgg_caffe.info import summarize
from vgg_caffe.net import Net
from vgg_caffe.proto import parse_text, pb, read_message, read_net

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "upgrade_net_proto.py")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import upgrade_net_proto  # noqa: E402

VGG16_STAGES = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]


def v1_vgg16_deploy(width_div=1, size=224, batch=10, learning=False):
    """The layout of the released VGG_ILSVRC_16_layers_deploy.prototxt, written out by hand."""
    lines = ['name: "VGG_ILSVRC_16_layers"', 'input: "data"'] + [f"input_dim: {d}" for d in (batch, 3, size, size)]

    def layer(bottom, top, name, type_, body=""):
        lines.append(f'layers {{\n  bottom: "{bottom}"\n  top: "{top}"\n  name: "{name}"\n  type: {type_}\n{body}}}')

    rates = "  blobs_lr: 1\n  blobs_lr: 2\n  weight_decay: 1\n  weight_decay: 0\n" if learning else ""
    bottom = "data"
    for s, (width, n) in enumerate(VGG16_STAGES, start=1):
        for i in range(1, n + 1):
            name = f"conv{s}_{i}"
            layer(bottom, name, name, "CONVOLUTION", rates + "  convolution_param {\n"
                  f"    num_output: {width // width_div}\n    pad: 1\n    kernel_size: 3\n  }}\n")
            layer(name, name, f"relu{s}_{i}", "RELU")
            bottom = name
        layer(bottom, f"pool{s}", f"pool{s}", "POOLING",
              "  pooling_param {\n    pool: MAX\n    kernel_size: 2\n    stride: 2\n  }\n")
        bottom = f"pool{s}"
    for i, width in ((6, 4096 // width_div), (7, 4096 // width_div), (8, 1000)):
        layer(bottom, f"fc{i}", f"fc{i}", "INNER_PRODUCT", rates + f"  inner_product_param {{\n    num_output: {width}\n  }}\n")
        bottom = f"fc{i}"
        if i < 8:
            layer(bottom, bottom, f"relu{i}", "RELU")
            layer(bottom, bottom, f"drop{i}", "DROPOUT", "  dropout_param {\n    dropout_ratio: 0.5\n  }\n")
    layer("fc8", "prob", "prob", "SOFTMAX")
    return "\n".join(lines) + "\n"


def test_v1_vgg16_text_parses_and_upgrades(tmp_path):
    path = tmp_path / "VGG_ILSVRC_16_layers_deploy.prototxt"
    path.write_text(v1_vgg16_deploy())
    raw = read_message(str(path), pb.NetParameter)
    assert len(raw.layers) == 39 and not len(raw.layer) and list(raw.input_dim) == [10, 3, 224, 224]
    net = read_net(str(path))
    assert not len(net.layers) and not len(net.input) and not len(net.input_dim)
    first = net.layer[0]
    assert (first.type, list(first.top), list(first.input_param.shape[0].dim)) == ("Input", ["data"], [10, 3, 224, 224])
    types = {lp.name: lp.type for lp in net.layer}
    assert (types["conv1_1"], types["relu1_1"], types["pool5"], types["fc6"], types["drop7"], types["prob"]) == \
        ("Convolution", "ReLU", "Pooling", "InnerProduct", "Dropout", "Softmax")
    assert [lp.name for lp in net.layer[1:]] == [lp.name for lp in raw.layers]
    relu6 = next(lp for lp in net.layer if lp.name == "relu6")
    assert list(relu6.bottom) == list(relu6.top) == ["fc6"]
    conv = next(lp for lp in net.layer if lp.name == "conv4_2").convolution_param
    assert (conv.num_output, list(conv.pad), list(conv.kernel_size)) == (512, [1], [3])
    # The upgraded net is a whole VGG-16 to the runtime: Table 2's count for D.
    rows, totals = summarize(str(path))
    assert totals["params"] == 138_357_544 and rows[-1].tops == [("prob", (10, 1000))]


def test_v1_learning_rates_become_param_specs(tmp_path):
    path = tmp_path / "v1_train.prototxt"
    path.write_text(v1_vgg16_deploy(width_div=16, size=32, learning=True))
    net = read_net(str(path))
    for lp in net.layer:
        if lp.type in ("Convolution", "InnerProduct"):
            assert [(p.lr_mult, p.decay_mult) for p in lp.param] == [(1, 1), (2, 0)], lp.name
        else:
            assert not len(lp.param)


def test_v1_legacy_data_fields_move_to_transform_param():
    text = ('layers { name: "data" type: DATA top: "data" top: "label" include { phase: TRAIN }\n'
            '  data_param { source: "train_lmdb" backend: LMDB batch_size: 64 crop_size: 227 mirror: true '
            'mean_file: "mean.binaryproto" scale: 0.5 } }\n')
    net = read_net_text(text)
    lp = net.layer[0]
    assert lp.type == "Data" and [r.phase for r in lp.include] == [pb.TRAIN]
    t = lp.transform_param
    assert (t.crop_size, t.mirror, t.mean_file, t.scale) == (227, True, "mean.binaryproto", 0.5)
    for field in ("crop_size", "mirror", "mean_file", "scale"):
        assert not lp.data_param.HasField(field)
    assert (lp.data_param.source, lp.data_param.batch_size) == ("train_lmdb", 64)


def read_net_text(text):
    from vgg_caffe.proto import upgrade_net
    return upgrade_net(parse_text(text, pb.NetParameter()))


def test_bad_v1_input(tmp_path):
    with pytest.raises(CaffeError, match="mixes `layer`"):
        read_net_text('layer { name: "a" type: "ReLU" }\nlayers { name: "b" type: RELU }\n')
    with pytest.raises(CaffeError, match="1 input\\(s\\) need 4 input_dim values, found 3"):
        read_net_text('input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\n')
    path = tmp_path / "bad_enum.prototxt"
    path.write_text('layers { name: "x" type: CONVOLUTON }\n')
    with pytest.raises(CaffeError, match=r"bad_enum\.prototxt:1:.*CONVOLUTON"):
        read_net(str(path))


def legacy_blob(shape, rng):
    """A BlobProto with Caffe's legacy 4-d dims (right-aligned: fc weight (1,1,N,K), bias (1,1,1,N))."""
    dims = (1,) * (4 - len(shape)) + tuple(shape)
    blob = pb.BlobProto(num=dims[0], channels=dims[1], height=dims[2], width=dims[3])
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    blob.data.extend((rng.standard_normal(int(np.prod(shape))) * np.sqrt(2.0 / fan_in)).astype(np.float32))
    return blob


def v1_caffemodel(deploy_text, size, rng):
    """A binary V1 NetParameter with weights, as the released .caffemodel files are laid out."""
    model = parse_text(deploy_text, pb.NetParameter())
    model.ClearField("input")
    model.ClearField("input_dim")
    channels, spatial = 3, size
    for layer in model.layers:
        if layer.type == pb.V1LayerParameter.CONVOLUTION:
            n = layer.convolution_param.num_output
            layer.blobs.extend([legacy_blob((n, channels, 3, 3), rng), legacy_blob((n,), rng)])
            channels = n
        elif layer.type == pb.V1LayerParameter.POOLING:
            spatial = -(-spatial // 2)
        elif layer.type == pb.V1LayerParameter.INNER_PRODUCT:
            n = layer.inner_product_param.num_output
            layer.blobs.extend([legacy_blob((n, channels * spatial * spatial), rng), legacy_blob((n,), rng)])
            channels, spatial = n, 1
    return model


def test_tool_upgrades_text_and_binary_and_opencv_agrees(tmp_path):
    cv2 = pytest.importorskip("cv2")
    text = v1_vgg16_deploy(width_div=16, size=32, batch=2)
    v1_proto, v1_model = tmp_path / "v1_deploy.prototxt", tmp_path / "v1.caffemodel"
    v1_proto.write_text(text)
    model = v1_caffemodel(text, 32, np.random.default_rng(0))
    v1_model.write_bytes(model.SerializeToString())

    new_proto, new_model = tmp_path / "deploy.prototxt", tmp_path / "new.caffemodel"
    assert upgrade_net_proto.main([str(v1_proto), str(new_proto)]) == 0
    result = subprocess.run([sys.executable, TOOL, str(v1_model), str(new_model)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "upgraded" in result.stderr

    upgraded = read_message(str(new_model), pb.NetParameter)   # binary, current format, blobs kept as stored
    assert not len(upgraded.layers) and len(upgraded.layer) == len(model.layers)
    for old, new in zip(model.layers, upgraded.layer):
        assert old.name == new.name and list(old.blobs) == list(new.blobs)
    assert upgraded.layer[0].type == "Convolution"
    text_net = read_message(str(new_proto), pb.NetParameter)
    assert text_net.layer[0].type == "Input" and "layers {" not in new_proto.read_text()

    image = np.random.default_rng(1).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    outputs = []
    for proto, weights in ((v1_proto, v1_model), (new_proto, new_model)):
        net = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
        net.setInput(image)
        outputs.append(net.forward("fc8"))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert np.abs(outputs[0]).max() > 0

    # The runtime reads the V1 pair directly (no tool needed) and gives OpenCV's numbers.
    ours = Net(str(v1_proto), weights=str(v1_model))
    ours(data=image)
    np.testing.assert_allclose(ours.blobs["fc8"].detach().numpy(), outputs[0], rtol=1e-4,
                               atol=1e-5 * np.abs(outputs[0]).max())


def test_tool_on_current_format_copies_and_can_switch_format(tmp_path):
    src = os.path.join(ROOT, "prototxt", "A", "deploy.prototxt")
    out_bin = tmp_path / "a.caffemodel"
    assert upgrade_net_proto.main([src, str(out_bin)]) == 0
    assert read_message(str(out_bin), pb.NetParameter) == read_net(src)
    out_text = tmp_path / "a_again"          # no suffix: the input's format (binary here)
    upgrade_net_proto.main([str(out_bin), str(out_text)])
    assert out_text.read_bytes() == out_bin.read_bytes()
    result = subprocess.run([sys.executable, TOOL, str(tmp_path / "nope.prototxt"), str(tmp_path / "x")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "no such file" in result.stderr and "Traceback" not in result.stderr


# ----------------------------------------------------------------------------------------------
# The rest of Caffe's V1 types, V0 nets, BatchNorm and solver_type upgrades
# ----------------------------------------------------------------------------------------------

# V1 enum -> (current type string, as Caffe's UpgradeV1LayerType spells it; a per-type block).
V1_LAYERS = {
    "DUMMY_DATA": ("DummyData", 'dummy_data_param { shape { dim: 2 dim: 3 } data_filler { type: "gaussian" std: 2 } }'),
    "MEMORY_DATA": ("MemoryData", "memory_data_param { batch_size: 4 channels: 3 height: 5 width: 6 }"),
    "HDF5_OUTPUT": ("HDF5Output", 'hdf5_output_param { file_name: "out.h5" }'),
    "POWER": ("Power", "power_param { power: 2 scale: 0.5 shift: 1 }"),
    "EXP": ("Exp", "exp_param { base: 2 scale: 3 }"),
    "THRESHOLD": ("Threshold", "threshold_param { threshold: 0.25 }"),
    "SLICE": ("Slice", "slice_param { axis: 2 slice_point: 1 slice_point: 3 }"),
    "MVN": ("MVN", "mvn_param { normalize_variance: false across_channels: true eps: 0.001 }"),
    "ARGMAX": ("ArgMax", "argmax_param { out_max_val: true top_k: 2 }"),
    "CONTRASTIVE_LOSS": ("ContrastiveLoss", "contrastive_loss_param { margin: 2 legacy_version: true }"),
    "HINGE_LOSS": ("HingeLoss", "hinge_loss_param { norm: L2 }"),
    "INFOGAIN_LOSS": ("InfogainLoss", 'infogain_loss_param { source: "H.binaryproto" }'),
    "SIGMOID": ("Sigmoid", "sigmoid_param { engine: CAFFE }"),
    "TANH": ("TanH", "tanh_param { engine: CAFFE }"),
    "ABSVAL": ("AbsVal", ""), "BNLL": ("BNLL", ""), "SILENCE": ("Silence", ""), "SPLIT": ("Split", ""),
    "EUCLIDEAN_LOSS": ("EuclideanLoss", "loss_param { normalization: NONE }"),
    "SIGMOID_CROSS_ENTROPY_LOSS": ("SigmoidCrossEntropyLoss", "loss_weight: 2"),
    "MULTINOMIAL_LOGISTIC_LOSS": ("MultinomialLogisticLoss", ""), "IM2COL": ("Im2col", ""),
}


def test_v1_upgrade_covers_every_type_and_its_param_block():
    assert set(V1_LAYERS) | {"NONE", "ACCURACY", "CONCAT", "CONVOLUTION", "DATA", "DECONVOLUTION", "DROPOUT",
                             "ELTWISE", "FLATTEN", "HDF5_DATA", "IMAGE_DATA", "INNER_PRODUCT", "LRN", "POOLING",
                             "RELU", "SOFTMAX", "SOFTMAX_LOSS", "WINDOW_DATA"} == \
        set(pb.V1LayerParameter.LayerType.keys())
    text = "".join(f'layers {{ name: "l{i}" type: {enum} bottom: "x" top: "y{i}" {body} }}\n'
                   for i, (enum, (_, body)) in enumerate(V1_LAYERS.items()))
    v1 = parse_text(text, pb.NetParameter())
    net = read_net_text(text)
    assert not len(net.layers) and len(net.layer) == len(V1_LAYERS)
    for old, new, (enum, (type_name, body)) in zip(v1.layers, net.layer, V1_LAYERS.items()):
        assert new.type == type_name, enum
        assert (list(new.bottom), list(new.top), list(new.loss_weight)) == \
            (list(old.bottom), list(old.top), list(old.loss_weight))
        if body.endswith("}"):
            block = body.split(" ", 1)[0]
            assert new.HasField(block) and getattr(new, block) == getattr(old, block), enum
            assert [f.name for f, _ in new.ListFields() if f.name.endswith("_param")] == [block]


def test_v1_window_and_image_data_fields_move_like_caffe():
    """Caffe's data upgrade moves scale / mean_file / crop_size / mirror of V1 DATA, IMAGE_DATA and
    WINDOW_DATA layers into transform_param (for WindowData, whose layer reads scale from
    window_data_param, Caffe's upgrade thereby drops the value; we do the same)."""
    net = read_net_text('layers { name: "w" type: WINDOW_DATA top: "d" top: "l" window_data_param {\n'
                        '  source: "windows.txt" batch_size: 8 crop_size: 32 mirror: true scale: 0.5 fg_fraction: 0.5 } }\n'
                        'layers { name: "i" type: IMAGE_DATA top: "d2" top: "l2" image_data_param {\n'
                        '  source: "list.txt" mean_file: "m.binaryproto" new_height: 40 } }\n')
    w, i = net.layer
    assert (w.transform_param.crop_size, w.transform_param.mirror, w.transform_param.scale) == (32, True, 0.5)
    assert not any(w.window_data_param.HasField(f) for f in ("crop_size", "mirror", "scale"))
    assert (w.window_data_param.source, w.window_data_param.fg_fraction) == ("windows.txt", 0.5)
    assert i.transform_param.mean_file == "m.binaryproto" and not i.image_data_param.HasField("mean_file")
    assert i.image_data_param.new_height == 40
    # A current-format WindowData layer keeps its own scale: Caffe upgrades V1 layers only.
    kept = read_net_text('layer { name: "w" type: "WindowData" window_data_param { scale: 0.5 } }').layer[0]
    assert kept.window_data_param.scale == 0.5 and not kept.HasField("transform_param")


V0_NET = """name: "tiny_v0"
input: "data"
input_dim: 2
input_dim: 3
input_dim: 9
input_dim: 9
layers { layer { name: "pad1" type: "padding" pad: 1 } bottom: "data" top: "pad1" }
layers {
  layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 3 stride: 2
          weight_filler { type: "gaussian" std: 0.01 } blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0 }
  bottom: "pad1" top: "conv1"
}
layers { layer { name: "relu1" type: "relu" } bottom: "conv1" top: "conv1" }
layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 2 stride: 1 } bottom: "conv1" top: "pool1" }
layers { layer { name: "norm1" type: "lrn" local_size: 3 alpha: 0.5 beta: 0.75 } bottom: "pool1" top: "norm1" }
layers { layer { name: "drop1" type: "dropout" dropout_ratio: 0.25 } bottom: "norm1" top: "norm1" }
layers { layer { name: "fc1" type: "innerproduct" num_output: 5 biasterm: true } bottom: "norm1" top: "fc1" }
layers { layer { name: "prob" type: "softmax" } bottom: "fc1" top: "prob" }
"""

# What Caffe's UpgradeV0Net + UpgradeV1Net + UpgradeNetInput make of V0_NET, written out by hand.
V0_UPGRADED = """name: "tiny_v0"
layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 9 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        convolution_param { num_output: 4 pad: 1 kernel_size: 3 stride: 2 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: AVE kernel_size: 2 stride: 1 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 } }
layer { name: "drop1" type: "Dropout" bottom: "norm1" top: "norm1" dropout_param { dropout_ratio: 0.25 } }
layer { name: "fc1" type: "InnerProduct" bottom: "norm1" top: "fc1" inner_product_param { num_output: 5 bias_term: true } }
layer { name: "prob" type: "Softmax" bottom: "fc1" top: "prob" }
"""


def test_v0_net_upgrades_padding_folded_and_opencv_agrees(tmp_path):
    assert read_net_text(V0_NET) == parse_text(V0_UPGRADED, pb.NetParameter())
    cv2 = pytest.importorskip("cv2")
    v0_path, model = tmp_path / "v0.prototxt", tmp_path / "w.caffemodel"
    v0_path.write_text(V0_NET)
    rng = np.random.default_rng(3)
    weights = parse_text(V0_UPGRADED, pb.NetParameter())
    for lp, shapes in ((weights.layer[1], [(4, 3, 3, 3), (4,)]), (weights.layer[6], [(5, 4 * 4 * 4), (5,)])):
        for shape in shapes:
            lp.blobs.add(shape=pb.BlobShape(dim=shape)).data.extend(rng.standard_normal(int(np.prod(shape))))
    model.write_bytes(weights.SerializeToString())
    image = rng.uniform(-1, 1, (2, 3, 9, 9)).astype(np.float32)
    reference = cv2.dnn.readNetFromCaffe(str(v0_path), str(model))   # OpenCV upgrades V0 itself
    reference.setInput(image)
    expected = reference.forward("fc1")
    ours = Net(str(v0_path), weights=str(model))
    ours(data=image)
    np.testing.assert_allclose(ours.blobs["fc1"].detach().numpy(), expected, rtol=1e-4, atol=1e-5)


def test_bad_v0_input():
    with pytest.raises(CaffeError, match="unknown V0 layer type 'convolution'.*known types: .*conv,"):
        read_net_text('layers { layer { name: "c" type: "convolution" } }')
    with pytest.raises(CaffeError, match="padding layer 'p' feeds layer 'r' of type relu"):
        read_net_text('input: "d" input_dim: 1 input_dim: 1 input_dim: 2 input_dim: 2\n'
                      'layers { layer { name: "p" type: "padding" pad: 1 } bottom: "d" top: "p" }\n'
                      'layers { layer { name: "r" type: "relu" } bottom: "p" top: "r" }')
    with pytest.raises(CaffeError, match="unknown bottom blob 'nowhere'"):
        read_net_text('layers { layer { name: "r" type: "relu" } bottom: "nowhere" top: "r" }')
    with pytest.raises(CaffeError, match="without the nested `layer` block: b"):
        read_net_text('layers { layer { name: "a" type: "relu" } }\nlayers { name: "b" type: RELU }')
    # A V0 field for another type is dropped with a warning, as Caffe drops it with an error line.
    with pytest.warns(UserWarning, match="layer 'r' \\(V0 type relu\\): field num_output .* conv, innerproduct"):
        net = read_net_text('layers { layer { name: "r" type: "relu" num_output: 3 } }')
    assert net.layer[0].type == "ReLU" and not net.layer[0].HasField("inner_product_param")


def test_old_batch_norm_params_get_zero_rates():
    """Caffe's UpgradeNetBatchNorm: a BatchNorm declaring its three blobs learns none of them."""
    old = read_net_text('layer { name: "bn" type: "BatchNorm" param { lr_mult: 1 } param { lr_mult: 1 } '
                        'param { name: "s" lr_mult: 1 decay_mult: 2 } }\n'
                        'layer { name: "bn2" type: "BatchNorm" param { lr_mult: 1 } }')
    assert [(p.lr_mult, p.decay_mult) for p in old.layer[0].param] == [(0, 0)] * 3
    assert old.layer[0].param[2].name == "s"
    assert [(p.lr_mult, p.decay_mult) for p in old.layer[1].param] == [(1, 1)]   # not three: untouched


@pytest.mark.parametrize("enum,name", [("SGD", "SGD"), ("NESTEROV", "Nesterov"), ("ADAGRAD", "AdaGrad"),
                                       ("RMSPROP", "RMSProp"), ("ADADELTA", "AdaDelta"), ("ADAM", "Adam")])
def test_solver_type_enum_becomes_type_string(tmp_path, enum, name):
    from vgg_caffe.proto import read_solver
    path = tmp_path / "solver.prototxt"
    path.write_text(f'net: "n.prototxt"\nbase_lr: 0.01\nsolver_type: {enum}\n')
    solver = read_solver(str(path))
    assert solver.type == name and solver.HasField("type") and not solver.HasField("solver_type")
    path.write_text(f'net: "n.prototxt"\nsolver_type: {enum}\ntype: "{name}"\n')
    with pytest.raises(CaffeError, match=rf"solver\.prototxt: solver_type: {enum} .* both set"):
        read_solver(str(path))
    path.write_text('type: "Adam"\n')
    assert read_solver(str(path)).type == "Adam"
