"""InnerProduct against y = x.reshape(rows, K) @ W^T + b written out in numpy."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError


def _load(layer, rng):
    with torch.no_grad():
        for b in layer.blobs:
            b.copy_(torch.from_numpy(rng.standard_normal(tuple(b.shape))))
    layer.double()


@pytest.mark.parametrize("transpose", [False, True])
def test_inner_product_flattens_from_axis_1(make_layer, transpose):
    rng = np.random.default_rng(0)
    layer = make_layer(f'name: "fc" type: "InnerProduct" inner_product_param {{ num_output: 4 '
                       f'transpose: {str(transpose).lower()} }}', [(2, 3, 2, 5)])
    assert layer.blob_shapes() == [((30, 4) if transpose else (4, 30)), (4,)]
    _load(layer, rng)
    x = rng.standard_normal((2, 3, 2, 5))
    w = layer.blobs[0].detach().numpy()
    w = w.T if transpose else w
    want = x.reshape(2, 30) @ w.T + layer.blobs[1].detach().numpy()
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(), want, rtol=1e-12)
    assert layer.top_shapes[0] == (2, 4)
    assert layer.multiply_adds() == 2 * 30 * 4


def test_inner_product_axis_2_no_bias(make_layer):
    rng = np.random.default_rng(1)
    layer = make_layer('name: "fc" type: "InnerProduct" inner_product_param { num_output: 3 axis: 2 '
                       'bias_term: false }', [(2, 4, 5, 6)])
    assert layer.blob_shapes() == [(3, 30)]
    _load(layer, rng)
    x = rng.standard_normal((2, 4, 5, 6))
    want = x.reshape(2, 4, 30) @ layer.blobs[0].detach().numpy().T
    assert layer.top_shapes[0] == (2, 4, 3)
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(), want, rtol=1e-12)


def test_inner_product_K_mismatch_names_layer(make_layer):
    layer = make_layer('name: "fc6" type: "InnerProduct" bottom: "pool5" inner_product_param { num_output: 3 }',
                       [(1, 2, 7, 7)])
    with pytest.raises(CaffeError, match=r"layer 'fc6'.*expects 98 inputs.*'pool5'.*\(1, 2, 8, 8\)"):
        layer.reshape([(1, 2, 8, 8)])
    with pytest.raises(CaffeError, match="num_output"):
        make_layer('name: "fc" type: "InnerProduct"', [(1, 2)])


@pytest.mark.parametrize("transpose", [False, True])
def test_inner_product_gradcheck(make_layer, transpose):
    layer = make_layer(f'name: "fc" type: "InnerProduct" inner_product_param {{ num_output: 3 '
                       f'transpose: {str(transpose).lower()} }}', [(2, 2, 2, 1)])
    _load(layer, np.random.default_rng(2))
    x = torch.randn(2, 2, 2, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: torch.func.functional_call(
        layer, {"blobs.0": w, "blobs.1": b}, (x,)), (x, layer.blobs[0], layer.blobs[1]))
