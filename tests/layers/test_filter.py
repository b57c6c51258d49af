"""Filter: numpy boolean selection by the last bottom, several filtered bottoms, the gradient (the
selected samples only), a data-dependent batch through a Net (blob_shapes follow the pass), the
empty selection (empty tops, as Caffe), and the shape / count errors."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net

FILTER = 'name: "f" type: "Filter" bottom: "a" bottom: "b" bottom: "sel" top: "fa" top: "fb"'


@pytest.mark.parametrize("selector", [[1, 0, 1, 1, 0], [0, 0, 0, 0, 2.5], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
def test_filter_matches_numpy(make_layer, selector):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 3, 2)), rng.standard_normal((5, 4))
    sel = np.array(selector, dtype=np.float64).reshape(5, 1, 1, 1)
    layer = make_layer(FILTER, [a.shape, b.shape, sel.shape])
    assert layer.top_shapes == [a.shape, b.shape]  # at set-up: the full batch, as Caffe's first Reshape
    fa, fb = layer([torch.from_numpy(v) for v in (a, b, sel)])
    keep = sel.ravel() != 0
    np.testing.assert_array_equal(fa.numpy(), a[keep])
    np.testing.assert_array_equal(fb.numpy(), b[keep])
    assert fa.shape[0] == keep.sum()


def test_filter_gradient_reaches_selected_samples_only(make_layer):
    layer = make_layer('name: "f" type: "Filter" bottom: "a" bottom: "sel" top: "fa"', [(4, 3), (4,)])
    sel = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    a = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: layer([a, sel]), (a,))
    g = torch.randn(2, 3, dtype=torch.float64)
    (ga,) = torch.autograd.grad(layer([a, sel]), (a,), g)
    want = np.zeros((4, 3))
    want[[1, 3]] = g.numpy()
    np.testing.assert_array_equal(ga.numpy(), want)


NET = '''
layer { name: "in" type: "Input" top: "data" top: "sel" input_param { shape { dim: 6 dim: 3 } shape { dim: 6 } } }
layer { name: "f" type: "Filter" bottom: "data" bottom: "sel" top: "kept" }
layer { name: "fc" type: "InnerProduct" bottom: "kept" top: "fc" inner_product_param { num_output: 2 } }
layer { name: "flat" type: "Reshape" bottom: "fc" top: "out" reshape_param { shape { dim: -1 } } }
'''


def test_filter_in_a_net_has_a_data_dependent_batch():
    net = Net(NET, seed=0)
    assert net.blob_shapes["kept"] == (6, 3) and net.blob_shapes["out"] == (12,)
    x = torch.randn(6, 3)
    w, b = (p.detach() for p in net.params["fc"])
    for selector in ([1, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1], [1] * 6):
        sel = torch.tensor(selector, dtype=torch.float32)
        out = net(data=x, sel=sel)["out"]
        keep = sel != 0
        torch.testing.assert_close(out, (x[keep] @ w.T + b).reshape(-1))
        n = int(keep.sum())
        # As Caffe's blobs after Forward, the shapes below the Filter are those of this pass.
        assert net.blob_shapes["kept"] == (n, 3) and net.blob_shapes["fc"] == (n, 2)
        assert net.blob_shapes["out"] == (2 * n,) and net.blob_shapes["data"] == (6, 3)


def test_filter_empty_selection_gives_empty_tops():
    net = Net(NET, seed=0)
    blobs = net(data=torch.randn(6, 3), sel=torch.zeros(6))
    assert tuple(net.blobs["kept"].shape) == (0, 3) and tuple(blobs["out"].shape) == (0,)
    assert net.blob_shapes["kept"] == (0, 3)


@pytest.mark.parametrize("shapes,match", [
    ([(5, 3, 2), (5, 4), (5, 2)], r"selector 'sel' has shape \(5, 2\); it must be \(N,\) or \(N, 1, ...\)"),
    ([(5, 3, 2), (4, 4), (5,)], r"bottom 'b' has shape \(4, 4\) but the selector 'sel' has 5 samples"),
])
def test_filter_shape_errors(make_layer, shapes, match):
    with pytest.raises(CaffeError, match=r"layer 'f' \(Filter\): " + match):
        make_layer(FILTER, shapes)


def test_filter_counts():
    with pytest.raises(CaffeError, match="2 tops for 2 bottoms; Filter has one top per bottom except the last"):
        Net('layer { name: "in" type: "Input" top: "a" top: "s" input_param { shape { dim: 2 } } }\n'
            'layer { name: "f" type: "Filter" bottom: "a" bottom: "s" top: "x" top: "y" }')
    with pytest.raises(CaffeError, match=r"layer 'f' \(Filter\) takes at least 2 bottom"):
        Net('layer { name: "in" type: "Input" top: "a" input_param { shape { dim: 2 } } }\n'
            'layer { name: "f" type: "Filter" bottom: "a" top: "x" }')
