"""The generator: Table 1 for every configuration, the three training regimes, small nets on the
same path, the committed prototxt/ kept current, and the generated nets run the same in OpenCV's
independent Caffe importer as in ours.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vgg_caffe import netgen as netgen_cli
from vgg_caffe.vgg import netgen
from vgg_caffe.vgg.configs import NAMES, get_config
from vgg_caffe.errors import CaffeError
from vgg_caffe.info import shape_net
from vgg_caffe.net import Net
from vgg_caffe.proto import pb, read_net, read_solver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED = os.path.join(ROOT, "prototxt")

# Table 1 of the paper, written out by hand: per stage, the convolutions as "kernel-width".
TABLE1 = {
    "A": ["3-64", "3-128", "3-256 3-256", "3-512 3-512", "3-512 3-512"],
    "A-LRN": ["3-64", "3-128", "3-256 3-256", "3-512 3-512", "3-512 3-512"],
    "B": ["3-64 3-64", "3-128 3-128", "3-256 3-256", "3-512 3-512", "3-512 3-512"],
    "C": ["3-64 3-64", "3-128 3-128", "3-256 3-256 1-256", "3-512 3-512 1-512", "3-512 3-512 1-512"],
    "D": ["3-64 3-64", "3-128 3-128", "3-256 3-256 3-256", "3-512 3-512 3-512", "3-512 3-512 3-512"],
    "E": ["3-64 3-64", "3-128 3-128", "3-256 3-256 3-256 3-256", "3-512 3-512 3-512 3-512",
          "3-512 3-512 3-512 3-512"],
}
WEIGHT_LAYERS = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}


def layer_by_name(net, name, phase=None):
    for lp in net.layer:
        if lp.name == name and (phase is None or not len(lp.include) or lp.include[0].phase == phase):
            return lp
    raise KeyError(name)


def expected_sequence(config):
    """Layer names of the deploy net, from TABLE1 and the Model Zoo naming."""
    names = ["data"]
    for s, stage in enumerate(TABLE1[config], start=1):
        for i, _ in enumerate(stage.split(), start=1):
            names += [f"conv{s}_{i}", f"relu{s}_{i}"]
        if config == "A-LRN" and s == 1:
            names.append("norm1")
        names.append(f"pool{s}")
    return names + ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8", "prob"]


@pytest.mark.parametrize("config", NAMES)
def test_deploy_follows_table1(config):
    net = read_net(os.path.join(COMMITTED, config, "deploy.prototxt"))
    assert [lp.name for lp in net.layer] == expected_sequence(config)
    convs = [lp for lp in net.layer if lp.type == "Convolution"]
    got = [f"{lp.convolution_param.kernel_size[0]}-{lp.convolution_param.num_output}" for lp in convs]
    assert got == " ".join(TABLE1[config]).split()
    for lp in convs:  # padding keeps the resolution: 1 for 3x3, none for 1x1
        k = lp.convolution_param.kernel_size[0]
        assert list(lp.convolution_param.pad) == ([1] if k == 3 else [])
        assert not lp.convolution_param.HasField("weight_filler")  # no fillers in deploy
    fcs = [lp.inner_product_param.num_output for lp in net.layer if lp.type == "InnerProduct"]
    assert fcs == [4096, 4096, 1000]
    assert len(convs) + len(fcs) == WEIGHT_LAYERS[config] == get_config(config).weight_layers
    for lp in net.layer:
        if lp.type in ("ReLU", "Dropout"):
            assert list(lp.top) == list(lp.bottom)  # in place
        if lp.type == "Pooling":
            p = lp.pooling_param
            assert (p.pool, p.kernel_size, p.stride, p.pad) == (pb.PoolingParameter.MAX, 2, 2, 0)
    assert list(net.layer[0].input_param.shape[0].dim) == [10, 3, 224, 224]
    assert net.layer[-1].type == "Softmax"


def test_lrn_of_a_lrn():
    net = read_net(os.path.join(COMMITTED, "A-LRN", "train_val_S256.prototxt"))
    names = [lp.name for lp in net.layer]
    assert names.index("relu1_1") + 1 == names.index("norm1") == names.index("pool1") - 1
    lrn = layer_by_name(net, "norm1")
    assert lrn.type == "LRN" and list(lrn.bottom) == ["conv1_1"] and list(layer_by_name(net, "pool1").bottom) == ["norm1"]
    p = lrn.lrn_param
    # AlexNet: n=5, alpha 1e-4 per element (Caffe's alpha/n => 5e-4), beta 0.75, k 2.
    assert (p.local_size, p.beta, p.k, p.norm_region) == (5, 0.75, 2.0, pb.LRNParameter.ACROSS_CHANNELS)
    assert p.alpha == pytest.approx(5 * 1e-4)
    assert not any(lp.type == "LRN" for lp in read_net(os.path.join(COMMITTED, "A", "deploy.prototxt")).layer)


@pytest.mark.parametrize("regime,scale", [("S256", [256, 256]), ("S384", [384, 384]), ("multiscale", [256, 512])])
def test_train_val(regime, scale):
    net = read_net(os.path.join(COMMITTED, "D", f"train_val_{regime}.prototxt"))
    train = layer_by_name(net, "data", pb.TRAIN)
    assert train.type == "Python" and list(train.top) == ["data", "label"]
    assert [r.phase for r in train.include] == [pb.TRAIN]
    assert (train.python_param.module, train.python_param.layer) == ("vgg_caffe.data.vgg_layer", "VGGData")
    expected = {"source": "data/ilsvrc12_train_lmdb", "batch_size": 256, "scale": scale, "crop_size": 224,
                "mirror": True, "color_shift": 0.1, "mean_value": [103.939, 116.779, 123.68]}
    assert json.loads(train.python_param.param_str) == expected
    assert train.python_param.param_str == json.dumps(expected, sort_keys=True, separators=(",", ":"))

    test = layer_by_name(net, "data", pb.TEST)
    assert test.type == "Data" and [r.phase for r in test.include] == [pb.TEST]
    assert (test.data_param.backend, test.data_param.batch_size) == (pb.DataParameter.LMDB, 50)
    t = test.transform_param
    assert t.crop_size == 224 and not t.mirror
    assert list(t.mean_value) == pytest.approx([103.939, 116.779, 123.68])

    for lp in net.layer:
        if lp.type in ("Convolution", "InnerProduct"):
            assert [(p.lr_mult, p.decay_mult) for p in lp.param] == [(1, 1), (2, 0)]
            param = lp.convolution_param if lp.type == "Convolution" else lp.inner_product_param
            assert (param.weight_filler.type, param.weight_filler.std) == ("gaussian", pytest.approx(0.01))
            assert (param.bias_filler.type, param.bias_filler.value) == ("constant", 0)
    loss = layer_by_name(net, "loss")
    assert loss.type == "SoftmaxWithLoss" and list(loss.bottom) == ["fc8", "label"] and not len(loss.include)
    top1, top5 = layer_by_name(net, "accuracy"), layer_by_name(net, "accuracy_top5")
    assert (top1.accuracy_param.top_k, top5.accuracy_param.top_k) == (1, 5)
    assert all([r.phase for r in lp.include] == [pb.TEST] for lp in (top1, top5))


def test_solvers_follow_the_paper():
    s256 = read_solver(os.path.join(COMMITTED, "E", "solver_S256.prototxt"))
    assert s256.net == "prototxt/E/train_val_S256.prototxt"
    assert (s256.base_lr, s256.momentum, s256.weight_decay, s256.gamma) == pytest.approx((0.01, 0.9, 0.0005, 0.1))
    assert (s256.lr_policy, s256.plateau_metric, s256.plateau_max_drops) == ("plateau", "accuracy", 3)
    assert (s256.max_iter, list(s256.test_iter), s256.test_interval) == (370000, [1000], 5000)
    assert (s256.display, s256.snapshot, s256.snapshot_prefix) == (20, 10000, "snapshots/E_S256")
    assert (s256.solver_mode, s256.random_seed) == (pb.SolverParameter.GPU, 1)
    assert not len(s256.weights)
    text = open(os.path.join(COMMITTED, "E", "solver_S256.prototxt")).read()
    assert ("python -m vgg_caffe.solve prototxt/E/solver_S256.prototxt --weights snapshots/A_S256_iter_370000.caffemodel "
            "--init-layers conv1_1,conv2_1,conv3_1,conv3_2,fc6,fc7,fc8") in text
    assert "--init-layers" not in open(os.path.join(COMMITTED, "A", "solver_S256.prototxt")).read()

    s384 = read_solver(os.path.join(COMMITTED, "E", "solver_S384.prototxt"))
    assert s384.base_lr == pytest.approx(0.001) and list(s384.weights) == ["snapshots/E_S256_iter_370000.caffemodel"]
    assert s384.net == "prototxt/E/train_val_S384.prototxt" and s384.snapshot_prefix == "snapshots/E_S384"
    multi = read_solver(os.path.join(COMMITTED, "E", "solver_multiscale.prototxt"))
    assert list(multi.weights) == ["snapshots/E_S384_iter_370000.caffemodel"]
    assert multi.net == "prototxt/E/train_val_multiscale.prototxt"


def test_a_init_layers_exist_with_the_same_shapes_in_deeper_nets():
    """The paper's pre-initialisation copies A's first four convs and the FCs: same names and shapes."""
    a = shape_net(os.path.join(COMMITTED, "A", "deploy.prototxt"))  # weights on the meta device
    for config in ("B", "C", "D", "E"):
        deep = shape_net(os.path.join(COMMITTED, config, "deploy.prototxt"))
        for name in ("conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc6", "fc7", "fc8"):
            assert [p.shape for p in deep.params[name]] == [p.shape for p in a.params[name]]


def test_committed_prototxt_is_current():
    """Fails when prototxt/ differs from what the generator produces now: run `make prototxt`."""
    assert sorted(os.listdir(COMMITTED)) == sorted(NAMES)
    stale = []
    for config in NAMES:
        files = netgen.render(config, "prototxt")
        assert sorted(os.listdir(os.path.join(COMMITTED, config))) == sorted(files)
        for name, text in files.items():
            with open(os.path.join(COMMITTED, config, name)) as f:
                if f.read() != text:
                    stale.append(f"{config}/{name}")
    assert not stale, f"stale generated files (run make prototxt): {stale}"


def test_small_vgg_and_dense_kernel(tmp_path):
    paths = netgen.write_all(tmp_path, "C", width_div=16, crop=64, num_classes=10, train_source="tr",
                             test_source="va", batch_size=8, test_batch_size=4, scale=(70, 80),
                             extra_solver={"max_iter": 30, "solver_mode": "CPU"})
    assert sorted(paths) == sorted(["train_val_S256", "train_val_S384", "train_val_multiscale", "deploy",
                                    "deploy_dense", "solver_S256", "solver_S384", "solver_multiscale"])
    assert all(p == os.path.join(str(tmp_path), "C", k + ".prototxt") for k, p in paths.items())
    train = read_net(paths["train_val_S256"])
    opts = json.loads(layer_by_name(train, "data", pb.TRAIN).python_param.param_str)
    assert (opts["scale"], opts["crop_size"], opts["batch_size"], opts["source"]) == ([70, 80], 64, 8, "tr")
    # Scale ranges of the other regimes follow the crop: the paper's S * 64 / 224.
    s384 = json.loads(layer_by_name(read_net(paths["train_val_S384"]), "data", pb.TRAIN).python_param.param_str)
    assert s384["scale"] == [round(384 * 64 / 224)] * 2
    widths = {lp.name: (lp.convolution_param.num_output or lp.inner_product_param.num_output) for lp in train.layer
              if lp.type in ("Convolution", "InnerProduct")}
    assert (widths["conv1_1"], widths["conv3_3"], widths["conv5_3"], widths["fc6"], widths["fc8"]) == (4, 16, 32, 256, 10)
    solver = read_solver(paths["solver_S256"])
    assert solver.net == paths["train_val_S256"] and solver.max_iter == 30 and solver.solver_mode == pb.SolverParameter.CPU
    assert list(read_solver(paths["solver_S384"]).weights) == ["snapshots/C_S256_iter_30.caffemodel"]
    dense = read_net(paths["deploy_dense"])
    kernels = [layer_by_name(dense, f"fc{i}").convolution_param.kernel_size[0] for i in (6, 7, 8)]
    assert kernels == [2, 1, 1]  # 64 -> 32 -> 16 -> 8 -> 4 -> 2
    assert netgen.final_map_size(224) == 7 and netgen.final_map_size(32) == 1 and netgen.final_map_size(100) == 4


def test_bad_options_and_configs(tmp_path):
    with pytest.raises(CaffeError, match=r"unknown VGG configuration 'F'; valid configurations: A, A-LRN, B, C, D, E"):
        netgen.write_all(tmp_path, "F")
    with pytest.raises(CaffeError, match="unknown option.*width_dvi"):
        netgen.write_all(tmp_path, "A", width_dvi=4)
    with pytest.raises(CaffeError, match="crop .* <= S_min"):
        netgen.write_all(tmp_path, "A", crop=224, scale=(200, 300))
    with pytest.raises(CaffeError, match="SolverParameter has no field 'max_iters'"):
        netgen.write_all(tmp_path, "A", extra_solver={"max_iters": 3})
    assert get_config("a-lrn").name == "A-LRN"
    result = subprocess.run([sys.executable, "-m", "vgg_caffe.netgen", "--out", str(tmp_path), "--config", "Z"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "valid configurations: A, A-LRN, B, C, D, E" in result.stderr


def test_cli_writes_one_config(tmp_path):
    assert netgen_cli.main(["--out", str(tmp_path), "--config", "b", "--width-div", "8", "--crop", "32"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["B"]
    net = read_net(tmp_path / "B" / "deploy.prototxt")
    assert list(net.layer[0].input_param.shape[0].dim) == [10, 3, 32, 32]
    assert layer_by_name(net, "conv5_2").convolution_param.num_output == 64


def _random_caffemodel(deploy, seed):
    """Weights for `deploy` as a caffemodel written with our schema (for OpenCV to read)."""
    rng = np.random.default_rng(seed)
    model = pb.NetParameter()
    model.CopyFrom(deploy)
    shapes = {}
    channels = {"data": deploy.layer[0].input_param.shape[0].dim[1]}
    size = deploy.layer[0].input_param.shape[0].dim[2]
    for lp in model.layer:
        if lp.type == "Convolution":
            p = lp.convolution_param
            k = p.kernel_size[0]
            shapes[lp.name] = [(p.num_output, channels[lp.bottom[0]], k, k), (p.num_output,)]
            channels[lp.top[0]] = p.num_output
        elif lp.type == "InnerProduct":
            shapes[lp.name] = [(lp.inner_product_param.num_output, channels[lp.bottom[0]] * size * size),
                               (lp.inner_product_param.num_output,)]
            channels[lp.top[0]], size = lp.inner_product_param.num_output, 1
        elif lp.type == "Pooling":
            size = -(-size // 2)
            channels[lp.top[0]] = channels[lp.bottom[0]]
        elif lp.bottom:
            channels[lp.top[0]] = channels[lp.bottom[0]]
        for shape in shapes.get(lp.name, []) if not len(lp.blobs) else []:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            blob = lp.blobs.add()
            blob.shape.dim.extend(shape)
            blob.data.extend((rng.standard_normal(int(np.prod(shape))) * np.sqrt(2.0 / fan_in)).astype(np.float32))
    return model, shapes


def test_generated_nets_run_alike_in_opencv(tmp_path):
    """deploy and deploy_dense (same weights, fc reshaped) agree in OpenCV's Caffe importer, and
    our Net gives OpenCV's answer on the generated deploy net (config C: 1x1 convolutions too)."""
    cv2 = pytest.importorskip("cv2")
    torch = pytest.importorskip("torch")
    paths = netgen.write_all(tmp_path, "C", width_div=16, crop=64, num_classes=10)
    deploy = read_net(paths["deploy"])
    model, _ = _random_caffemodel(deploy, seed=0)
    dense_model = read_net(paths["deploy_dense"])
    by_name = {lp.name: lp for lp in model.layer}
    for lp in dense_model.layer:
        if lp.name in by_name and len(by_name[lp.name].blobs):
            for blob in by_name[lp.name].blobs:
                lp.blobs.add().CopyFrom(blob)
            w = lp.blobs[0]
            if lp.name.startswith("fc"):
                k = lp.convolution_param.kernel_size[0]
                n = w.shape.dim[0]
                del w.shape.dim[:]
                w.shape.dim.extend([n, int(len(w.data) // (n * k * k)), k, k])
    (tmp_path / "fc.caffemodel").write_bytes(model.SerializeToString())
    (tmp_path / "dense.caffemodel").write_bytes(dense_model.SerializeToString())

    image = np.random.default_rng(1).uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    fc = cv2.dnn.readNetFromCaffe(paths["deploy"], str(tmp_path / "fc.caffemodel"))
    fc.setInput(image)
    want_fc8, want = fc.forward(["fc8", "prob"])
    dense = cv2.dnn.readNetFromCaffe(paths["deploy_dense"], str(tmp_path / "dense.caffemodel"))
    dense.setInput(image)
    dense_fc8, got_dense = dense.forward(["fc8", "prob"])
    assert got_dense.shape == (2, 10, 1, 1)
    scale = np.abs(want_fc8).max()
    np.testing.assert_allclose(dense_fc8[:, :, 0, 0], want_fc8, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(got_dense[:, :, 0, 0], want, rtol=1e-4, atol=1e-6)

    net = Net(paths["deploy"], input_shapes={"data": image.shape})
    with torch.no_grad():
        for lp in model.layer:
            for param, blob in zip(net.params.get(lp.name, []), lp.blobs):
                param.copy_(torch.tensor(np.array(blob.data, np.float32)).reshape(param.shape))
        ours = net(data=torch.from_numpy(image))["prob"].numpy()
    np.testing.assert_allclose(net.blobs["fc8"].numpy(), want_fc8, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-6)
    assert want.max() < 0.99 and not np.allclose(want[0], want[1], atol=1e-3)  # not saturated, images differ


def test_table1_text():
    from vgg_caffe.vgg.configs import table1
    lines = dict(line.split(" ", 1) for line in table1().splitlines())
    assert sorted(lines) == sorted(NAMES)
    for config, stages in TABLE1.items():
        spelled = [" ".join(f"conv{c}" for c in stage.split()) for stage in stages]
        if config == "A-LRN":
            spelled[0] += " LRN"
        assert f"({WEIGHT_LAYERS[config]} weight layers): " + " | maxpool | ".join(spelled) in lines[config]
