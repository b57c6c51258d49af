"""Bias against y = x + b[covered index] written out with explicit loops, and float64 finite
differences with a learned bias and with the bias as the second bottom."""
import itertools

import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError


def bias_ref(x, b, axis):
    y = np.empty_like(x)
    for idx in itertools.product(*(range(d) for d in x.shape)):
        y[idx] = x[idx] + b[idx[axis:axis + b.ndim]]
    return y


@pytest.mark.parametrize("params,axis,b_shape", [
    ("", 1, (3,)),
    ("bias_param { num_axes: 2 }", 1, (3, 4)),
    ("bias_param { num_axes: -1 }", 1, (3, 4, 5)),
    ("bias_param { axis: -1 }", 3, (5,)),
    ("bias_param { axis: 0 num_axes: 1 }", 0, (2,)),
    ("bias_param { num_axes: 0 }", 0, ()),
])
def test_learned_bias(make_layer, params, axis, b_shape):
    rng = np.random.default_rng(0)
    x, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal(b_shape)
    layer = make_layer(f'name: "b" type: "Bias" bottom: "x" top: "y" {params}', [x.shape]).double()
    assert layer.blob_shapes() == [b_shape]
    with torch.no_grad():
        layer.blobs[0].copy_(torch.from_numpy(b))
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(), bias_ref(x, b, axis), rtol=1e-12)


@pytest.mark.parametrize("b_shape,axis", [((3,), 1), ((4, 5), 2), ((), 3)])
def test_bias_from_the_second_bottom(make_layer, b_shape, axis):
    rng = np.random.default_rng(1)
    x, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal(b_shape)
    layer = make_layer(f'name: "b" type: "Bias" bottom: "x" bottom: "b" bias_param {{ axis: {axis} }}',
                       [x.shape, b.shape])
    assert layer.blob_shapes() == []
    got = layer(torch.from_numpy(x), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(got, bias_ref(x, b, axis if b_shape else 0), rtol=1e-12)
    script = torch.jit.script(layer)
    torch.testing.assert_close(script(torch.from_numpy(x), torch.from_numpy(b)), torch.from_numpy(got))


def test_fillers(make_layer):
    default = make_layer('name: "b" type: "Bias"', [(2, 3, 2)])
    with torch.no_grad():
        default.blobs[0].fill_(9)
    default.fill()
    assert torch.all(default.blobs[0] == 0)
    given = make_layer('name: "b" type: "Bias" bias_param { filler { type: "constant" value: -2 } }', [(2, 3)])
    given.fill()
    assert torch.all(given.blobs[0] == -2)


def test_gradcheck(make_layer):
    layer = make_layer('name: "b" type: "Bias" bias_param { num_axes: 2 }', [(2, 3, 2, 2)]).double()
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, b: torch.func.functional_call(layer, {"blobs.0": b}, (x,)), (x, b))
    two = make_layer('name: "b" type: "Bias" bottom: "x" bottom: "b"', [(2, 3, 2, 2), (3, 2)])
    assert torch.autograd.gradcheck(two, (x, b))


def test_bad_parameters_and_shapes(make_layer):
    x = [(2, 3, 4, 5)]
    with pytest.raises(CaffeError, match=r"layer 'b' \(Bias\): bias_param\.num_axes is -3; allowed: -1"):
        make_layer('name: "b" type: "Bias" bias_param { num_axes: -3 }', x)
    with pytest.raises(CaffeError, match=r"bias_param\.num_axes 2 from axis 3 extends past the 4-d bottom 'x'"):
        make_layer('name: "b" type: "Bias" bottom: "x" bias_param { axis: 3 num_axes: 2 }', x)
    with pytest.raises(CaffeError, match=r"bias_param\.axis -5 is out of range"):
        make_layer('name: "b" type: "Bias" bias_param { axis: -5 }', x)
    with pytest.raises(CaffeError, match=r"the bias bottom 'c' has shape \(3, 5\), which does not match the "
                                         r"axes 1\.\.2 of the bottom 'x' \(2, 3, 4, 5\) \(\(3, 4\) there\)"):
        make_layer('name: "b" type: "Bias" bottom: "x" bottom: "c"', [(2, 3, 4, 5), (3, 5)])
    layer = make_layer('name: "b" type: "Bias" bottom: "x"', x)
    with pytest.raises(CaffeError, match=r"the bias blob has shape \(3,\), which does not match"):
        layer.reshape([(2, 4, 4, 5)])
