"""Log against log_base(shift + scale * x) in numpy, the base -1 (= e) rule, Caffe's base checks and
float64 finite differences."""
import numpy as np
import pytest
import torch

from in_place import in_place_forward
from vgg_caffe.errors import CaffeError


@pytest.mark.parametrize("base,scale,shift", [(-1, 1, 0), (-1, 0.5, 1), (2, 1, 0), (10, 3, 0.5), (0.5, 2, 1)])
def test_forward(tmp_path, make_layer, base, scale, shift):
    x = np.random.default_rng(0).uniform(0.1, 3, (2, 3, 4)).astype(np.float32)
    text = f'type: "Log" log_param {{ base: {base} scale: {scale} shift: {shift} }}'
    got = make_layer(f'name: "l" {text}', [x.shape])(torch.from_numpy(x)).numpy()
    b = np.e if base == -1 else base
    np.testing.assert_allclose(got, np.log(shift + scale * x.astype(np.float64)) / np.log(b), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(in_place_forward(tmp_path, text, torch.from_numpy(x)).numpy(), got)


def test_non_positive_input_gives_nan_and_inf(make_layer):
    got = make_layer('name: "l" type: "Log"', [(3,)])(torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.isnan(got[0]) and got[1] == -float("inf") and got[2] == 0


@pytest.mark.parametrize("base,why", [(0, "allowed: -1"), (-3, "allowed: -1"), (1, "base 1 has no logarithm"),
                                      (float("inf"), "not finite")])
def test_bad_base(make_layer, base, why):
    with pytest.raises(CaffeError, match=rf"layer 'l' \(Log\): log_param\.base is .*{why}"):
        make_layer(f'name: "l" type: "Log" log_param {{ base: {base} }}', [(2,)])


def test_gradcheck(make_layer):
    for text in ("", "base: 3 scale: 0.5 shift: 1", "base: 0.2 scale: 2"):
        layer = make_layer(f'name: "l" type: "Log" log_param {{ {text} }}', [(3, 4)])
        x = (torch.rand(3, 4, dtype=torch.float64) + 0.5).requires_grad_()
        assert torch.autograd.gradcheck(layer, (x,)), text
