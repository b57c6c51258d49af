"""DummyData: shapes from `shape` or num/channels/height/width, fillers per top, refills per pass."""
import math

import pytest
import torch

from vgg_caffe import Net
from vgg_caffe.errors import CaffeError


def test_shape_once_for_all_tops_and_constant_default(make_layer):
    layer = make_layer('name: "d" type: "DummyData" top: "a" top: "b" '
                       'dummy_data_param { shape { dim: 2 dim: 3 dim: 4 } }', [])
    assert layer.top_shapes == [(2, 3, 4), (2, 3, 4)]
    a, b = layer.batch(0)
    # No data_filler: Caffe's constant 0.
    assert torch.equal(a, torch.zeros(2, 3, 4)) and torch.equal(b, torch.zeros(2, 3, 4))


def test_legacy_dims_once_or_per_top(make_layer):
    layer = make_layer('name: "d" type: "DummyData" top: "data" top: "label" '
                       'dummy_data_param { num: 5 channels: 3 channels: 1 height: 7 height: 1 width: 6 width: 1 }', [])
    assert layer.top_shapes == [(5, 3, 7, 6), (5, 1, 1, 1)]
    data, label = layer.batch(0)
    assert data.shape == (5, 3, 7, 6) and label.shape == (5, 1, 1, 1)


def test_one_filler_per_top_constant_stays_random_refills(make_layer):
    layer = make_layer('''name: "d" type: "DummyData" top: "x" top: "c"
        dummy_data_param { shape { dim: 100 dim: 40 } shape { dim: 3 }
          data_filler { type: "uniform" min: -2 max: 5 } data_filler { type: "constant" value: 2.5 } }''', [])
    x0, c0 = layer.batch(0)
    x1, c1 = layer.batch(1)
    assert torch.equal(c0, torch.full((3,), 2.5)) and torch.equal(c1, c0)
    for x in (x0, x1):
        assert x.min() >= -2 and x.max() <= 5
        # 4000 draws of U(-2, 5): mean 1.5, variance 49/12.
        assert abs(x.mean().item() - 1.5) < 0.15
        assert abs(x.var().item() - 49 / 12) < 0.4
    assert not torch.equal(x0, x1)                  # refilled on every pass
    assert torch.equal(layer.batch(1)[0], x1)       # a pure function of the iteration


def test_gaussian_filler_statistics(make_layer):
    layer = make_layer('name: "d" type: "DummyData" top: "g" dummy_data_param { shape { dim: 200 dim: 50 } '
                       'data_filler { type: "gaussian" mean: 3 std: 0.5 } }', [])
    (g,) = layer.batch(4)
    assert abs(g.mean().item() - 3) < 0.03 and abs(g.std().item() - 0.5) < 0.03


def test_xavier_filler_uses_the_top_shape(make_layer):
    # Caffe fills the top like a weight blob: fan_in = count / num = 30, bound sqrt(3 / 30).
    layer = make_layer('name: "d" type: "DummyData" top: "w" dummy_data_param { shape { dim: 400 dim: 30 } '
                       'data_filler { type: "xavier" } }', [])
    (w,) = layer.batch(0)
    bound = math.sqrt(3 / 30)
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound


def test_batch_slice_is_a_slice_of_the_whole_batch(make_layer):
    layer = make_layer('name: "d" type: "DummyData" top: "x" dummy_data_param { shape { dim: 8 dim: 3 } '
                       'data_filler { type: "gaussian" std: 1 } }', [])
    (whole,) = layer.batch(3)
    (part,) = layer.batch(3, 2, 5)
    assert torch.equal(part, whole[2:5])


def test_dummy_data_trains_a_net():
    net = Net('''name: "dummy"
        layer { name: "data" type: "DummyData" top: "data" top: "label"
          dummy_data_param { shape { dim: 4 dim: 6 } shape { dim: 4 }
            data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
          inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }''', "TRAIN", seed=1)
    out = net()
    ip = net.blobs["data"] @ net.params["ip"][0].t() + net.params["ip"][1]
    expected = -torch.log_softmax(ip, 1)[:, 1].mean()
    torch.testing.assert_close(out["loss"], expected)
    net.backward()
    assert net.params["ip"][0].grad.abs().sum() > 0


@pytest.mark.parametrize("param, field", [
    ('shape { dim: 2 } data_filler { type: "constant" } data_filler { } data_filler { }', "data_filler"),
    ('shape { dim: 2 } num: 2', "not both"),
    ('num: 2 num: 3 num: 4 channels: 1 height: 1 width: 1', "num"),
    ('shape { dim: 2 } shape { dim: 2 } shape { dim: 2 }', "shape"),
    ('shape { dim: 2 } data_filler { type: "gaussain" }', "gaussain"),
])
def test_bad_parameters_name_the_layer_and_field(make_layer, param, field):
    with pytest.raises(CaffeError, match=f"layer 'd' \\(DummyData\\).*{field}"):
        make_layer(f'name: "d" type: "DummyData" top: "a" top: "b" dummy_data_param {{ {param} }}', [])
