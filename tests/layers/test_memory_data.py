"""MemoryData: arrays served in order and wrapping, the DataTransformer on add_images, errors."""
import itertools

import numpy as np
import pytest
import torch

from vgg_caffe import Net
from vgg_caffe.errors import CaffeError
from vgg_caffe.proto import pb

NET = '''name: "mem"
layer { name: "m" type: "MemoryData" top: "data" top: "label"
  memory_data_param { batch_size: 2 channels: 3 height: 4 width: 5 } %s }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }'''


def arrays(n, seed=0):
    g = np.random.default_rng(seed)
    return g.standard_normal((n, 3, 4, 5)).astype(np.float32), (np.arange(n) % 4).astype(np.float32)


def test_batches_in_order_wrapping_around():
    net = Net(NET % "", "TRAIN", seed=0)
    assert net.blob_shapes["data"] == (2, 3, 4, 5) and net.blob_shapes["label"] == (2,)
    data, labels = arrays(6)
    net.layer("m").set_input_arrays(data, labels)
    for step in range(7):  # 3 batches per pass over the 6 rows, so pass 3 starts over
        net()
        rows = [(2 * step) % 6, (2 * step + 1) % 6]
        assert torch.equal(net.blobs["data"], torch.from_numpy(data[rows]))
        assert torch.equal(net.blobs["label"], torch.from_numpy(labels[rows]))
    net.backward()
    assert net.params["ip"][0].grad.abs().sum() > 0


def test_set_input_arrays_starts_again_at_row_zero():
    net = Net(NET % "", "TEST")
    layer = net.layer("m")
    layer.set_input_arrays(*arrays(4, 0))
    net()
    second, labels = arrays(4, 1)
    layer.set_input_arrays(second, labels * 0 + 3)  # int-valued labels of any dtype are accepted
    net()
    assert torch.equal(net.blobs["data"], torch.from_numpy(second[:2]))
    assert torch.equal(net.blobs["label"], torch.full((2,), 3.0))


def test_labels_as_n111_and_slices():
    layer = Net(NET % "").layer("m")
    data, labels = arrays(4)
    layer.set_input_arrays(data, labels.reshape(4, 1, 1, 1))
    d, l = layer.batch(0, 1, 2)
    assert torch.equal(d, torch.from_numpy(data[1:2])) and torch.equal(l, torch.from_numpy(labels[1:2]))


def test_arrays_are_not_transformed_and_a_warning_says_so():
    net = Net(NET % "transform_param { scale: 0.5 mean_value: 10 }")
    data, labels = arrays(2)
    with pytest.warns(UserWarning, match="does not transform"):
        net.layer("m").set_input_arrays(data, labels)
    net()
    assert torch.equal(net.blobs["data"], torch.from_numpy(data))


def _transform_candidates(img, crop, mean, scale, train, mirror):
    """Every output Caffe's DataTransformer can give: out[c, h, w] = (x[c, y + h, x + w] - mean[c]) * scale
    at offsets anywhere (TRAIN) or (H - crop) / 2 (TEST), mirrored along w when a coin says so."""
    x = img.transpose(2, 0, 1).astype(np.float64)
    _c, H, W = x.shape
    ys = range(H - crop + 1) if train else [(H - crop) // 2]
    xs = range(W - crop + 1) if train else [(W - crop) // 2]
    out = []
    for y0, x0, flip in itertools.product(ys, xs, [False, True] if mirror else [False]):
        patch = (x[:, y0:y0 + crop, x0:x0 + crop] - np.asarray(mean)[:, None, None]) * scale
        out.append(patch[:, :, ::-1] if flip else patch)
    return out


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_add_images_applies_the_data_transformer(phase):
    net = Net('''layer { name: "m" type: "MemoryData" top: "data" top: "label"
        memory_data_param { batch_size: 4 channels: 3 height: 5 width: 5 }
        transform_param { crop_size: 5 mirror: true scale: 0.25 mean_value: 100 mean_value: 50 mean_value: 20 } }''',
              phase)
    g = np.random.default_rng(3)
    images = [g.integers(0, 256, (8, 9, 3), dtype=np.uint8) for _ in range(8)]
    layer = net.layer("m")
    layer.add_images(images, range(8))
    seen_flip = set()
    for step in range(2):
        net()
        for j in range(4):
            k = 4 * step + j
            got = net.blobs["data"][j].double().numpy()
            cands = _transform_candidates(images[k], 5, [100, 50, 20], 0.25, phase == "TRAIN", True)
            match = [i for i, c in enumerate(cands) if np.allclose(got, c, atol=1e-5)]
            assert match, f"sample {k} is no crop/mirror of its image"
            seen_flip.add(match[0] % 2)
        assert net.blobs["label"].tolist() == [float(4 * step + j) for j in range(4)]
    assert seen_flip == {0, 1}  # 8 mirror coins came up both ways


def test_add_datums_and_the_consumption_rule():
    layer = Net('''layer { name: "m" type: "MemoryData" top: "data" top: "label"
        memory_data_param { batch_size: 1 channels: 1 height: 2 width: 2 } }''').layer("m")
    datums = [pb.Datum(channels=1, height=2, width=2, data=bytes([i, 2, 3, 4]), label=i) for i in (7, 9)]
    layer.add_datums(datums)
    with pytest.raises(CaffeError, match="consumed"):
        layer.add_datums(datums)
    d, l = layer.batch(0)
    assert d.tolist() == [[[[7.0, 2.0], [3.0, 4.0]]]] and l.tolist() == [7.0]
    layer.batch(1)                 # the last row served: new data may come in
    layer.add_datums(datums[::-1])
    assert layer.batch(2)[1].tolist() == [9.0]


def test_errors():
    net = Net(NET % "")
    layer = net.layer("m")
    with pytest.raises(CaffeError, match=r"layer 'm' \(MemoryData\).*set_input_arrays"):
        net()
    data, labels = arrays(3)
    with pytest.raises(CaffeError, match=r"layer 'm'.*multiple of batch_size \(2\)"):
        layer.set_input_arrays(data, labels)
    with pytest.raises(CaffeError, match=r"shape \(N, 3, 4, 5\)"):
        layer.set_input_arrays(np.zeros((2, 3, 5, 4), np.float32), labels[:2])
    with pytest.raises(CaffeError, match="labels must have shape"):
        layer.set_input_arrays(data[:2], labels)
    with pytest.raises(CaffeError, match="memory_data_param.*positive.*height=0"):
        Net('layer { name: "m" type: "MemoryData" top: "d" top: "l" '
            'memory_data_param { batch_size: 2 channels: 3 width: 4 } }')
    with pytest.raises(CaffeError, match="takes exactly 2 top"):
        Net('layer { name: "m" type: "MemoryData" top: "d" '
            'memory_data_param { batch_size: 2 channels: 3 height: 4 width: 4 } }')
