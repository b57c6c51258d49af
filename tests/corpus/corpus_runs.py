"""Corpus: solvers (solve) and evaluation inputs (evaluate): each fails at start-up, or at the
first bad image, naming the file, and writes no snapshot and no results."""
import json
import os

from corpus_cases import Case
from corpus_images import write_images, _list, png_header
from corpus_nets import LAYERS, _sub, net_text
from corpus_weights import _blob, tiny_model


# ----------------------------------------------------------------------------------------------
# Solvers
# ----------------------------------------------------------------------------------------------

SOLVER = ('net: "{d}/train.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 2\n'
          'snapshot_prefix: "{d}/snap/run"\nsolver_mode: CPU\nrandom_seed: 1\n')


def solver_cases(rng):
    cases = {
        "unknown_field": (lambda s: s + "base_lrr: 0.1\n", ("solver.prototxt:8:", "base_lrr")),
        "duplicate_field": (lambda s: s + "base_lr: 0.1\n", ("solver.prototxt:8:", "base_lr")),
        "syntax": (lambda s: s.replace("max_iter: 2", "max_iter 2"), ("solver.prototxt:4:",)),
        "no_net": (lambda s: s.replace('net: "{d}/train.prototxt"\n', ""), ("solver.prototxt", "net")),
        "net_missing": (lambda s: s.replace("train.prototxt", "nope.prototxt"), ("nope.prototxt", "does not exist")),
        "unknown_policy": (lambda s: s.replace('"fixed"', '"cosine"'), ("solver.prototxt", "cosine")),
        "plateau_no_test": (lambda s: s.replace('"fixed"', '"plateau"'), ("solver.prototxt", "plateau", "test")),
        "step_no_stepsize": (lambda s: s.replace('"fixed"', '"step"'), ("solver.prototxt", "stepsize")),
        "snapshot_under_file": (lambda s: s.replace("{d}/snap/run", "{d}/afile/run"), ("snapshot_prefix", "afile")),
        "negative_max_iter": (lambda s: s.replace("max_iter: 2", "max_iter: -5"), ("solver.prototxt", "max_iter")),
        "iter_size_0": (lambda s: s + "iter_size: 0\n", ("solver.prototxt", "iter_size")),
        "unknown_type": (lambda s: s + 'type: "SGDD"\n', ("solver.prototxt", "SGDD")),
        "average_loss_0": (lambda s: s + "average_loss: 0\n", ("solver.prototxt", "average_loss")),
        "regularization": (lambda s: s + 'regularization_type: "L3"\n', ("solver.prototxt", "L3")),
        "test_interval_0": (lambda s: s + "test_iter: 1\n", ("solver.prototxt", "test_interval")),
        "test_net_no_iter": (lambda s: s + 'test_net: "{d}/train.prototxt"\n', ("solver.prototxt", "test_iter")),
        "net_geometry": (None, ("train.prototxt", "'pool1'", "stride")),
        "weights_damaged": (lambda s: s + 'weights: "{d}/w.caffemodel"\n', ("w.caffemodel", "negative dimension")),
    }
    out = []
    for name, (edit, expect) in cases.items():
        def build(d, edit=edit, name=name):
            layers = _sub(LAYERS, "pool1", "stride: 2", "stride: 0") if name == "net_geometry" else LAYERS
            with open(os.path.join(d, "train.prototxt"), "w") as f:
                f.write(net_text(layers))
            with open(os.path.join(d, "afile"), "w") as f:
                f.write("a regular file")
            net = tiny_model(rng)
            _blob(net, "conv1", 0).shape.dim[0] = -2
            with open(os.path.join(d, "w.caffemodel"), "wb") as f:
                f.write(net.SerializeToString())
            text = (edit(SOLVER) if edit else SOLVER).replace("{d}", d)
            with open(os.path.join(d, "solver.prototxt"), "w") as f:
                f.write(text)
            return [os.path.join(d, "solver.prototxt")]
        out.append(Case(f"solver/{name}/solve", "solve", build, tuple(e.replace("{d}/", "") for e in expect),
                        absent=("snap",), keep={"afile": b"a regular file"}))

    def both(d):
        argv = solver_cases_base(d)
        return argv + ["--weights", os.path.join(d, "w.caffemodel"), "--snapshot", os.path.join(d, "x.solverstate")]
    out.append(Case("solver/weights_and_snapshot/solve", "solve", both, ("not both",), absent=("snap",)))

    def bad_state(d):
        argv = solver_cases_base(d)
        with open(os.path.join(d, "x.solverstate"), "wb") as f:
            f.write(b"\xff\xff\xff\xff\x0fnot a solver state")
        return argv + ["--snapshot", os.path.join(d, "x.solverstate")]
    out.append(Case("solver/damaged_solverstate/solve", "solve", bad_state, ("x.solverstate",), absent=("snap",)))
    return out


def solver_cases_base(d):
    with open(os.path.join(d, "train.prototxt"), "w") as f:
        f.write(net_text(LAYERS))
    with open(os.path.join(d, "solver.prototxt"), "w") as f:
        f.write(SOLVER.replace("{d}", d))
    return [os.path.join(d, "solver.prototxt")]


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------

EVAL_DEPLOY = ('name: "evalnet"\n'
               'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
               'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
               'convolution_param { num_output: 2 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }\n'
               'layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" '
               'inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }\n'
               'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }\n')


