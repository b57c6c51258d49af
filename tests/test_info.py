"""`python -m vgg_caffe.info`: parameter counts equal Table 2 of the paper, multiply-adds and
receptive fields equal the formulas written out here, and TRAIN nets are shown without their data.
"""
import os
import re
import subprocess
import sys

import pytest

from vgg_caffe import info
from vgg_caffe.errors import CaffeError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTOTXT = os.path.join(ROOT, "prototxt")

# Table 2 of the paper ("Number of parameters (in millions)"), the exact counts.
TABLE2 = {"A": 132_863_336, "A-LRN": 132_863_336, "B": 133_047_848, "C": 133_638_952,
          "D": 138_357_544, "E": 143_667_240}

# Configuration D as (kernel, width) per stage, for the hand-written formulas below.
D_STAGES = [[(3, 64)] * 2, [(3, 128)] * 2, [(3, 256)] * 3, [(3, 512)] * 3, [(3, 512)] * 3]


@pytest.mark.parametrize("config", sorted(TABLE2))
def test_parameter_totals_equal_table2(config):
    rows, totals = info.summarize(os.path.join(PROTOTXT, config, "deploy.prototxt"))
    assert totals["params"] == TABLE2[config]
    assert sum(r.params for r in rows) == TABLE2[config]
    # The training net has the same learnable blobs.
    _, train = info.summarize(os.path.join(PROTOTXT, config, "train_val_S256.prototxt"), "TRAIN")
    assert train["params"] == TABLE2[config]


def test_multiply_adds_and_receptive_fields_of_d():
    rows, totals = info.summarize(os.path.join(PROTOTXT, "D", "deploy.prototxt"), input_shapes={"data": (1, 3, 224, 224)})
    by_name = {r.name: r for r in rows}
    size, channels, macs = 224, 3, 0
    rf, jump = 1, 1
    for s, stage in enumerate(D_STAGES, start=1):
        for i, (k, width) in enumerate(stage, start=1):
            layer_macs = k * k * channels * width * size * size     # pad 1 keeps the size
            rf += (k - 1) * jump
            r = by_name[f"conv{s}_{i}"]
            assert (r.macs, r.rf, r.tops[0][1]) == (layer_macs, (rf, jump), (1, width, size, size))
            macs += layer_macs
            channels = width
        rf, jump, size = rf + jump, jump * 2, size // 2                # 2x2 max-pool, stride 2
        assert by_name[f"pool{s}"].rf == (rf, jump)
    assert by_name["conv5_3"].rf == (196, 16) and by_name["pool5"].rf == (212, 32)
    fc = [(channels * size * size, 4096), (4096, 4096), (4096, 1000)]
    for i, (k_in, n) in enumerate(fc, start=6):
        assert by_name[f"fc{i}"].macs == k_in * n
        macs += k_in * n
    assert by_name["fc6"].rf[0] == 212 + (size - 1) * 32                 # fc6 sees the whole image
    assert totals["macs"] == macs
    assert totals["outputs"] == ["prob"]


def test_train_phase_uses_declared_data_shapes():
    path = os.path.join(PROTOTXT, "A-LRN", "train_val_S384.prototxt")
    rows, totals = info.summarize(path, "TRAIN")
    assert rows[0].type == "Python" and rows[0].tops == [("data", (256, 3, 224, 224)), ("label", (256,))]
    assert [r.name for r in rows][-1] == "loss" and totals["outputs"] == ["loss"]
    rows, totals = info.summarize(path, "TEST")
    assert rows[0].type == "Data" and rows[0].tops == [("data", (50, 3, 224, 224)), ("label", (50,))]
    assert totals["outputs"] == ["accuracy", "accuracy_top5", "loss"]   # by name, as Caffe's std::set
    assert "norm1" in [r.name for r in rows]
    rows, _ = info.summarize(path, "TEST", {"data": (2, 3, 64, 64), "label": (2,)})
    assert rows[0].tops[0][1] == (2, 3, 64, 64) and [r for r in rows if r.name == "fc8"][0].tops[0][1] == (2, 1000)


