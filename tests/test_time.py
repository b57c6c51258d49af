"""python -m vgg_caffe.time: every layer reported with forward and backward times, in both phases."""
import json

import pytest

from vgg_caffe import time as caffe_time
from vgg_caffe.errors import CaffeError

NET = '''
name: "tiny"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
        transform_param { crop_size: 12 } data_param { source: "nowhere_lmdb" batch_size: 2 backend: LMDB } }
layer { name: "data" type: "Input" top: "data" top: "label" include { phase: TEST }
        input_param { shape { dim: 1 dim: 3 dim: 12 dim: 12 } shape { dim: 1 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc" include { phase: TEST } }
'''


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_time_reports_every_layer(tmp_path, capsys, phase):
    proto, out = tmp_path / "tiny.prototxt", tmp_path / "time.json"
    proto.write_text(NET)
    report = caffe_time.main([str(proto), "-iterations", "2", "-phase", phase, "--json", str(out)])
    names = [r["name"] for r in report["layers"]]
    want = ["conv1", "relu1", "pool1", "fc", "loss"] + (["acc"] if phase == "TEST" else [])
    assert names == want  # the TRAIN Data layer was replaced by its declared shape: no database opened
    assert all(r["forward_ms"] > 0 and r["backward_ms"] >= 0 for r in report["layers"])
    assert report["forward_ms"] > 0 and report["backward_ms"] > 0
    assert report["forward_backward_ms"] == pytest.approx(report["forward_ms"] + report["backward_ms"])
    text = capsys.readouterr().out
    assert "conv1\tforward:" in text and "Average Forward-Backward:" in text
    assert json.loads(out.read_text())["layers"][0]["name"] == "conv1"


def test_time_shape_error_names_file_and_layer(tmp_path):
    proto = tmp_path / "tiny.prototxt"
    proto.write_text(NET)
    with pytest.raises(CaffeError, match=r"tiny.prototxt: layer 'fc'"):
        caffe_time.main([str(proto), "-iterations", "1", "--input-shape", "data=2,3,16,16"])
