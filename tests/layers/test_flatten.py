"""Flatten: the shape rule of Caffe's FlattenLayer and row-major order."""
import numpy as np
import pytest
import torch


@pytest.mark.parametrize("params,want", [("", (2, 60)), ("flatten_param { axis: 2 }", (2, 3, 20)),
                                         ("flatten_param { axis: 1 end_axis: 2 }", (2, 12, 5)),
                                         ("flatten_param { axis: -3 end_axis: -2 }", (2, 12, 5))])
def test_flatten_shapes_and_order(make_layer, params, want):
    x = np.arange(120.0).reshape(2, 3, 4, 5)
    layer = make_layer(f'name: "f" type: "Flatten" {params}', [x.shape])
    assert layer.top_shapes[0] == want
    np.testing.assert_array_equal(layer(torch.from_numpy(x)).numpy(), x.reshape(want))


def test_flatten_bad_axes(make_layer):
    from vgg_caffe.errors import CaffeError
    with pytest.raises(CaffeError, match="layer 'f'.*end_axis"):
        make_layer('name: "f" type: "Flatten" flatten_param { axis: 2 end_axis: 1 }', [(2, 3, 4)])
    with pytest.raises(CaffeError, match="axis 5 is out of range"):
        make_layer('name: "f" type: "Flatten" flatten_param { axis: 5 }', [(2, 3, 4)])
