"""tools/net_surgery.py: the released-VGG-style V1 files (a V1 prototxt and a V1 caffemodel with
legacy 4-d dims, written here) to the dense pair and back, checked with OpenCV's Caffe importer."""
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from test_dense import randomise, small_vgg, write_caffemodel
from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net
from vgg_caffe.proto import pb, read_net
from vgg_caffe.io.caffemodel import read_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import net_surgery  # noqa: E402


@pytest.fixture(scope="module")
def v1_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("surgery")
    fc = randomise(Net(small_vgg(v1=True)), seed=7)
    (d / "deploy.prototxt").write_text(small_vgg(v1=True))
    write_caffemodel(str(d / "w.caffemodel"), fc, v1=True)
    return d, fc


@pytest.mark.parametrize("suffix", [".caffemodel", ".h5"])
def test_to_dense_and_back(v1_pair, suffix):
    d, fc = v1_pair
    dense_model, dense_w = d / "dense.prototxt", d / f"w_dense{suffix}"
    net_surgery.main(["to-dense", "--model", str(d / "deploy.prototxt"), "--weights", str(d / "w.caffemodel"),
                      "--out-model", str(dense_model), "--out-weights", str(dense_w)])
    types = {lp.name: lp.type for lp in read_net(str(dense_model)).layer}
    assert types["fc6"] == types["fc7"] == types["fc8"] == "Convolution"
    stored = read_weights(str(dense_w))
    assert stored["fc6"][1][0].shape == (16, 16, 4, 4)
    if suffix == ".caffemodel":  # Caffe's HDF5 layout stores no layer types
        assert stored["fc6"][0] == "Convolution"
    assert stored["fc8"][1][0].shape == (5, 16, 1, 1) and stored["fc8"][1][1].shape == (5,)

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 60
    want = fc(data=x)["prob"].detach()
    dense = Net(str(dense_model), weights=str(dense_w))
    got = dense(data=x)["prob"].detach()
    torch.testing.assert_close(got.flatten(1), want, atol=1e-5, rtol=1e-5)
    if suffix == ".caffemodel":
        # An independent runtime on the converted files (OpenCV reads the current format too).
        ref = cv2.dnn.readNetFromCaffe(str(dense_model), str(dense_w))
        ref.setInput(x.numpy())
        np.testing.assert_allclose(ref.forward().reshape(2, 5), want.numpy(), atol=1e-5)

    back_model, back_w = d / "back.prototxt", d / f"w_back{suffix}"
    net_surgery.main(["to-fc", "--model", str(dense_model), "--weights", str(dense_w),
                      "--out-model", str(back_model), "--out-weights", str(back_w)])
    assert [lp.type for lp in read_net(str(back_model)).layer] == \
        [lp.type for lp in read_net(str(d / "deploy.prototxt")).layer]
    orig, back = read_weights(str(d / "w.caffemodel")), read_weights(str(back_w))
    assert list(orig) == list(back)
    for name in orig:
        if suffix == ".caffemodel":
            assert orig[name][0] == back[name][0]
        for a, b in zip(orig[name][1], back[name][1]):
            np.testing.assert_array_equal(a, b)


def test_prototxt_alone_and_selected_layers(v1_pair, tmp_path):
    d, _ = v1_pair
    changes = net_surgery.main(["to-dense", "--model", str(d / "deploy.prototxt"), "--layers", "fc6",
                                "--out-model", str(tmp_path / "dense.prototxt")])
    assert [c.name for c in changes] == ["fc6"]
    types = {lp.name: lp.type for lp in read_net(str(tmp_path / "dense.prototxt")).layer}
    assert types["fc6"] == "Convolution" and types["fc7"] == "InnerProduct"


def test_command_line_errors_are_one_line(v1_pair, tmp_path):
    d, _ = v1_pair
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "net_surgery.py"), "to-dense",
                          "--model", str(d / "deploy.prototxt"), "--weights", str(d / "w.caffemodel"),
                          "--out-model", str(tmp_path / "x.prototxt")],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 1
    assert run.stderr.strip() == "error: --out-weights is required with --weights"
    other = tmp_path / "other.caffemodel"
    other.write_bytes(pb.NetParameter(layer=[pb.LayerParameter(name="conv9", type="Convolution")]).SerializeToString())
    with pytest.raises(Exception, match="no layer 'fc6'"):
        net_surgery.main(["to-dense", "--model", str(d / "deploy.prototxt"), "--weights", str(other),
                          "--out-model", str(tmp_path / "y.prototxt"), "--out-weights", str(tmp_path / "y.caffemodel")])


def test_errors_name_the_files_given(v1_pair, tmp_path):
    d, fc = v1_pair
    out = ["--out-model", str(tmp_path / "z.prototxt"), "--out-weights", str(tmp_path / "z.caffemodel")]
    # A mistake in the prototxt, found while building the net: named by the prototxt's path.
    bad = tmp_path / "relu.prototxt"
    bad.write_text(small_vgg().replace('type: "ReLU"', 'type: "Relu"', 1))
    assert 'type: "Relu"' in bad.read_text()
    for direction in ("to-dense", "to-fc"):
        with pytest.raises(CaffeError, match=rf"^{re.escape(str(bad))}: layer 'relu1_1': unknown layer type 'Relu'"):
            net_surgery.main([direction, "--model", str(bad)] + out)
    # Weights that do not fit the net: named by the weights file's path.
    small = randomise(Net(small_vgg(fc=8)), seed=1)
    wrong = str(tmp_path / "fc8wide.caffemodel")
    write_caffemodel(wrong, small)
    with pytest.raises(CaffeError, match=rf"^{re.escape(wrong)}: layer 'fc6': blob 0 has"):
        net_surgery.main(["to-dense", "--model", str(d / "deploy.prototxt"), "--weights", wrong] + out)
    # --weights without --out-weights is refused before anything is written.
    with pytest.raises(CaffeError, match="--out-weights is required with --weights"):
        net_surgery.main(["to-dense", "--model", str(d / "deploy.prototxt"), "--weights", str(d / "w.caffemodel"),
                          "--out-model", str(tmp_path / "w.prototxt")])
    assert not (tmp_path / "w.prototxt").exists()
