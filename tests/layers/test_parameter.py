"""Parameter: one learnable blob of parameter_param.shape as the top; zero until loaded (Caffe has
no filler for it), trained through whatever reads it, loaded from blobs stored in the model;
errors for a missing shape and for bottoms."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net
from vgg_caffe.proto import parse_text, pb

NET = '''
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "p" type: "Parameter" top: "p" parameter_param { shape { dim: 2 dim: 3 } } }
layer { name: "prod" type: "Eltwise" bottom: "x" bottom: "p" top: "y" eltwise_param { operation: PROD } }
layer { name: "sum" type: "Reduction" bottom: "y" top: "loss" loss_weight: 1 }
'''


def test_parameter_is_a_learnable_top():
    net = Net(NET, phase="TRAIN", seed=0)
    assert net.blob_shapes["p"] == (2, 3) and [tuple(b.shape) for b in net.params["p"]] == [(2, 3)]
    assert not net.params["p"][0].detach().any()  # no filler: zeros, as Caffe's fresh blob
    with torch.no_grad():
        net.params["p"][0].copy_(torch.arange(6.0).reshape(2, 3))
    x = torch.randn(2, 3)
    out = net(x=x)
    torch.testing.assert_close(out["loss"], (x * torch.arange(6.0).reshape(2, 3)).sum())
    net.backward()
    torch.testing.assert_close(net.params["p"][0].grad, x)  # d sum(x * p) / dp


def test_parameter_loads_stored_blobs():
    model = parse_text(NET, pb.NetParameter())
    blob = model.layer[1].blobs.add()
    blob.shape.dim.extend([2, 3])
    blob.data.extend([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    net = Net(model)
    np.testing.assert_array_equal(net.params["p"][0].detach().numpy(), [[1, 2, 3], [4, 5, 6]])


def test_parameter_errors(make_layer):
    with pytest.raises(CaffeError, match=r"layer 'p' \(Parameter\): parameter_param.shape is required"):
        make_layer('name: "p" type: "Parameter" top: "p"', [])
    with pytest.raises(CaffeError, match=r"layer 'p' \(Parameter\) takes exactly 0 bottom"):
        Net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 } } }\n'
            'layer { name: "p" type: "Parameter" bottom: "x" top: "p" parameter_param { shape { dim: 2 } } }')


def test_parameter_gradcheck(make_layer):
    layer = make_layer('name: "p" type: "Parameter" top: "p" parameter_param { shape { dim: 3 } }', []).double()
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: torch.func.functional_call(layer, {"blobs.0": w}, ()) ** 2, (w,))
