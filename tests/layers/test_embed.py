"""Embed: weight[index] + bias against numpy, the (K, N) weight blob, the accumulating weight
gradient (numpy.add.at), gradcheck on the blobs, and errors: missing parameters at set-up, an
index out of range or not an integer at run time, naming the layer."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net


def embed(make_layer, params, shape, rng):
    layer = make_layer(f'name: "emb" type: "Embed" bottom: "words" embed_param {{ {params} }}', [shape])
    with torch.no_grad():
        for b in layer.blobs:
            b.copy_(torch.from_numpy(rng.standard_normal(tuple(b.shape))))
    return layer.double()


@pytest.mark.parametrize("bias", [True, False])
def test_embed_matches_numpy(make_layer, bias):
    rng = np.random.default_rng(0)
    layer = embed(make_layer, f"num_output: 4 input_dim: 6 bias_term: {str(bias).lower()}", (2, 3), rng)
    assert layer.blob_shapes() == [(6, 4)] + ([(4,)] if bias else [])
    index = np.array([[0, 5, 2], [2, 2, 1]])
    w = layer.blobs[0].detach().numpy()
    want = w[index] + (layer.blobs[1].detach().numpy() if bias else 0)
    assert layer.top_shapes[0] == (2, 3, 4)
    got = layer(torch.from_numpy(index.astype(np.float64)))
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12)


def test_embed_gradients(make_layer):
    rng = np.random.default_rng(1)
    layer = embed(make_layer, "num_output: 3 input_dim: 5", (4,), rng)
    index = np.array([1, 3, 1, 1])
    x = torch.from_numpy(index.astype(np.float64))
    assert torch.autograd.gradcheck(lambda w, b: torch.func.functional_call(
        layer, {"blobs.0": w, "blobs.1": b}, (x,)), (layer.blobs[0], layer.blobs[1]))
    g = torch.randn(4, 3, dtype=torch.float64)
    gw, gb = torch.autograd.grad(layer(x), list(layer.blobs), g)
    want = np.zeros((5, 3))
    np.add.at(want, index, g.numpy())  # Caffe's axpy of each top row into its weight row
    np.testing.assert_allclose(gw.numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(gb.numpy(), g.numpy().sum(0), rtol=1e-12)


def test_embed_fills_from_its_fillers(make_layer):
    layer = make_layer('name: "emb" type: "Embed" embed_param { num_output: 3 input_dim: 4 '
                       'weight_filler { type: "constant" value: 2 } bias_filler { type: "constant" value: -1 } }',
                       [(2,)])
    layer.fill()
    np.testing.assert_array_equal(layer(torch.tensor([3.0, 0.0])).detach().numpy(), np.ones((2, 3)))


@pytest.mark.parametrize("index,match", [([0, 5], "index 5 .*not an integer in \\[0, 5\\)"),
                                         ([-1], "index -1 "), ([1.5], "index 1.5 ")])
def test_embed_bad_index_at_run_time(make_layer, index, match):
    layer = embed(make_layer, "num_output: 2 input_dim: 5", (len(index),), np.random.default_rng(2))
    with pytest.raises(CaffeError, match=r"layer 'emb' \(Embed\): " + match):
        layer(torch.tensor(index, dtype=torch.float64))


@pytest.mark.parametrize("params,match", [("input_dim: 5", "num_output is required"),
                                          ("num_output: 2", "input_dim .*is required")])
def test_embed_parameter_errors(make_layer, params, match):
    with pytest.raises(CaffeError, match=r"layer 'emb' \(Embed\): embed_param\." + match):
        make_layer(f'name: "emb" type: "Embed" embed_param {{ {params} }}', [(2,)])


def test_embed_takes_one_bottom():
    with pytest.raises(CaffeError, match=r"layer 'l2' \(Embed\) takes exactly 1 bottom\(s\), has 2"):
        Net('layer { name: "in" type: "Input" top: "a" top: "b" input_param { shape { dim: 2 dim: 1 dim: 2 dim: 2 } } }\n'
            'layer { name: "l2" type: "Embed" bottom: "a" bottom: "b" top: "y" embed_param { num_output: 2 input_dim: 3 } }')
