"""AbsVal against |x| in numpy, OpenCV's importer, float64 finite differences, Caffe's sign(0) = 0
gradient, and Caffe's refusal to run it in place."""
import numpy as np
import pytest
import torch

from in_place import in_place_forward
from opencv_ref import opencv_forward
from vgg_caffe.errors import CaffeError


def test_forward_and_opencv(tmp_path, make_layer):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    got = make_layer('name: "a" type: "AbsVal"', [x.shape])(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, np.abs(x))
    ref = opencv_forward(tmp_path, 'type: "AbsVal"', {"x": x})
    np.testing.assert_allclose(got, ref.reshape(x.shape), rtol=1e-7)


def test_gradients(make_layer):
    layer = make_layer('name: "a" type: "AbsVal"', [(3, 4)])
    x = torch.randn(3, 4, dtype=torch.float64)
    x = torch.where(x.abs() < 0.05, torch.full_like(x, 0.3), x).requires_grad_()
    assert torch.autograd.gradcheck(layer, (x,))
    z = torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)
    layer(z).backward(torch.tensor([5.0, 5.0, 5.0], dtype=torch.float64))
    np.testing.assert_array_equal(z.grad.numpy(), [-5.0, 0.0, 5.0])  # caffe_cpu_sign(0) == 0


def test_in_place_refused(tmp_path):
    with pytest.raises(CaffeError, match=r"layer 'layer' \(AbsVal\) cannot run in place"):
        in_place_forward(tmp_path, 'type: "AbsVal"', torch.randn(2, 3))
