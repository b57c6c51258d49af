"""Exp against base ^ (shift + scale * x) in numpy, the base -1 (= e) rule, Caffe's base checks and
float64 finite differences."""
import numpy as np
import pytest
import torch

from in_place import in_place_forward
from vgg_caffe.errors import CaffeError


@pytest.mark.parametrize("base,scale,shift", [(-1, 1, 0), (-1, 0.5, 1), (2, 1, 0), (10, -0.3, 0.5), (0.5, 2, -1)])
def test_forward(tmp_path, make_layer, base, scale, shift):
    x = np.random.default_rng(0).uniform(-2, 2, (2, 3, 4)).astype(np.float32)
    text = f'type: "Exp" exp_param {{ base: {base} scale: {scale} shift: {shift} }}'
    got = make_layer(f'name: "e" {text}', [x.shape])(torch.from_numpy(x)).numpy()
    b = np.e if base == -1 else base
    np.testing.assert_allclose(got, b ** (shift + scale * x.astype(np.float64)), rtol=2e-6)
    np.testing.assert_allclose(in_place_forward(tmp_path, text, torch.from_numpy(x)).numpy(), got)


@pytest.mark.parametrize("base", [0, -2, float("inf")])
def test_bad_base(make_layer, base):
    with pytest.raises(CaffeError, match=r"layer 'e' \(Exp\): exp_param\.base is .*(allowed: -1 .* > 0|not finite)"):
        make_layer(f'name: "e" type: "Exp" exp_param {{ base: {base} }}', [(2,)])


def test_gradcheck(make_layer):
    for text in ("", "base: 3 scale: 0.5 shift: 1", "scale: -1.5 shift: 0.2"):
        layer = make_layer(f'name: "e" type: "Exp" exp_param {{ {text} }}', [(3, 4)])
        x = torch.randn(3, 4, dtype=torch.float64).requires_grad_()
        assert torch.autograd.gradcheck(layer, (x,)), text
