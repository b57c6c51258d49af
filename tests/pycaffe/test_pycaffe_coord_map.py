"""caffe.coord_map on an FCN-style NetSpec: the map composed by hand along conv(pad 100) -> pool ->
1x1 conv -> deconv, the Crop it builds, and that the cropped net really comes out at the input's size."""
import numpy as np
import pytest


def fcn(caffe):
    L = caffe.layers
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 100, 100]))
    n.conv1 = L.Convolution(n.data, kernel_size=3, pad=100, num_output=2, weight_filler=dict(type="gaussian"))
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.pool1 = L.Pooling(n.relu1, kernel_size=2, stride=2)
    n.score = L.Convolution(n.pool1, kernel_size=1, num_output=2)
    n.upscore = L.Deconvolution(n.score, convolution_param=dict(kernel_size=4, stride=2, num_output=2,
                                                               bias_term=False))
    return n


def test_map_composed_by_hand(caffe):
    n = fcn(caffe)
    # data -> conv1: y = x + (100 - (3 - 1)/2) = x + 99; pool1: y = (x + (0 - 1/2)) / 2;
    # score: identity; upscore: y = 2x + ((4 - 1)/2 - 0). Together: up = data + 100.
    ax, a, b = caffe.coord_map.coord_map_from_to(n.upscore, n.data)
    assert ax == 1
    np.testing.assert_allclose(a, [1.0])
    np.testing.assert_allclose(b, [-100.0])
    ax, a, b = caffe.coord_map.coord_map_from_to(n.pool1, n.data)
    np.testing.assert_allclose(a, [2.0])
    np.testing.assert_allclose(b, [-99.0 + 0.5])   # data = 2 * pool - 98.5


def test_crop_layer_and_the_built_net(caffe):
    n = fcn(caffe)
    n.crop = caffe.coord_map.crop(n.upscore, n.data)
    layer = n.to_proto().layer[-1]
    assert layer.type == "Crop" and list(layer.bottom) == ["upscore", "data"]
    assert layer.crop_param.axis == 2 and list(layer.crop_param.offset) == [100]
    net = caffe.Net(n.to_proto(), caffe.TEST)
    assert net.blobs["upscore"].shape == (1, 2, 300, 300)
    out = net.forward(data=np.random.RandomState(0).rand(1, 3, 100, 100).astype(np.float32))
    assert out["crop"].shape == (1, 2, 100, 100)
    np.testing.assert_array_equal(out["crop"], net.blobs["upscore"].data[:, :, 100:200, 100:200])


def test_maps_that_cannot_crop(caffe):
    L = caffe.layers
    n = fcn(caffe)
    with pytest.raises(ValueError, match="scale mismatch"):
        caffe.coord_map.crop(n.pool1, n.data)
    n.fc = L.InnerProduct(n.pool1, num_output=3)
    with pytest.raises(RuntimeError, match="Could not compute map between tops"):
        caffe.coord_map.coord_map_from_to(n.fc, n.data)
