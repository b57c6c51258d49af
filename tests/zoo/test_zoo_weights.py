"""Weight files of zoo nets: every stored blob survives .caffemodel and HDF5 round trips.

Each net's blobs are set to random values (BatchNorm statistics with a factor != 1 included),
saved with Net.save, read back into a net of zeros with Net(weights=...), and compared exactly.
The files themselves are read independently: the .caffemodel with protobuf's own parser of our
schema (one BlobProto per blob, in Caffe's order and shapes), the .h5 with h5py (Caffe's
/data/<layer>/<index> layout).
"""
import os

import h5py
import numpy as np
import pytest
import torch
from zoo_data import NETS

from vgg_caffe import Net
from vgg_caffe.proto import pb

# layer type -> the blob shapes Caffe stores, for stored_blobs.prototxt's sizes.
EXPECTED = {
    "conv": [(4, 3, 3, 3), (4,)],
    "bn": [(4,), (4,), (1,)],                    # mean sum, variance sum, scale factor
    "scale": [(4,), (4,)],
    "prelu": [(4,)],                             # one slope per channel
    "deconv": [(4, 3, 2, 2), (3,)],              # (input channels, output / group, kh, kw)
    "bias": [(3,)],
    "prelu_shared": [()],                        # channel_shared: a 0-axis blob of one value
    "ip": [(5, 432), (5,)],
    "embed": [(7, 4), (4,)],
    "lstm": [(24, 5), (24,), (24, 6)],           # W_xc (4H, D), b_c (4H,), W_hc (4H, H)
    "rnn": [(3, 5), (3,), (3, 3), (3, 3), (3,)],  # W_xh, b_h, W_hh, W_ho, b_o
    "param": [(2, 3)],
}


def randomise(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.layers.values():
            for i, blob in enumerate(layer.blobs):
                blob.copy_(torch.randn(blob.shape, generator=g))
                if layer.type == "BatchNorm" and i > 0:
                    blob.abs_().add_(0.5)  # variance and factor positive, factor != 1
    return {name: [b.detach().clone() for b in blobs] for name, blobs in net.params.items()}


def blob_dims(blob):
    return tuple(blob.shape.dim) if blob.HasField("shape") else tuple(
        d for d in (blob.num, blob.channels, blob.height, blob.width))


@pytest.mark.parametrize("suffix", [".caffemodel", ".h5"])
def test_stored_blobs_round_trip(tmp_path, suffix):
    path = os.path.join(NETS, "stored_blobs.prototxt")
    net = Net(path, "TEST", seed=0)
    assert {n: [tuple(b.shape) for b in bl] for n, bl in net.params.items()} == EXPECTED
    values = randomise(net)
    out = str(tmp_path / f"blobs{suffix}")
    net.save(out)
    if suffix == ".caffemodel":
        stored = pb.NetParameter()
        with open(out, "rb") as f:
            stored.ParseFromString(f.read())
        by_name = {lp.name: lp for lp in (stored.layer or stored.layers)}
        for name, blobs in values.items():
            assert len(by_name[name].blobs) == len(blobs), name
            for b, want in zip(by_name[name].blobs, blobs):
                assert int(np.prod(blob_dims(b))) == want.numel()
                np.testing.assert_array_equal(np.asarray(b.data, np.float32), want.numpy().ravel())
    else:
        with h5py.File(out, "r") as f:
            for name, blobs in values.items():
                assert sorted(f["data"][name].keys(), key=int) == [str(i) for i in range(len(blobs))]
                for i, want in enumerate(blobs):
                    np.testing.assert_array_equal(np.asarray(f["data"][name][str(i)]).reshape(want.shape), want.numpy())
    back = Net(path, "TEST", weights=out)
    for name, blobs in values.items():
        for i, (got, want) in enumerate(zip(back.params[name], blobs)):
            assert torch.equal(got.detach(), want), f"{name}[{i}]"
    # The reloaded net computes what the saved one did.
    g = torch.Generator().manual_seed(5)
    feeds = {"data": torch.randn(2, 3, 6, 6, generator=g), "ids": torch.randint(0, 7, (2, 3), generator=g).float(),
             "seq": torch.randn(4, 2, 5, generator=g), "cont": torch.tensor([[0.0, 0.0], [1, 1], [1, 0], [1, 1]])}
    with torch.no_grad():
        a, b = net(**feeds), back(**feeds)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["resnet50_deploy", "lstm_language_model", "mnist_siamese_train_test"])
@pytest.mark.parametrize("suffix", [".caffemodel", ".h5"])
def test_zoo_net_round_trip(in_zoo, tmp_path, name, suffix):
    path = os.path.join(NETS, name + ".prototxt")
    net = Net(path, "TRAIN", seed=0)
    values = randomise(net)
    out = str(tmp_path / f"{name}{suffix}")
    net.save(out)
    back = Net(path, "TRAIN", fill=False, weights=out)
    for layer, blobs in values.items():
        for i, (got, want) in enumerate(zip(back.params[layer], blobs)):
            assert torch.equal(got.detach(), want), f"{layer}[{i}]"
    if name == "mnist_siamese_train_test":
        # Shared blobs are stored with their owner and still shared after loading.
        assert back.params["conv1"][0] is back.params["conv1_p"][0]
