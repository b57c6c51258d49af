"""Tile against numpy.tile (whole blocks repeated along the axis), its gradient (the copies
summed), and the missing / non-positive tiles errors."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net


@pytest.mark.parametrize("params,axis", [("tiles: 3", 1), ("axis: 0 tiles: 2", 0), ("axis: -1 tiles: 4", 2),
                                         ("axis: 2 tiles: 1", 2)])
def test_tile_matches_numpy(make_layer, params, axis):
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    layer = make_layer(f'name: "t" type: "Tile" tile_param {{ {params} }}', [x.shape])
    tiles = int(params.split("tiles: ")[1])
    reps = [1, 1, 1]
    reps[axis] = tiles
    want = np.tile(x, reps)  # [a b c] -> [a b c a b c] along the axis
    assert layer.top_shapes[0] == want.shape
    np.testing.assert_array_equal(layer(torch.from_numpy(x)).numpy(), want)


def test_tile_gradient_sums_copies(make_layer):
    layer = make_layer('name: "t" type: "Tile" tile_param { axis: 1 tiles: 3 }', [(2, 2, 3)])
    x = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    g = torch.randn(2, 6, 3, dtype=torch.float64)
    (gx,) = torch.autograd.grad(layer(x), (x,), g)
    want = g.numpy().reshape(2, 3, 2, 3).sum(axis=1)  # top block t holds copy t of the bottom block
    np.testing.assert_allclose(gx.numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("params,match", [("", "tiles .*is required"), ("tiles: 0", "must be positive"),
                                          ("tiles: -2", "must be positive"),
                                          ("axis: 3 tiles: 2", "axis 3 is out of range")])
def test_tile_errors(make_layer, params, match):
    with pytest.raises(CaffeError, match="layer 't' \\(Tile\\).*" + match):
        make_layer(f'name: "t" type: "Tile" tile_param {{ {params} }}', [(2, 3, 4)])


def test_tile_takes_one_bottom():
    with pytest.raises(CaffeError, match=r"layer 'l2' \(Tile\) takes exactly 1 bottom\(s\), has 2"):
        Net('layer { name: "in" type: "Input" top: "a" top: "b" input_param { shape { dim: 2 dim: 1 dim: 2 dim: 2 } } }\n'
            'layer { name: "l2" type: "Tile" bottom: "a" bottom: "b" top: "y" tile_param { tiles: 2 } }')
