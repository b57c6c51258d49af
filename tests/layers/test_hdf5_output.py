"""HDF5Output: bottoms saved as "data" and "label" in Caffe's 4-D layout, read back with h5py."""
import os

import h5py
import numpy as np
import pytest
import torch

from vgg_caffe import Net
from vgg_caffe.errors import CaffeError


def net_text(path, data_shape=(3, 5), label_shape=(3,)):
    dims = lambda s: " ".join(f"dim: {d}" for d in s)
    return f'''name: "dump"
        layer {{ name: "in" type: "Input" top: "data" top: "label"
          input_param {{ shape {{ {dims(data_shape)} }} shape {{ {dims(label_shape)} }} }} }}
        layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
          inner_product_param {{ num_output: 2 weight_filler {{ type: "gaussian" std: 1 }} }} }}
        layer {{ name: "out" type: "HDF5Output" bottom: "ip" bottom: "label"
          hdf5_output_param {{ file_name: "{path}" }} }}'''


def test_forward_writes_data_and_label_in_legacy_4d(tmp_path):
    path = tmp_path / "dump.h5"
    net = Net(net_text(path), seed=0)
    assert not path.exists()  # nothing is written before the first forward pass
    x = torch.randn(3, 5)
    label = torch.tensor([1.0, 0.0, 2.0])
    net(data=x, label=label)
    w, b = net.params["ip"]
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["data", "label"]
        assert f["data"].shape == (3, 2, 1, 1) and f["data"].dtype == np.float32
        assert f["label"].shape == (3, 1, 1, 1)
        np.testing.assert_allclose(f["data"][:, :, 0, 0], (x @ w.t() + b).detach().numpy(), rtol=1e-6)
        np.testing.assert_array_equal(f["label"][:, 0, 0, 0], label.numpy())


def test_every_pass_appends_and_the_file_is_replaced_atomically(tmp_path):
    path = tmp_path / "dump.h5"
    net = Net(net_text(path, (2, 4, 3, 3), (2, 1)).replace('type: "InnerProduct"', 'type: "ReLU"')
              .replace("inner_product_param { num_output: 2 weight_filler { type: \"gaussian\" std: 1 } }", ""))
    batches = [(torch.randn(2, 4, 3, 3), torch.tensor([[i], [i + 0.5]])) for i in range(3)]
    for k, (x, y) in enumerate(batches, 1):
        net(data=x, label=y)
        with h5py.File(path, "r") as f:
            assert f["data"].shape == (2 * k, 4, 3, 3) and f["label"].shape == (2 * k, 1, 1, 1)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["data"][:], torch.cat([x.clamp(min=0) for x, _ in batches]).numpy())
        np.testing.assert_array_equal(f["label"][:, :, 0, 0], torch.cat([y for _, y in batches]).numpy())
    assert os.listdir(tmp_path) == ["dump.h5"]  # no temporary files left behind


def test_mismatched_rows_fail_before_touching_the_file(tmp_path):
    path = tmp_path / "dump.h5"
    path.write_bytes(b"previous")
    net = Net(net_text(path))
    layer = net.layer("out")
    with pytest.raises(CaffeError, match="same number of rows"):
        layer(torch.zeros(3, 2), torch.zeros(2))
    assert path.read_bytes() == b"previous"


def test_bad_nets():
    with pytest.raises(CaffeError, match=r"layer 'out' \(HDF5Output\).*file_name is required"):
        Net(net_text("").replace('file_name: ""', ""))
    with pytest.raises(CaffeError, match="same number of rows"):
        Net(net_text("x.h5", (3, 5), (4,)))
    with pytest.raises(CaffeError, match="takes exactly 2 bottom"):
        Net(net_text("x.h5").replace('bottom: "label"\n', "\n"))
    with pytest.raises(CaffeError, match="1 to 4 axes"):
        Net(net_text("x.h5", (3, 5), (3, 1, 1, 1, 1)))


def test_a_scripted_net_still_writes(tmp_path):
    path = tmp_path / "dump.h5"
    net = Net(net_text(path), seed=0)
    scripted = torch.jit.script(net.to_module(["ip"]))
    x, label = torch.randn(3, 5), torch.tensor([0.0, 1.0, 2.0])
    ip = scripted(x, label)
    with h5py.File(path, "r") as f:
        np.testing.assert_allclose(f["data"][:, :, 0, 0], ip.detach().numpy(), rtol=1e-6)
        np.testing.assert_array_equal(f["label"][:, 0, 0, 0], label.numpy())
