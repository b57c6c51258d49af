"""Scale against y[n, c, h, w] = x * s[covered index] (+ b) written out with explicit loops,
OpenCV's importer, and float64 finite differences with one bottom (x, s, b) and two (x, s)."""
import itertools

import numpy as np
import pytest
import torch

from opencv_ref import opencv_forward
from vgg_caffe.errors import CaffeError


def scale_ref(x, s, axis, b=None):
    """Loop over every index of x; the factor is s at the axes axis..axis+s.ndim of that index."""
    y = np.empty_like(x)
    for idx in itertools.product(*(range(d) for d in x.shape)):
        k = idx[axis:axis + s.ndim]
        y[idx] = x[idx] * s[k] + (b[k] if b is not None else 0)
    return y


def scale_layer(make_layer, params, shapes, blobs=None):
    bottoms = "".join(f' bottom: "b{i}"' for i in range(len(shapes)))
    layer = make_layer(f'name: "sc" type: "Scale"{bottoms} top: "y" {params}', shapes).double()
    if blobs is not None:
        with torch.no_grad():
            for p, a in zip(layer.blobs, blobs):
                p.copy_(torch.from_numpy(a))
    return layer


@pytest.mark.parametrize("params,axis,s_shape", [
    ("", 1, (3,)),
    ("scale_param { num_axes: 2 }", 1, (3, 4)),
    ("scale_param { num_axes: -1 }", 1, (3, 4, 5)),
    ("scale_param { axis: 2 num_axes: -1 }", 2, (4, 5)),
    ("scale_param { axis: -2 num_axes: 1 }", 2, (4,)),
    ("scale_param { axis: 0 num_axes: 2 }", 0, (2, 3)),
    ("scale_param { num_axes: 0 }", 0, ()),
])
@pytest.mark.parametrize("bias", [False, True])
def test_one_bottom_learned_scale(make_layer, params, axis, s_shape, bias):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))
    s, b = rng.standard_normal(s_shape), rng.standard_normal(s_shape)
    if bias:
        params = (params[:-1] + " bias_term: true }") if params else "scale_param { bias_term: true }"
    layer = scale_layer(make_layer, params, [x.shape], [s, b] if bias else [s])
    assert layer.blob_shapes() == [s_shape] * (2 if bias else 1)
    got = layer(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, scale_ref(x, s, axis, b if bias else None), rtol=1e-12)


@pytest.mark.parametrize("bias", [False, True])
def test_per_channel_scale_matches_opencv(tmp_path, make_layer, bias):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    blobs = [rng.standard_normal(3).astype(np.float32) for _ in range(2 if bias else 1)]
    text = f'type: "Scale" scale_param {{ bias_term: {str(bias).lower()} }}'
    ref = opencv_forward(tmp_path, text, {"x": x}, blobs)
    layer = make_layer(f'name: "sc" {text}', [x.shape])
    with torch.no_grad():
        for p, a in zip(layer.blobs, blobs):
            p.copy_(torch.from_numpy(a))
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(), ref.reshape(x.shape), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("s_shape,axis", [((3,), 1), ((3, 4), 1), ((4, 5), 2), ((), 1)])
def test_two_bottoms_scale_from_the_second(make_layer, s_shape, axis):
    rng = np.random.default_rng(2)
    x, s = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal(s_shape)
    # num_axes is ignored with two bottoms: the second bottom's shape decides
    layer = scale_layer(make_layer, f"scale_param {{ axis: {axis} num_axes: 3 }}", [x.shape, s.shape])
    assert layer.blob_shapes() == []
    got = layer(torch.from_numpy(x), torch.from_numpy(s)).numpy()
    np.testing.assert_allclose(got, scale_ref(x, s, axis if s_shape else 0), rtol=1e-12)
    script = torch.jit.script(layer)
    torch.testing.assert_close(script(torch.from_numpy(x), torch.from_numpy(s)), torch.from_numpy(got))


