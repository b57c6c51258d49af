"""caffe.Blob: numpy views sharing memory with the torch tensors both ways (activations and learnable
parameters), Caffe's legacy accessors and Reshape, and assignments that do not fit naming the blob."""
import numpy as np
import pytest
import torch
from pycaffe_helpers import inputs

from vgg_caffe.errors import CaffeError


def test_activation_views_share_memory_both_ways(caffe, small_path):
    net = caffe.Net(str(small_path), caffe.TEST)
    blob = net.blobs["data"]
    tensor = blob.data_tensor
    blob.data[...] = 3.0
    assert (tensor == 3.0).all()
    tensor.fill_(-2.0)
    assert (blob.data == -2.0).all()
    as_torch = torch.from_numpy(blob.data)
    assert as_torch.data_ptr() == tensor.data_ptr()
    blob.diff[0, 0, 0, 0] = 5.0
    assert blob.diff_tensor[0, 0, 0, 0] == 5.0
    # the views are one object per blob and survive passes; the tensor object stays the same
    x = inputs()[0]
    blob.data[...] = x
    conv_view = net.blobs["conv1"].data
    net.forward()
    assert net.blobs["data"].data_tensor is tensor and net.blobs["conv1"].data is conv_view
    assert conv_view.max() > 0


def test_parameter_views_are_the_torch_parameters(caffe, small_path):
    net = caffe.Net(str(small_path.parent / "small_fb.prototxt"), caffe.TRAIN)
    weight = net.runtime.params["fc"][0]           # the nn.Parameter of the torch module
    view = net.params["fc"][0].data
    view[...] = 0.25
    assert torch.equal(weight.detach(), torch.full_like(weight, 0.25))
    with torch.no_grad():
        weight.mul_(2)
    assert (view == 0.5).all()
    x, y = inputs(1)
    net.forward(data=x, label=y)
    net.backward()
    diff = net.params["fc"][0].diff
    assert weight.grad is not None and np.shares_memory(diff, weight.grad.numpy())
    assert np.abs(diff).sum() > 0
    # the torch module computes with what numpy wrote
    net.params["fc2"][1].data[...] = 100.0
    out = net.runtime(data=torch.from_numpy(x), label=torch.from_numpy(y))
    assert out["loss"].item() == pytest.approx(float(net.forward(data=x, label=y)["loss"]), rel=1e-5)


def test_legacy_accessors_and_count(caffe):
    b = caffe.Blob((2, 3))
    assert (b.num, b.channels, b.height, b.width, b.count) == (2, 3, 1, 1, 6)
    b = caffe.Blob((5, 4, 3, 2))
    assert (b.num, b.channels, b.height, b.width) == (5, 4, 3, 2)
    assert caffe.Blob(()).num == 1 and caffe.Blob(()).count == 1
    with pytest.raises(CaffeError, match="at most 4 axes"):
        caffe.Blob((1, 2, 3, 4, 5)).num


def test_reshape_keeps_memory_for_the_same_count(caffe):
    b = caffe.Blob((2, 6), "x")
    b.data[...] = np.arange(12).reshape(2, 6)
    old = b.data
    b.reshape(3, 4)
    assert b.shape == (3, 4) and np.shares_memory(b.data, old)
    np.testing.assert_array_equal(b.data.ravel(), np.arange(12))
    b.reshape(5)
    assert b.shape == (5,) and (b.data == 0).all() and b.diff.shape == (5,)
    with pytest.raises(TypeError, match="no kwargs"):
        b.reshape(2, x=1)
    with pytest.raises(CaffeError, match="negative"):
        b.reshape(-1, 2)


def test_assignments_that_do_not_fit_name_the_blob(caffe, small_path):
    net = caffe.Net(str(small_path), caffe.TEST)
    with pytest.raises(caffe.BlobShapeError, match=r"blob 'data' data: cannot assign an array of shape \(3,\) "
                                                    r"to shape \(4, 3, 9, 11\)"):
        net.blobs["data"].data[...] = np.zeros(3)
    with pytest.raises(ValueError, match=r"blob 'conv1\[0\]' diff.*shape \(2, 2\) to shape \(5, 3, 3, 3\)"):
        net.params["conv1"][0].diff[...] = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"blob 'data' data: cannot assign .* to shape \(3, 9, 11\)"):
        net.blobs["data"].data[0] = np.zeros((4, 4))
    net.blobs["data"].data = np.ones((4, 3, 9, 11))   # the setter copies in, with the same check
    assert (net.blobs["data"].data == 1).all()


def test_views_look_and_compute_like_plain_arrays(caffe):
    b = caffe.Blob((2, 2), "x")
    b.data[...] = [[1, 2], [3, 4]]
    assert repr(b.data).startswith("array(")
    doubled = b.data * 2
    assert type(doubled) is np.ndarray and type(b.data.sum()) is np.float32
    assert isinstance(b.data, np.ndarray) and b.data.dtype == np.float32


def test_blobvec_add_blob(caffe):
    vec = caffe.BlobVec()
    vec.add_blob(2, 3)
    vec.add_blob((4,))
    assert [b.shape for b in vec] == [(2, 3), (4,)]
    with pytest.raises(TypeError):
        vec.add_blob(2, shape=3)
