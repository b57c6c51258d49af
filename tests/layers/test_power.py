"""Power against (shift + scale * x) ^ power in numpy, OpenCV's importer, Caffe's constant cases
(power * scale == 0) and float64 finite differences."""
import numpy as np
import pytest
import torch

from in_place import in_place_forward
from opencv_ref import opencv_forward


@pytest.mark.parametrize("power,scale,shift", [(1, 1, 0), (2, 0.5, 1), (3, -1, 0.5), (0.5, 2, 3), (-1, 1, 4),
                                               (1, 2, -1)])
def test_forward_and_opencv(tmp_path, make_layer, power, scale, shift):
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 4, 5)).astype(np.float32)
    text = f'type: "Power" power_param {{ power: {power} scale: {scale} shift: {shift} }}'
    got = make_layer(f'name: "p" {text}', [x.shape])(torch.from_numpy(x)).numpy()
    want = (shift + scale * x.astype(np.float64)) ** power
    np.testing.assert_allclose(got, want, rtol=2e-6)
    ref = opencv_forward(tmp_path, text, {"x": x})
    np.testing.assert_allclose(got, ref.reshape(x.shape), rtol=2e-6)
    np.testing.assert_allclose(in_place_forward(tmp_path, text, torch.from_numpy(x)).numpy(), got)


@pytest.mark.parametrize("power,scale,shift,value", [(0, 3, 2, 1.0), (2, 0, 3, 9.0), (0, 0, 0, 1.0),
                                                     (0.5, 0, -4, np.nan)])
def test_input_ignored_when_power_times_scale_is_zero(make_layer, power, scale, shift, value):
    layer = make_layer(f'name: "p" type: "Power" power_param {{ power: {power} scale: {scale} shift: {shift} }}',
                       [(2, 3)])
    x = torch.tensor([[1.0, np.nan, -5.0], [0.0, 2.0, np.inf]])
    np.testing.assert_array_equal(layer(x).numpy(), np.full((2, 3), value, np.float32))
    np.testing.assert_array_equal(torch.jit.script(layer)(x).numpy(), np.full((2, 3), value, np.float32))


def test_gradcheck(make_layer):
    for text in ("power: 3 scale: 0.5 shift: 1", "power: 0.5 scale: 2 shift: 3", "power: 2", "scale: -2 shift: 1"):
        layer = make_layer(f'name: "p" type: "Power" power_param {{ {text} }}', [(3, 4)])
        x = torch.rand(3, 4, dtype=torch.float64).requires_grad_()
        assert torch.autograd.gradcheck(layer, (x,)), text


def test_negative_base_fractional_power_is_nan(make_layer):
    layer = make_layer('name: "p" type: "Power" power_param { power: 0.5 }', [(2,)])
    assert torch.isnan(layer(torch.tensor([-1.0, 4.0]))).tolist() == [True, False]