def _eval_files(d, rng, deploy=EVAL_DEPLOY):
    """deploy.prototxt, w.caffemodel (its filled weights), an image folder and list; argv head."""
    from vgg_caffe.net import Net

    with open(os.path.join(d, "deploy.prototxt"), "w") as f:
        f.write(deploy)
    Net(EVAL_DEPLOY, "TEST", seed=rng.randrange(1000)).save(os.path.join(d, "w.caffemodel"))
    names = write_images(d, rng, 2, size=(12, 12))
    _list(d, [f"{n} {i}" for i, n in enumerate(names)])
    return names


def evaluate_cases(rng):
    import torch

    out = []

    def case(name, build, expect):
        out.append(Case(f"evaluate/{name}/evaluate", "evaluate", build, expect, absent=("r.json", "r.csv")))

    def argv(d, model="deploy.prototxt", weights="w.caffemodel", data=None, *extra):
        data = data or [os.path.join(d, "imgs"), os.path.join(d, "list.txt")]
        return ["--model", os.path.join(d, model), "--weights", os.path.join(d, weights), "--data", *data,
                "--protocol", "single", "--scales", "8", "--quiet", "--device", "cpu", "--out",
                os.path.join(d, "r.json"), *extra]

    def model_missing(d):
        _eval_files(d, rng)
        return argv(d, model="nope.prototxt")
    case("model_missing", model_missing, ("nope.prototxt",))

    def model_geometry(d):
        _eval_files(d, rng, EVAL_DEPLOY.replace("kernel_size: 3", "kernel_size: 3 stride: 0"))
        return argv(d)
    case("model_stride_0", model_geometry, ("deploy.prototxt", "'conv1'"))

    def weights_damaged(d):
        _eval_files(d, rng)
        net = tiny_model(rng)
        _blob(net, "fc", 1).shape.dim[0] = -1
        with open(os.path.join(d, "bad.caffemodel"), "wb") as f:
            f.write(net.SerializeToString())
        return argv(d, weights="bad.caffemodel")
    case("weights_damaged", weights_damaged, ("bad.caffemodel", "'fc' blob 1"))

    def weights_other_net(d):
        _eval_files(d, rng)
        with open(os.path.join(d, "other.caffemodel"), "wb") as f:
            f.write(tiny_model(rng).SerializeToString())
        return argv(d, weights="other.caffemodel")
    case("weights_of_another_net", weights_other_net, ("other.caffemodel",))

    def data_missing(d):
        _eval_files(d, rng)
        return argv(d, data=[os.path.join(d, "nolmdb")])
    case("data_lmdb_missing", data_missing, ("nolmdb",))

    def list_no_label(d):
        names = _eval_files(d, rng)
        _list(d, [f"{names[0]} 0", names[1]])
        return argv(d)
    case("list_line_without_label", list_no_label, ("list.txt:2",))

    def image_missing(d):
        names = _eval_files(d, rng)
        _list(d, [f"{names[0]} 0", "gone.png 1"])
        return argv(d)
    case("image_missing", image_missing, ("list.txt:2", "gone.png"))

    def header_bomb(d):
        names = _eval_files(d, rng)
        with open(os.path.join(d, "imgs", "bomb.png"), "wb") as f:
            f.write(png_header(50000, 40000))
        _list(d, ["bomb.png 0", f"{names[1]} 1"])
        return argv(d)
    case("image_header_too_many_pixels", header_bomb, ("list.txt:1", "header claims"))

    def mean_damaged(d):
        _eval_files(d, rng)
        with open(os.path.join(d, "mean.binaryproto"), "wb") as f:
            f.write(b"\xff\xff\xff\xff\x0fnot a blob")
        return argv(d) + ["--mean-file", os.path.join(d, "mean.binaryproto")]
    case("mean_file_damaged", mean_damaged, ("mean.binaryproto",))

    def mean_json_damaged(d):
        _eval_files(d, rng)
        with open(os.path.join(d, "mean.json"), "w") as f:
            json.dump({"mean_pixel_bgr": [1, 2]}, f)
        return argv(d) + ["--mean-file", os.path.join(d, "mean.json")]
    case("mean_json_damaged", mean_json_damaged, ("mean.json",))

    def out_under_file(d):
        _eval_files(d, rng)
        with open(os.path.join(d, "afile"), "w") as f:
            f.write("x")
        a = argv(d)
        a[a.index("--out") + 1] = os.path.join(d, "afile", "r.json")
        return a
    case("out_under_a_file", out_under_file, ("afile",))

    def bad_scales(d):
        _eval_files(d, rng)
        a = argv(d)
        a[a.index("--scales") + 1] = "8,big"
        return a
    case("scales_not_integers", bad_scales, ("--scales",))

    def bad_protocol(d):
        _eval_files(d, rng)
        a = argv(d)
        a[a.index("--protocol") + 1] = "tencrop"
        return a
    case("unknown_protocol", bad_protocol, ("tencrop",))

    if not torch.cuda.is_available():
        def cuda(d):
            _eval_files(d, rng)
            a = argv(d)
            a[a.index("--device") + 1] = "cuda"
            return a
        case("device_cuda_without_cuda", cuda, ("--device cuda", "no CUDA"))
    return out
