"""caffe.Net's constructor forms and their misuse, what a net lists (blobs, layers, names, inputs,
outputs, loss weights), weights in and out (.caffemodel and HDF5, read back independently), and
share_with."""
import h5py
import numpy as np
import pytest
from pycaffe_helpers import inputs, write

from vgg_caffe.errors import CaffeError
from vgg_caffe.io.caffemodel import read_weights


@pytest.fixture
def trained(caffe, small_path, tmp_path):
    """A TEST net with random weights and the .caffemodel it saved."""
    net = caffe.Net(str(small_path), caffe.TEST)
    path = str(tmp_path / "w.caffemodel")
    net.save(path)
    return net, path


def test_constructor_forms(caffe, small_path, trained):
    ref, weights = trained
    model = str(small_path)
    nets = [caffe.Net(model, caffe.TEST, weights=weights),
            caffe.Net(model, weights, caffe.TEST),                       # legacy order
            caffe.Net(network_file=model, phase=caffe.TEST, weights=weights),
            caffe.Net(model, caffe.TEST, 0, None, weights)]
    x = inputs()[0]
    expected = ref.forward(data=x)["prob"].copy()
    for net in nets:
        np.testing.assert_array_equal(net.forward(data=x)["prob"], expected)
    assert caffe.Net(model, caffe.TRAIN).inputs == ["data", "label"]
    staged = caffe.Net(model, caffe.TEST, level=2, stages=["deploy"])
    assert staged.outputs == ["prob"]


@pytest.mark.parametrize("args, kwargs, message", [
    (("M", 1, "w.caffemodel"), {}, r"Net\(str, int, str\): the argument after the phase is level.*weights="),
    (("M", "TEST"), {}, r"phase must be caffe.TRAIN \(0\) or caffe.TEST \(1\), got 'TEST'"),
    (("M", 3), {}, "phase must be caffe.TRAIN"),
    (("M", "w.caffemodel"), {}, r"phase must be .*the weights file goes after the phase"),
    (("M",), {}, "network_file and phase are required"),
    (("M", 1), {"weight": "w"}, r"unknown keyword argument\(s\) \['weight'\]"),
    (("M", 1), {"stages": "deploy"}, "stages must be a list of strings"),
    (("M", 1), {"phase": 0}, "'phase' given twice"),
    ((3, 1), {}, "network_file must be a path"),
])
def test_misuse_fails_as_pycaffe_with_a_clear_message(caffe, small_path, args, kwargs, message):
    args = tuple(str(small_path) if a == "M" else a for a in args)
    with pytest.raises(caffe.ArgumentError, match=message) as info:
        caffe.Net(*args, **kwargs)
    assert isinstance(info.value, TypeError)   # Boost.Python's ArgumentError is a TypeError
    assert "Net(network_file, phase, level=0, stages=None, weights=None)" in str(info.value)


def test_missing_files(caffe, small_path, tmp_path):
    with pytest.raises(CaffeError, match="Could not open file .*nope.prototxt"):
        caffe.Net(str(tmp_path / "nope.prototxt"), caffe.TEST)
    with pytest.raises(CaffeError, match="Could not open file .*nope.caffemodel"):
        caffe.Net(str(small_path), caffe.TEST, weights=str(tmp_path / "nope.caffemodel"))


def test_what_a_net_lists(caffe, small_path):
    net = caffe.Net(str(small_path), caffe.TRAIN)
    assert list(net.blobs) == ["data", "label", "conv1", "pool1", "fc", "fc2", "loss"]
    assert net._layer_names == ["data", "label", "conv1", "relu1", "pool1", "fc", "fc2", "loss"]
    assert [l.type for l in net.layers] == ["Input", "Input", "Convolution", "ReLU", "Pooling", "InnerProduct",
                                           "InnerProduct", "SoftmaxWithLoss"]
    assert list(net.layer_dict) == net._layer_names and net.layer_dict["fc"].type == "InnerProduct"
    assert list(net.params) == ["conv1", "fc", "fc2"]
    assert [b.shape for b in net.params["fc"]] == [(6, 5 * 5 * 6), (6,)]
    assert net.layer_dict["conv1"].blobs[0] is net.params["conv1"][0]
    assert net.top_names["relu1"] == ["conv1"] and net.bottom_names["loss"] == ["fc2", "label"]
    assert net.inputs == ["data", "label"] and net.outputs == ["loss"]
    assert net._inputs == [0, 1] and net._outputs == [6]
    assert net.blob_loss_weights["loss"] == 1.0 and net.blob_loss_weights["fc2"] == 0.0
    assert net._top_ids(3) == [2] and net._bottom_ids(7) == [5, 1]
    # Caffe's SetLossWeights: a loss top's diff is its weight, so backward starts from it
    assert net.blobs["loss"].diff == 1.0


