"""BatchReindex: top[i] = bottom[index[i]] against numpy fancy indexing, the accumulating backward
(numpy.add.at), run-time index errors naming the layer, and the shape / count errors."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net

TEXT = 'name: "ri" type: "BatchReindex" bottom: "x" bottom: "idx" top: "y"'


@pytest.mark.parametrize("index", [[2, 0, 1], [1, 1, 1, 3, 0], [3], []])
def test_batch_reindex_matches_numpy(make_layer, index):
    x = np.random.default_rng(0).standard_normal((4, 3, 2))
    layer = make_layer(TEXT, [x.shape, (len(index),)])
    want = x[np.array(index, dtype=int)]
    assert layer.top_shapes[0] == want.shape
    got = layer(torch.from_numpy(x), torch.tensor(index, dtype=torch.float64))
    np.testing.assert_array_equal(got.numpy(), want)


def test_batch_reindex_backward_accumulates(make_layer):
    index = np.array([2, 0, 2, 2, 3])
    layer = make_layer(TEXT, [(4, 3), (5,)])
    idx = torch.tensor(index, dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer(x, idx), (x,))
    g = torch.randn(5, 3, dtype=torch.float64)
    (gx,) = torch.autograd.grad(layer(x, idx), (x,), g)
    want = np.zeros((4, 3))
    np.add.at(want, index, g.numpy())  # Caffe's bot_diff[in_n] += top_diff, sample by sample
    np.testing.assert_allclose(gx.numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("index,match", [([0, 4], "index 4 is outside the batch"),
                                         ([-1, 0], "index -1 is outside the batch"),
                                         ([-0.5], "index -0.5 is outside the batch")])
def test_batch_reindex_index_out_of_range(make_layer, index, match):
    layer = make_layer(TEXT, [(4, 3), (len(index),)])
    with pytest.raises(CaffeError, match=r"layer 'ri' \(BatchReindex\): " + match + r" \[0, 4\) of bottom 'x'"):
        layer(torch.randn(4, 3), torch.tensor(index))


def test_batch_reindex_shape_and_count_errors(make_layer):
    with pytest.raises(CaffeError, match=r"layer 'ri'.*index bottom 'idx' has shape \(2, 1\); it must be 1-d"):
        make_layer(TEXT, [(4, 3), (2, 1)])
    with pytest.raises(CaffeError, match=r"layer 'ri' \(BatchReindex\) takes exactly 2 bottom"):
        Net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 } } }\n'
            'layer { name: "ri" type: "BatchReindex" bottom: "x" top: "y" }')