def test_dense_net_any_size():
    rows, totals = info.summarize(os.path.join(PROTOTXT, "E", "deploy_dense.prototxt"),
                                  input_shapes={"data": (1, 3, 384, 384)})
    by_name = {r.name: r for r in rows}
    assert by_name["pool5"].tops[0][1] == (1, 512, 12, 12)
    assert by_name["prob"].tops[0][1] == (1, 1000, 6, 6)
    assert totals["params"] == TABLE2["E"]


def test_bad_input(tmp_path):
    with pytest.raises(CaffeError, match="expected BLOB=D1,D2"):
        info.parse_shape_arg("data=1,3,x")
    with pytest.raises(CaffeError, match="expected BLOB"):
        info.parse_shape_arg("1,3,224,224")
    assert info.parse_shape_arg("data=1,3,8,8") == ("data", (1, 3, 8, 8))
    with pytest.raises(CaffeError, match="--input-shape names images, but the net's inputs are data"):
        info.summarize(os.path.join(PROTOTXT, "A", "deploy.prototxt"), input_shapes={"images": (1, 3, 8, 8)})
    path = tmp_path / "nocrop.prototxt"
    path.write_text('layer { name: "d" type: "Data" top: "data" top: "label" data_param { source: "x" batch_size: 4 } }\n')
    with pytest.raises(CaffeError, match=r"layer 'd' \(Data\) does not declare.*--input-shape data=N,C,H,W"):
        info.summarize(str(path))
    rows, _ = info.summarize(str(path), input_shapes={"data": (4, 1, 28, 28), "label": (4,)})
    assert rows[0].tops == [("data", (4, 1, 28, 28)), ("label", (4,))]
    with pytest.raises(CaffeError, match="expected TRAIN or TEST"):
        info.summarize(str(path), "VAL")


