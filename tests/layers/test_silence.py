"""Silence: consumes its bottoms (they stop being net outputs), has no tops, and gives them a zero
gradient; a top is refused."""
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net

NET = '''
layer { name: "in" type: "Input" top: "x" top: "label" input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "copy" type: "Split" bottom: "fc" top: "fc_a" top: "fc_b" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc_a" bottom: "label" top: "loss" }
layer { name: "quiet" type: "Silence" bottom: "fc_b" bottom: "x" }
'''


def test_silence_consumes_bottoms_and_adds_no_gradient():
    net = Net(NET, phase="TRAIN", seed=0)
    assert net.output_names == ["loss"]  # fc_b and x are silenced
    x, label = torch.randn(4, 3), torch.tensor([0.0, 2.0, 1.0, 2.0])
    net(x=x, label=label)
    net.backward()
    with_silence = [p.grad.clone() for p in net.params["fc"]]
    # The same net without the Silence layer: the gradients are identical (Silence adds zero).
    plain = Net(NET.replace('layer { name: "quiet" type: "Silence" bottom: "fc_b" bottom: "x" }', ""),
                phase="TRAIN", seed=0)
    plain(x=x, label=label)
    plain.backward()
    for a, p in zip(with_silence, plain.params["fc"]):
        torch.testing.assert_close(a, p.grad)


def test_silence_layer_alone(make_layer):
    layer = make_layer('name: "s" type: "Silence" bottom: "a" bottom: "b"', [(2, 3), (4,)])
    assert layer.top_shapes == []
    a = torch.randn(2, 3, requires_grad=True)
    assert layer([a, torch.randn(4)]) == []
    assert torch.jit.script(layer)([a, torch.randn(4)]) == []


def test_silence_counts():
    with pytest.raises(CaffeError, match=r"layer 'quiet' \(Silence\) takes exactly 0 top"):
        Net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 } } }\n'
            'layer { name: "quiet" type: "Silence" bottom: "x" top: "y" }')
    with pytest.raises(CaffeError, match=r"layer 'quiet' \(Silence\) takes at least 1 bottom"):
        Net('layer { name: "quiet" type: "Silence" }')
