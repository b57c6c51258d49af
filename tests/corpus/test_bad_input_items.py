"""One test (or a few) per item of issue 13, "No traceback, no silent acceptance, no lost run":
the behaviours the corpus (test_corpus.py) samples broadly, checked here precisely, each against
its own reference (a formula written out, numpy, bytes built by hand, Caffe's rule)."""
import math
import os
import time

import cv2
import numpy as np
import pytest
import torch

from corpus_cases import Case  # noqa: F401  (the corpus package is importable from here)
from corpus_images import png_header
from corpus_nets import LAYERS, _sub, net_text
from corpus_runner import run
from vgg_caffe import machine
from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net
from vgg_caffe.proto import parse_text, pb

FLT_MIN = float(np.finfo(np.float32).tiny)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return str(path)


# 1. A diverged run whose loss is finite (SoftmaxWithLoss at -log(FLT_MIN)) stops the solver ----

SOLVER_NET = """
name: "diverge"
layer { name: "data" type: "Input" top: "data" top: "label" input_param { shape { dim: 4 dim: 5 } shape { dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def _solver(tmp_path, label):
    from vgg_caffe.train.log import TrainingLog
    from vgg_caffe.train.solver import Solver

    p = parse_text(f'net_param {{ {SOLVER_NET} }} base_lr: 0.01 lr_policy: "fixed" max_iter: 3 '
                   f'snapshot_prefix: "{tmp_path}/snap" snapshot_after_train: false random_seed: 1', pb.SolverParameter())

    def feed(index, start, stop):
        return {"data": torch.ones(4, 5)[start:stop], "label": torch.full((4,), float(label))[start:stop]}
    s = Solver(p, log=TrainingLog(enabled=False), train_feed=feed)
    with torch.no_grad():   # logits (1e10, 0, -1e10) for every sample: float32 softmax underflows
        s.net.params["ip"][0].zero_()
        s.net.params["ip"][1].copy_(torch.tensor([1e10, 0.0, -1e10]))
    return s


def test_saturated_softmax_loss_stops_the_solver_with_a_snapshot(tmp_path):
    from vgg_caffe.train.solver import TrainingDiverged

    s = _solver(tmp_path, label=2)
    with pytest.raises(TrainingDiverged) as err:
        s.step(1)
    text = str(err.value)
    assert f"{-math.log(FLT_MIN):.6g}" in text and "FLT_MIN" in text and "iteration 0" in text
    assert os.path.exists(f"{tmp_path}/snap_iter_0.caffemodel")   # the weights before the bad update


def test_a_confident_right_answer_is_not_divergence(tmp_path):
    s = _solver(tmp_path, label=0)      # p(label) = 1: loss 0, as far from the ceiling as can be
    s.step(2)
    assert s.iter == 2


def test_saturation_ceiling_follows_the_loss_terms():
    from vgg_caffe.train.divergence import saturation_loss

    def net(loss_layer):
        body = SOLVER_NET.replace('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }',
                                  loss_layer)
        return Net(body, "TRAIN")
    ceiling = -math.log(FLT_MIN)
    plain = 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }'
    assert saturation_loss(net(plain)) == pytest.approx(ceiling * (1 - 1e-4))
    weighted = plain.replace('top: "loss" }', 'top: "loss" loss_weight: 2 }')
    assert saturation_loss(net(weighted)) == pytest.approx(2 * ceiling * (1 - 1e-4))
    # NONE divides by nothing: its value has no fixed ceiling, so no guard beyond NaN / inf.
    none = plain.replace('top: "loss" }', 'top: "loss" loss_param { normalization: NONE } }')
    assert saturation_loss(net(none)) is None
    euclid = ('layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }')
    text = SOLVER_NET.replace('top: "label" input_param { shape { dim: 4 dim: 5 } shape { dim: 4 } }',
                              'top: "target" input_param { shape { dim: 4 dim: 5 } shape { dim: 4 dim: 3 } }')
    assert saturation_loss(Net(text.replace(plain, euclid), "TRAIN")) is None


# 2. Geometry: Caffe's CHECKs at build time, with one message in Net, info, time and draw_net ------

GEOMETRY = {
    "stride 0": ("kernel_size: 3 pad: 1", "kernel_size: 3 pad: 1 stride: 0", "convolution_param stride (0, 0) must be positive"),
    "kernel 0": ("kernel_size: 3 pad: 1", "kernel_size: 0 pad: 1", "convolution_param kernel (0, 0) must be positive"),
    "num_output 0": ("num_output: 4", "num_output: 0", "num_output is required and must be positive, got 0"),
    "dilation 0": ("kernel_size: 3 pad: 1", "kernel_size: 3 pad: 1 dilation: 0", "convolution_param dilation (0, 0)"),
    "kernel_size and kernel_h": ("kernel_size: 3", "kernel_size: 3 kernel_h: 3 kernel_w: 3", "not both"),
    "kernel_h alone": ("kernel_size: 3", "kernel_h: 3", "kernel_h is given without kernel_w"),
}


@pytest.mark.parametrize("what", list(GEOMETRY))
def test_geometry_error_is_the_same_in_every_tool(tmp_path, what):
    old, new, message = GEOMETRY[what]
    path = write(tmp_path, "net.prototxt", net_text(_sub(LAYERS, "conv1", old, new)))
    lines = set()
    for tool, argv in (("Net", [path]), ("info", [path]), ("time", [path, "-iterations", "1"]),
                       ("draw_net", [path, str(tmp_path / "o.dot")])):
        r = run(tool, *argv)
        assert r.code == 1 and "Traceback" not in r.output, (tool, r.output)
        lines.add(r.stderr.strip().splitlines()[-1])   # time says its precision first
    assert len(lines) == 1, lines
    line = lines.pop()
    assert line.startswith(f"error: {path}: layer 'conv1' (Convolution): ") and message in line
    assert not (tmp_path / "o.dot").exists()


@pytest.mark.parametrize("kind", ["Convolution", "Deconvolution", "Pooling"])
def test_pair_checks_are_shared_by_every_geometry_layer(kind):
    """Convolution, Deconvolution and Pooling resolve kernel/stride/pad through base.pair, so a
    zero stride reads the same in all (Caffe: "Stride dimensions must be nonzero" in each)."""
    param = "pooling_param { kernel_size: 2 stride: 0 }" if kind == "Pooling" else \
        "convolution_param { num_output: 2 kernel_size: 2 stride: 0 }"
    text = (f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 2 dim: 6 dim: 6 }} }} }}'
            f'layer {{ name: "g" type: "{kind}" bottom: "data" top: "g" {param} }}')
    field = "pooling_param" if kind == "Pooling" else "convolution_param"
    with pytest.raises(CaffeError, match=rf"layer 'g' \({kind}\): {field} stride \(0, 0\) must be positive"):
        Net(text)


def test_a_repeated_scalar_field_is_refused_with_its_line(tmp_path):
    text = net_text(_sub(LAYERS, "fc", "num_output: 3", "num_output: 3 num_output: 5"))
    path = write(tmp_path, "net.prototxt", text)
    r = run("info", path)
    assert r.code == 1 and f"{path}:8:" in r.stderr and "more than once" in r.stderr


def test_two_producers_of_one_top(tmp_path):
    layers = list(LAYERS)
    layers.insert(3, 'layer { name: "copy" type: "ReLU" bottom: "data" top: "conv1" }')
    path = write(tmp_path, "net.prototxt", net_text(layers))
    # conv1 was written last by relu1 (in place): that is the producer named.
    with pytest.raises(CaffeError, match=r"layer 'copy' \(ReLU\): top 'conv1' is already produced by layer 'relu1'"):
        Net(path)
    # In place is not a second producer (Caffe's ReLU relu1 rewrites conv1).
    Net(write(tmp_path, "ok.prototxt", net_text(LAYERS)), "TRAIN")


# 3. Memory bounded before it is allocated; prototxt size bounded before it is parsed ------------

def test_blob_and_parameter_memory_checked_before_allocation(monkeypatch):
    monkeypatch.setattr(machine, "available_bytes", lambda: 100 << 20)   # a machine with 100 MB free
    big_top = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 50 dim: 1024 dim: 1024 } } }')
    with pytest.raises(CaffeError, match=r"layer 'data' \(Input\): top 'data' of shape \(50, 1024, 1024\) would need "
                                         r"200\.0 MB \(52,428,800 values of 4 bytes\), more than the 100\.0 MB"):
        Net(big_top)
    big_param = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1000 } } }'
                 'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 30000 } }')
    allocated = []
    monkeypatch.setattr(torch, "zeros", lambda *a, **k: allocated.append(a) or torch.empty(0))
    with pytest.raises(CaffeError, match=r"layer 'ip' \(InnerProduct\): learnable blob 0 of shape \(30000, 1000\) "
                                         r"would need 114\.4 MB"):
        Net(big_param)
    assert allocated == []                                   # refused before torch was asked


def test_memory_check_counts_what_the_machine_says():
    need = 30000 * 1000 * 4
    assert machine.human(need) == "114.4 MB" and machine.human(512) == "512 bytes"
    room = machine.available_bytes()
    with open("/proc/meminfo") as f:
        avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    assert room is not None and room <= avail * 1.05


def test_info_shows_a_net_too_big_for_this_machine_with_a_note(tmp_path):
    text = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 100000 } } }\n'
            'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 100000000 } }\n')
    path = write(tmp_path, "huge.prototxt", text)
    r = run("info", path)
    assert r.code == 0 and "10,000,100,000,000" in r.stdout   # 1e13 weights + 1e8 biases, shown on meta
    assert "note:" in r.stderr and "would refuse to build this net" in r.stderr
    assert run("Net", path).code == 1


def test_huge_prototxt_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.prototxt"
    with open(path, "wb") as f:
        f.truncate(50 << 20)          # 50 MB (sparse): reading or parsing it would take minutes
    start = time.perf_counter()
    r = run("info", str(path))
    assert time.perf_counter() - start < 5
    assert r.code == 1 and "50.0 MB of prototxt text, more than the 16.0 MB" in r.stderr
    small = write(tmp_path, "small.prototxt", net_text(LAYERS))
    assert run("info", small, env={"VGG_CAFFE_MAX_PROTOTXT_MB": "0.0005"}).code == 1
    assert run("info", small).code == 0


# 4. A Python layer whose module fails on import is named with its module and first line --------

@pytest.mark.parametrize("source,first", [
    ("x = 1\ndef f(:\n", r"SyntaxError: .*line 2"),
    ("raise RuntimeError('CUDA not found\\nsecond line of the message')\n", r"RuntimeError: CUDA not found$"),
    ("import json\njson.loads('{')\n", r"JSONDecodeError: Expecting property name"),
])
def test_python_layer_import_failure_is_named(tmp_path, monkeypatch, source, first):
    module = f"user_mod_{abs(hash(source)) % 10 ** 8}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    text = (f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 3 }} }} }}\n'
            f'layer {{ name: "mine" type: "Python" bottom: "data" top: "out" python_param {{ module: "{module}" layer: "L" }} }}\n')
    path = write(tmp_path, "py.prototxt", text)
    with pytest.raises(CaffeError) as err:
        Net(path)
    message = str(err.value)
    assert message.startswith(f"{path}: layer 'mine' (Python): importing module '{module}' failed: ")
    assert __import__("re").search(first, message) and "\n" not in message


# 5. A damaged caffemodel gets one message from every reader --------------------------------------

def test_every_reader_gives_the_same_message_for_a_damaged_blob(tmp_path):
    from corpus_weights import DEPLOY, tiny_model
    import random

    net = tiny_model(random.Random(5))
    net.layer[1].blobs[0].shape.dim[2] = -3
    weights = write(tmp_path, "w.caffemodel", net.SerializeToString())
    deploy = write(tmp_path, "deploy.prototxt", DEPLOY)
    expected = f"{weights}: corrupt caffemodel: layer 'conv1' blob 0: shape (2, 3, -3, 3) has a negative dimension (-3)"
    for tool, argv in (("info", [weights]), ("Net", [weights]), ("Net", [deploy, f"weights={weights}"]),
                       ("read_weights", [weights]), ("convert_caffemodel", [weights, str(tmp_path / "o.h5")]),
                       ("convert_caffemodel", ["--info", weights])):
        r = run(tool, *argv)
        assert r.code == 1 and r.stderr.strip() == f"error: {expected}", (tool, r.output)
    assert not (tmp_path / "o.h5").exists()


# 6. Long runs cannot lose their work --------------------------------------------------------------

def test_snapshot_prefix_under_a_file_fails_at_start(tmp_path):
    from vgg_caffe.train.solver import Solver

    (tmp_path / "afile").write_text("x")
    p = parse_text(f'net_param {{ {SOLVER_NET} }} base_lr: 0.01 lr_policy: "fixed" max_iter: 100000 '
                   f'snapshot_prefix: "{tmp_path}/afile/run"', pb.SolverParameter())
    start = time.perf_counter()
    with pytest.raises(CaffeError, match=r"snapshot_prefix .*afile is a file, not a directory"):
        Solver(p, train_feed=lambda *a: {})
    assert time.perf_counter() - start < 5


def test_atomic_open_under_a_regular_file_is_a_clear_error(tmp_path):
    from vgg_caffe.fileio import atomic_write

    (tmp_path / "afile").write_text("keep me")
    with pytest.raises(CaffeError, match=r"afile/sub/out.txt: cannot write the output there: .*afile is a file"):
        atomic_write(tmp_path / "afile" / "sub" / "out.txt", "data")
    with pytest.raises(CaffeError, match="it is a directory"):
        atomic_write(tmp_path, "data")
    assert (tmp_path / "afile").read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["afile"]


# 7. One bad image never stops a conversion or an evaluation ----------------------------------------

def _photos(tmp_path, n=3):
    rng = np.random.RandomState(0)
    (tmp_path / "imgs").mkdir(exist_ok=True)
    names = []
    for i in range(n):
        cv2.imwrite(str(tmp_path / "imgs" / f"p{i}.png"), rng.randint(0, 256, (12, 12, 3)).astype(np.uint8))
        names.append(f"p{i}.png")
    return names


def test_convert_imageset_skips_pixel_bombs_and_int32_overflow(tmp_path):
    names = _photos(tmp_path)
    (tmp_path / "imgs" / "bomb.png").write_bytes(png_header(60000, 30000))
    lines = [f"{names[0]} 0", "bomb.png 1", f"{names[1]} {2 ** 31}", f"{names[2]} 2"]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    r = run("convert_imageset", tmp_path / "imgs", tmp_path / "list.txt", tmp_path / "db", "--quiet")
    assert r.code == 0, r.output
    report = (tmp_path / "db.skipped.txt").read_text().splitlines()
    assert report == ["list line 3\tp1.png 2147483648\tlabel 2147483648 does not fit Datum's int32 label "
                      "([-2147483648, 2147483647])",
                      "00000001_bomb.png\tbomb.png\tthe header claims 60000x30000 = 1,800,000,000 pixels, more than "
                      "OpenCV decodes (CV_IO_MAX_IMAGE_PIXELS = 1,073,741,824)"]
    from vgg_caffe.data.db import Reader
    assert [k.decode() for k, _ in Reader(str(tmp_path / "db")).items()] == ["00000000_p0.png", "00000002_p2.png"]


def _eval_setup(tmp_path):
    from corpus_runs import EVAL_DEPLOY

    names = _photos(tmp_path, 4)
    write(tmp_path, "deploy.prototxt", EVAL_DEPLOY)
    Net(EVAL_DEPLOY, "TEST", seed=3).save(str(tmp_path / "w.caffemodel"))
    (tmp_path / "imgs" / "bomb.png").write_bytes(png_header(50000, 50000))
    (tmp_path / "imgs" / "cut.png").write_bytes((tmp_path / "imgs" / names[0]).read_bytes()[:40])
    lines = [f"{names[0]} 0", "bomb.png 1", f"{names[1]} 1", "cut.png 2", names[2], f"{names[3]} 2"]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    return ["--model", str(tmp_path / "deploy.prototxt"), "--weights", str(tmp_path / "w.caffemodel"),
            "--data", str(tmp_path / "imgs"), str(tmp_path / "list.txt"), "--protocol", "single",
            "--scales", "8", "--quiet", "--device", "cpu", "--out", str(tmp_path / "r.json")]


def test_evaluate_stops_at_a_bad_image_unless_skip_bad(tmp_path):
    import json

    argv = _eval_setup(tmp_path)
    r = run("evaluate", *argv)
    assert r.code == 1 and f"{tmp_path}/list.txt:5: expected 'path label', found 'p2.png'" in r.stderr
    assert not (tmp_path / "r.json").exists()
    lines = (tmp_path / "list.txt").read_text().splitlines()
    (tmp_path / "list.txt").write_text("\n".join(lines[:4]) + "\n")
    r = run("evaluate", *argv)
    assert r.code == 1 and f"{tmp_path}/list.txt:2: {tmp_path}/imgs/bomb.png: the header claims" in r.stderr
    assert not (tmp_path / "r.json").exists()
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    r = run("evaluate", *argv, "--skip-bad")
    assert r.code == 0, r.output
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert rows[0]["images"] == 3                       # 6 lines: a bomb, a truncated file, no label
    skipped = (tmp_path / "r.skipped.txt").read_text().splitlines()
    assert [s.split("\t")[0] for s in skipped] == [f"{tmp_path}/list.txt:5", f"{tmp_path}/list.txt:2",
                                                   f"{tmp_path}/list.txt:4"]
    assert "skipped 3 image(s)" in r.stderr


# 8. Errors name the file; devices are checked before any work --------------------------------------

def test_include_exclude_and_unknown_filler_name_the_file(tmp_path):
    both = net_text(_sub(LAYERS, "loss", 'top: "loss"', 'top: "loss" include { phase: TRAIN } exclude { stage: "x" }'))
    path = write(tmp_path, "a.prototxt", both)
    with pytest.raises(CaffeError, match=rf"^{path}: layer 'loss' \(SoftmaxWithLoss\): specify include rules or exclude"):
        Net(path)
    filler = net_text(_sub(LAYERS, "conv1", 'type: "gaussian" std: 0.1', 'type: "gauss"'))
    path = write(tmp_path, "b.prototxt", filler)
    message = rf"^{path}: layer 'conv1' \(Convolution\): convolution_param.weight_filler: unknown filler type 'gauss'"
    with pytest.raises(CaffeError, match=message):
        Net(path)
    with pytest.raises(CaffeError, match=message):   # also when weights will replace the fillers
        Net(path, weights=str(tmp_path / "whatever.caffemodel"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_clear_in_evaluate_and_demo(tmp_path):
    argv = _eval_setup(tmp_path)
    argv[argv.index("--device") + 1] = "cuda"
    r = run("evaluate", *argv)
    assert r.code == 1 and r.stderr.strip() == "error: --device cuda: no CUDA device is available on this machine " \
                                               "(use --device cpu)"
    out = tmp_path / "demo"
    r = run("demo", "--out", str(out), "--quick", "--device", "cuda")
    assert r.code == 1 and "no CUDA device" in r.stderr and "Traceback" not in r.output
    assert not out.exists()                          # no data was built


# 9. Traps in the API and tools --------------------------------------------------------------------

def test_net_takes_level_stages_and_weights_as_keywords(tmp_path):
    path = write(tmp_path, "n.prototxt", net_text(LAYERS))
    with pytest.raises(TypeError, match=r"keyword arguments; got 1 more positional: 'w.caffemodel'; a weights file "
                                        r"goes as weights="):
        Net(path, "TEST", "w.caffemodel")
    with pytest.raises(TypeError, match=r"level is an integer .*pass weights='w.caffemodel'"):
        Net(path, "TEST", level="w.caffemodel")
    with pytest.raises(TypeError, match="stages is a list of strings"):
        Net(path, "TEST", stages="deploy")
    assert Net(path, "TEST", level=1, stages=["a"]).level == 1


def _vgg_weights(config, lrn=False):
    """Layers of a VGG configuration at 1/64 width (names and kernels as Table 1)."""
    from vgg_caffe.vgg.configs import get_config

    rng = np.random.RandomState(0)
    layers, channels = {}, 3
    for stage in get_config(config).stages:
        for conv in stage:
            w = max(1, conv.width // 64)
            layers[conv.name] = ("Convolution", [rng.randn(w, channels, conv.kernel, conv.kernel).astype(np.float32),
                                                 rng.randn(w).astype(np.float32)])
            channels = w
            if lrn and conv.name == "conv1_1":
                layers["norm1"] = ("LRN", [])
    for name, k in (("fc6", channels * 49), ("fc7", 64), ("fc8", 64)):
        layers[name] = ("InnerProduct", [rng.randn(64 if name != "fc8" else 10, k).astype(np.float32),
                                         rng.randn(64 if name != "fc8" else 10).astype(np.float32)])
    return layers


def test_torchvision_refuses_configuration_c_and_warns_for_a_lrn(tmp_path):
    from vgg_caffe.io import write_weights

    write_weights(str(tmp_path / "c.caffemodel"), _vgg_weights("C"))
    r = run("convert_caffemodel", tmp_path / "c.caffemodel", tmp_path / "c.pth", "--torchvision")
    assert r.code == 1 and "configuration C (1x1 convolutions): conv3_3 1x1, conv4_3 1x1, conv5_3 1x1" in r.stderr
    assert not (tmp_path / "c.pth").exists()
    write_weights(str(tmp_path / "a.caffemodel"), _vgg_weights("A", lrn=True))
    r = run("convert_caffemodel", tmp_path / "a.caffemodel", tmp_path / "a.pth", "--torchvision")
    assert r.code == 0 and "warning:" in r.stderr and "norm1" in r.stderr and "not A-LRN" in r.stderr
    assert "features.0.weight" in torch.load(tmp_path / "a.pth", weights_only=True)
    write_weights(str(tmp_path / "plain.caffemodel"), _vgg_weights("A"))
    r = run("convert_caffemodel", tmp_path / "plain.caffemodel", tmp_path / "plain.pth", "--torchvision")
    assert r.code == 0 and "warning" not in r.stderr


def test_raw_datum_is_byte_identical_to_caffes(tmp_path):
    """Caffe's CVMatToDatum sets encoded: false, so each raw record ends with field 7 = 0, the two
    bytes 0x38 0x00; the reference is that Datum built field by field."""
    names = _photos(tmp_path, 1)
    (tmp_path / "list.txt").write_text(f"{names[0]} 4\n")
    assert run("convert_imageset", tmp_path / "imgs", tmp_path / "list.txt", tmp_path / "db", "--quiet").code == 0
    from vgg_caffe.data.db import Reader
    [(key, value)] = list(Reader(str(tmp_path / "db")).items())
    img = cv2.imread(str(tmp_path / "imgs" / names[0]), cv2.IMREAD_COLOR)
    caffe = pb.Datum()
    caffe.channels, caffe.height, caffe.width = 3, 12, 12
    caffe.data = img.transpose(2, 0, 1).tobytes()
    caffe.label = 4
    caffe.encoded = False
    assert value == caffe.SerializeToString()
    assert value.endswith(b"\x38\x00")
    caffe.ClearField("encoded")
    assert value == caffe.SerializeToString() + b"\x38\x00"


def test_plateau_without_a_test_net_is_refused_at_start():
    from vgg_caffe.train.lr_policy import LrSchedule

    p = parse_text(f'net_param {{ {SOLVER_NET} }} base_lr: 0.1 lr_policy: "plateau"', pb.SolverParameter())
    with pytest.raises(CaffeError, match=r"<solver>: lr_policy 'plateau' .* no test pass \(0 test net\(s\), test_interval 0\)"):
        LrSchedule(p, "<solver>")
    p.test_iter.append(1)
    with pytest.raises(CaffeError, match=r"1 test net\(s\), test_interval 0"):
        LrSchedule(p, "<solver>")
    p.test_interval = 10
    assert LrSchedule(p, "<solver>").policy == "plateau"