def test_cli(tmp_path):
    result = subprocess.run([sys.executable, "-m", "vgg_caffe.info", os.path.join(PROTOTXT, "C", "deploy.prototxt"),
                             "--input-shape", "data=1,3,224,224"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    total = [l for l in lines if l.startswith("total")][0].split()
    assert total[1] == f"{TABLE2['C']:,}"
    conv33 = [l for l in lines if l.startswith("conv3_3 ")][0].split()  # C's 1x1 convolution
    assert conv33[:4] == ["conv3_3", "Convolution", "1x256x56x56", f"{256 * 256 + 256:,}"]
    assert conv33[4] == f"{256 * 256 * 56 * 56:,}" and conv33[5:] == ["32", "4"]  # a 1x1 kernel does not widen the field
    bad = subprocess.run([sys.executable, "-m", "vgg_caffe.info", str(tmp_path / "missing.prototxt")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1 and "no such file" in bad.stderr and "Traceback" not in bad.stderr


TRAIN_VAL = """name: "tv"
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
        data_param {{ source: "{source}" batch_size: 4 backend: LMDB }} transform_param {{ crop_size: 8 }} }}
layer {{ name: "conv1_1" type: "{conv}" bottom: "data" top: "conv1_1"
        convolution_param {{ num_output: 2 kernel_size: 3 pad: 1 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "conv1_1" top: "fc"
        inner_product_param {{ num_output: 3 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }}
"""


def test_a_solver_snapshot_of_a_train_val_net_shows_its_train_phase(tmp_path):
    import numpy as np

    from vgg_caffe.data import datum as datum_io
    from vgg_caffe.data.db import Writer
    from vgg_caffe.proto import format_text, pb
    from vgg_caffe.train.solver import Solver
    from vgg_caffe.train.log import TrainingLog

    writer = Writer(str(tmp_path / "lmdb"))
    rng = np.random.default_rng(0)
    for i in range(4):
        writer.put(f"{i:08d}", datum_io.from_image(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8), i % 3)
                   .SerializeToString())
    writer.close()
    net = tmp_path / "train_val.prototxt"
    net.write_text(TRAIN_VAL.format(source=tmp_path / "lmdb", conv="Convolution"))
    solver = pb.SolverParameter(net=str(net), base_lr=0.01, lr_policy="fixed", max_iter=1,
                                snapshot_prefix=str(tmp_path / "snap"), solver_mode=pb.SolverParameter.CPU)
    (tmp_path / "solver.prototxt").write_text(format_text(solver))
    Solver(str(tmp_path / "solver.prototxt"), log=TrainingLog(enabled=False)).solve()
    snapshot = tmp_path / "snap_iter_1.caffemodel"
    assert snapshot.exists()
    result = subprocess.run([sys.executable, "-m", "vgg_caffe.info", str(snapshot)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "net tv, phase TRAIN"
    assert [l.split()[:3] for l in result.stdout.splitlines()[3:7]] == [
        ["data", "Data", "data"], ["conv1_1", "Convolution", "4x2x8x8"], ["fc", "InnerProduct", "4x3"],
        ["loss", "SoftmaxWithLoss", "scalar"]]
    note = result.stderr.strip().splitlines()
    assert len(note) == 1 and note[0].startswith(f"note: {snapshot}: showing the TRAIN net")
    assert "bottom 'data' is not the top of any earlier layer" in note[0] and "--phase" in note[0]
    # The library picks the phase only when asked to (phase=None); --phase TEST stays an error.
    _, totals = info.summarize(str(snapshot), None)
    assert totals["phase"] == "TRAIN" and totals["note"] == note[0][len("note: "):]
    with pytest.raises(CaffeError, match=rf"^{re.escape(str(snapshot))}: layer 'conv1_1' \(Convolution\): bottom 'data' is not"):
        info.summarize(str(snapshot), "TEST")
    explicit = subprocess.run([sys.executable, "-m", "vgg_caffe.info", str(snapshot), "--phase", "TEST"],
                              capture_output=True, text=True, cwd=ROOT)
    assert explicit.returncode == 1 and "bottom 'data' is not the top" in explicit.stderr


def test_when_neither_phase_builds_the_test_error_is_raised(tmp_path):
    # The TRAIN data layer declares no image size: the TEST error, with the hint to pass --phase TRAIN.
    path = tmp_path / "nocrop.prototxt"
    path.write_text(TRAIN_VAL.format(source="x", conv="Convolution").replace("transform_param { crop_size: 8 }", ""))
    with pytest.raises(CaffeError, match=r"bottom 'data' is not the top of any earlier layer \(in the default "
                                         r"TEST phase; pass --phase TRAIN to show the training net\)$"):
        info.summarize(str(path), None)
    with pytest.raises(CaffeError, match="does not declare its batch size"):
        info.summarize(str(path), "TRAIN")
    # A mistake that fails both phases the same way is reported as it is, without the hint.
    path = tmp_path / "unknown.prototxt"
    path.write_text(TRAIN_VAL.format(source="x", conv="Convolution").replace(" include { phase: TRAIN }", "")
                    .replace('type: "InnerProduct"', 'type: "Inner"'))
    with pytest.raises(CaffeError, match=r"unknown layer type 'Inner'[^(]*$"):
        info.summarize(str(path), None)


def test_errors_while_building_name_the_prototxt(tmp_path):
    path = tmp_path / "relu.prototxt"
    path.write_text(TRAIN_VAL.format(source="x", conv="Relu"))
    for phase in (None, "TRAIN", "TEST"):
        with pytest.raises(CaffeError, match=rf"^{re.escape(str(path))}: layer 'conv1_1': unknown layer type 'Relu'"):
            info.summarize(str(path), phase)
    result = subprocess.run([sys.executable, "-m", "vgg_caffe.info", str(path), "--phase", "TRAIN"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1 and result.stderr.startswith(f"error: {path}: layer 'conv1_1': unknown layer type 'Relu'")
    assert "<NetParameter>" not in result.stderr and "Traceback" not in result.stderr