def test_save_writes_a_caffemodel_read_back_independently(trained):
    net, path = trained
    stored = read_weights(path)
    assert [n for n, (_, arrays) in stored.items() if arrays] == ["conv1", "fc", "fc2"]
    for name, blobs in net.params.items():
        for array, blob in zip(stored[name][1], blobs):
            np.testing.assert_array_equal(array, blob.data)


def test_copy_from_and_hdf5_round_trip(caffe, small_path, trained, tmp_path):
    ref, weights = trained
    net = caffe.Net(str(small_path), caffe.TEST)
    assert not np.array_equal(net.params["fc"][0].data, ref.params["fc"][0].data)
    net.copy_from(weights)
    np.testing.assert_array_equal(net.params["fc"][0].data, ref.params["fc"][0].data)
    h5 = str(tmp_path / "weights.bin")   # HDF5 whatever the name, as Net::ToHDF5
    ref.save_hdf5(h5)
    with h5py.File(h5, "r") as f:
        np.testing.assert_array_equal(f["data/conv1/0"][()], ref.params["conv1"][0].data)
        assert sorted(f["data"]) == sorted(ref._layer_names)
    other = caffe.Net(str(small_path), caffe.TEST)
    other.load_hdf5(h5)
    np.testing.assert_array_equal(other.params["conv1"][1].data, ref.params["conv1"][1].data)


def test_share_with(caffe, small_path):
    a, b = caffe.Net(str(small_path), caffe.TRAIN), caffe.Net(str(small_path), caffe.TEST)
    b.share_with(a)
    a.params["fc"][0].data[...] = 1.5
    assert (b.params["fc"][0].data == 1.5).all()
    assert b.params["fc"][0].data_tensor.data_ptr() == a.params["fc"][0].data_tensor.data_ptr()


def test_share_with_refuses_other_shapes(caffe, small_path, tmp_path):
    wider = write(tmp_path, "wide.prototxt", small_path.read_text().replace("num_output: 6", "num_output: 7"))
    with pytest.raises(CaffeError, match="cannot share param 0 of layer 'fc'"):
        caffe.Net(wider, caffe.TEST).share_with(caffe.Net(str(small_path), caffe.TEST))


def test_netparameter_model_and_set_input_arrays_refusal(caffe, small_path):
    from vgg_caffe.proto import read_net

    net = caffe.Net(read_net(str(small_path)), caffe.TEST)
    assert net.outputs == ["prob"]
    with pytest.raises(CaffeError, match="first layer is a MemoryData layer"):
        net.set_input_arrays(np.zeros((4, 3, 9, 11), np.float32), np.zeros(4, np.float32))


MEMORY = '''
layer { name: "mem" type: "MemoryData" top: "data" top: "label"
        memory_data_param { batch_size: 2 channels: 1 height: 2 width: 2 } }
layer { name: "flat" type: "Flatten" bottom: "data" top: "flat" }
'''


def test_set_input_arrays_feeds_memory_data(caffe, tmp_path):
    net = caffe.Net(write(tmp_path, "mem.prototxt", MEMORY), caffe.TEST)
    data = np.arange(16, dtype=np.float32).reshape(4, 1, 2, 2)
    net.set_input_arrays(data, np.arange(4, dtype=np.float32))
    first = net.forward()
    np.testing.assert_array_equal(first["flat"], data[:2].reshape(2, 4))
    np.testing.assert_array_equal(first["label"], [0, 1])
    np.testing.assert_array_equal(net.forward()["flat"], data[2:].reshape(2, 4))