def test_two_bottoms_with_bias_has_one_blob_shaped_like_the_scale(make_layer):
    rng = np.random.default_rng(3)
    x, s, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    layer = scale_layer(make_layer, "scale_param { bias_term: true bias_filler { type: 'constant' value: 0.5 } }",
                        [x.shape, s.shape])
    assert layer.blob_shapes() == [(3, 4)]
    layer.fill()
    assert torch.all(layer.blobs[0] == 0.5)
    with torch.no_grad():
        layer.blobs[0].copy_(torch.from_numpy(b))
    got = layer(torch.from_numpy(x), torch.from_numpy(s)).detach().numpy()
    np.testing.assert_allclose(got, scale_ref(x, s, 1, b), rtol=1e-12)
    script = torch.jit.script(layer)
    torch.testing.assert_close(script(torch.from_numpy(x), torch.from_numpy(s)), torch.from_numpy(got))


def test_fillers(make_layer):
    default = make_layer('name: "sc" type: "Scale" scale_param { bias_term: true }', [(2, 3, 2, 2)])
    default.fill()
    assert torch.all(default.blobs[0] == 1) and torch.all(default.blobs[1] == 0)
    given = make_layer('name: "sc" type: "Scale" scale_param { filler { type: "constant" value: 3 } }', [(2, 3)])
    given.fill()
    assert torch.all(given.blobs[0] == 3)


def test_gradcheck_one_bottom(make_layer):
    rng = np.random.default_rng(4)
    layer = scale_layer(make_layer, "scale_param { num_axes: 2 bias_term: true }", [(2, 3, 2, 2)],
                        [rng.standard_normal((3, 2)), rng.standard_normal((3, 2))])
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, s, b: torch.func.functional_call(
        layer, {"blobs.0": s, "blobs.1": b}, (x,)), (x, layer.blobs[0], layer.blobs[1]))


@pytest.mark.parametrize("s_shape", [(3,), (3, 2), ()])
def test_gradcheck_two_bottoms(make_layer, s_shape):
    layer = scale_layer(make_layer, "", [(2, 3, 2, 2), s_shape])
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    s = torch.randn(s_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x, s))


def test_bad_parameters_and_shapes(make_layer):
    x = [(2, 3, 4, 5)]
    with pytest.raises(CaffeError, match=r"layer 'sc' \(Scale\): scale_param\.num_axes is -2; allowed: -1"):
        make_layer('name: "sc" type: "Scale" scale_param { num_axes: -2 }', x)
    with pytest.raises(CaffeError, match=r"scale_param\.num_axes 4 from axis 1 extends past the 4-d bottom"):
        make_layer('name: "sc" type: "Scale" scale_param { num_axes: 4 }', x)
    with pytest.raises(CaffeError, match=r"scale_param\.axis 4 is out of range.*allowed -4 to 3"):
        make_layer('name: "sc" type: "Scale" scale_param { axis: 4 }', x)
    with pytest.raises(CaffeError, match=r"the scale bottom 's' has shape \(4,\), which does not match the axes "
                                         r"1\.\.1 of the bottom 'x' \(2, 3, 4, 5\) \(\(3,\) there\)"):
        make_layer('name: "sc" type: "Scale" bottom: "x" bottom: "s"', [(2, 3, 4, 5), (4,)])
    with pytest.raises(CaffeError, match=r"the scale bottom 's' has shape \(4, 5, 6\), which does not match"):
        make_layer('name: "sc" type: "Scale" bottom: "x" bottom: "s" scale_param { axis: 2 }', [(2, 3, 4, 5), (4, 5, 6)])
    layer = make_layer('name: "sc" type: "Scale" bottom: "x"', x)
    with pytest.raises(CaffeError, match=r"the scale blob has shape \(3,\), which does not match.*\(2, 7, 4, 5\)"):
        layer.reshape([(2, 7, 4, 5)])
