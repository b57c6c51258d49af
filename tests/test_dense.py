"""fc -> conv conversion (vgg_caffe.eval.dense): the dense net reproduces the FC net's scores on
crop-sized inputs, its score map at other sizes matches a hand-written torch twin, and to_fc undoes
to_dense. The small VGG-shaped nets here are also used by test_evaluate.py and test_net_surgery.py."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vgg_caffe.eval.dense import bottom_shapes, convert_weights, dense_net, to_dense, to_fc
from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net
from vgg_caffe.proto import parse_text, pb


def small_vgg(crop=32, width=8, fc=16, classes=5, transpose=False, v1=False, crop_w=None):
    """A VGG-shaped deploy net: three conv3/pad1 + max-pool stages (total stride 8), fc6 fc7 fc8
    with ReLU and Dropout in place, and a Softmax "prob". Current format, or V1 like the released
    VGG_ILSVRC_16_layers_deploy.prototxt."""
    crop_w = crop_w or crop
    convs = [("conv1_1", "data", width), ("conv2_1", "pool1", 2 * width), ("conv3_1", "pool2", 2 * width)]
    layers = []
    if v1:
        text = f'name: "small_vgg"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: {crop}\ninput_dim: {crop_w}\n'
        for i, (name, bottom, n) in enumerate(convs, 1):
            layers.append(f'layers {{ bottom: "{bottom}" top: "{name}" name: "{name}" type: CONVOLUTION '
                          f'convolution_param {{ num_output: {n} pad: 1 kernel_size: 3 }} }}')
            layers.append(f'layers {{ bottom: "{name}" top: "{name}" name: "relu{i}_1" type: RELU }}')
            layers.append(f'layers {{ bottom: "{name}" top: "pool{i}" name: "pool{i}" type: POOLING '
                          'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }')
        prev = "pool3"
        for name, n in (("fc6", fc), ("fc7", fc), ("fc8", classes)):
            layers.append(f'layers {{ bottom: "{prev}" top: "{name}" name: "{name}" type: INNER_PRODUCT '
                          f'inner_product_param {{ num_output: {n} }} }}')
            if name != "fc8":
                k = name[2]
                layers.append(f'layers {{ bottom: "{name}" top: "{name}" name: "relu{k}" type: RELU }}')
                layers.append(f'layers {{ bottom: "{name}" top: "{name}" name: "drop{k}" type: DROPOUT '
                              'dropout_param { dropout_ratio: 0.5 } }')
            prev = name
        layers.append('layers { bottom: "fc8" top: "prob" name: "prob" type: SOFTMAX }')
        return text + "\n".join(layers) + "\n"
    text = (f'name: "small_vgg"\nlayer {{ name: "data" type: "Input" top: "data" '
            f'input_param {{ shape {{ dim: 1 dim: 3 dim: {crop} dim: {crop_w} }} }} }}\n')
    for i, (name, bottom, n) in enumerate(convs, 1):
        layers.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
                      f'convolution_param {{ num_output: {n} pad: 1 kernel_size: 3 }} }}')
        layers.append(f'layer {{ name: "relu{i}_1" type: "ReLU" bottom: "{name}" top: "{name}" }}')
        layers.append(f'layer {{ name: "pool{i}" type: "Pooling" bottom: "{name}" top: "pool{i}" '
                      'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }')
    prev = "pool3"
    for name, n in (("fc6", fc), ("fc7", fc), ("fc8", classes)):
        t = " transpose: true" if transpose and name == "fc6" else ""
        layers.append(f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{prev}" top: "{name}" '
                      f'param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }} '
                      f'inner_product_param {{ num_output: {n}{t} weight_filler {{ type: "gaussian" std: 0.01 }} }} }}')
        if name != "fc8":
            k = name[2]
            layers.append(f'layer {{ name: "relu{k}" type: "ReLU" bottom: "{name}" top: "{name}" }}')
            layers.append(f'layer {{ name: "drop{k}" type: "Dropout" bottom: "{name}" top: "{name}" }}')
        prev = name
    layers.append('layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }')
    return text + "\n".join(layers) + "\n"


def randomise(net, seed=0):
    """Random weights with a scale that keeps activations O(1) through the ReLUs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, blobs in net.params.items():
            for i, b in enumerate(blobs):
                fan_in = b[0].numel() if i == 0 else 1
                b.copy_(torch.randn(b.shape, generator=gen) * (1.5 / fan_in ** 0.5 if i == 0 else 0.1))
    return net


def weights_of(net):
    """{layer: (type, [arrays])} as vgg_caffe.io.caffemodel.read_weights returns them."""
    return {name: (net.layer(name).param.type, [b.detach().numpy().copy() for b in blobs])
            for name, blobs in net.params.items()}


def load(net, weights):
    with torch.no_grad():
        for name, (_, arrays) in weights.items():
            for b, a in zip(net.layer(name).blobs, arrays):
                b.copy_(torch.from_numpy(np.asarray(a)).reshape(b.shape))
    return net


def twin_scores(fc, x):
    """fc8's score map computed by hand: the conv stack with torch.nn.functional, then fc6 as an
    explicit sliding inner product over every window of pool3 the size fc6 flattened (the (N, C*h*w)
    weight, each window flattened in C, H, W order), fc7 and fc8 applied at every position."""
    p = {n: [b.detach() for b in bs] for n, bs in fc.params.items()}
    h = x
    for name in ("conv1_1", "conv2_1", "conv3_1"):
        h = F.max_pool2d(F.relu(F.conv2d(h, *p[name], padding=1)), 2, 2, ceil_mode=True)
    kh, kw = fc.blob_shapes["pool3"][2:]
    windows = h.unfold(2, kh, 1).unfold(3, kw, 1)          # (N, C, H', W', kh, kw)
    cols = windows.permute(0, 2, 3, 1, 4, 5).flatten(3)      # (N, H', W', C*kh*kw)
    s = F.relu(cols @ p["fc6"][0].T + p["fc6"][1])
    s = F.relu(s @ p["fc7"][0].T + p["fc7"][1])
    s = s @ p["fc8"][0].T + p["fc8"][1]
    return s.permute(0, 3, 1, 2)                             # (N, classes, H', W')


def param(text):
    return parse_text(text, pb.NetParameter())


@pytest.mark.parametrize("transpose", [False, True])
def test_dense_net_matches_fc_net_on_crop_size_inputs(transpose):
    fc = randomise(Net(small_vgg(transpose=transpose)))
    dense_param, changes = to_dense(fc.net_param)
    assert [(c.name, c.weight_shape) for c in changes] == [
        ("fc6", (16, 16, 4, 4)), ("fc7", (16, 16, 1, 1)), ("fc8", (5, 16, 1, 1))]
    types = {lp.name: lp.type for lp in dense_param.layer}
    assert types["fc6"] == types["fc7"] == types["fc8"] == "Convolution"
    fc6 = next(lp for lp in dense_param.layer if lp.name == "fc6")
    assert list(fc6.convolution_param.kernel_size) == [4]
    assert [s.lr_mult for s in fc6.param] == [1, 2]  # ParamSpecs carried over
    assert fc6.convolution_param.weight_filler.std == pytest.approx(0.01)

    dense = load(Net(dense_param), convert_weights(weights_of(fc), changes))
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 50
    want = fc(data=x)["prob"]
    got = dense(data=x)["prob"]
    assert got.shape == (3, 5, 1, 1)
    torch.testing.assert_close(got.flatten(1), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dense.blobs["fc8"].flatten(1), fc.blobs["fc8"], atol=1e-5, rtol=1e-5)

    shared = dense_net(fc)  # the evaluator's twin, sharing the FC net's tensors
    torch.testing.assert_close(shared(data=x)["prob"].flatten(1), want, atol=1e-5, rtol=1e-5)


def test_dense_score_map_matches_a_torch_twin_on_larger_inputs():
    fc = randomise(Net(small_vgg()), seed=3)
    dense = dense_net(fc)
    x = torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(2)) * 50
    dense(data=x)
    s = twin_scores(fc, x)
    assert dense.blobs["fc8"].shape == (1, 5, 3, 5)
    torch.testing.assert_close(dense.blobs["fc8"], s, atol=1e-4, rtol=1e-4)


def test_non_square_bottom_gets_a_rectangular_kernel():
    dense_param, changes = to_dense(param(small_vgg(crop=32, crop_w=48)))
    fc6 = next(lp for lp in dense_param.layer if lp.name == "fc6").convolution_param
    assert (fc6.kernel_h, fc6.kernel_w) == (4, 6) and not list(fc6.kernel_size)
    assert changes[0].weight_shape == (16, 16, 4, 6)


def test_to_fc_undoes_to_dense():
    fc = randomise(Net(small_vgg()), seed=5)
    dense_param, changes = to_dense(fc.net_param)
    dense_w = convert_weights(weights_of(fc), changes)
    back_param, back_changes = to_fc(dense_param)
    assert [c.name for c in back_changes] == ["fc6", "fc7", "fc8"]
    assert [c.weight_shape for c in back_changes] == [(16, 256), (16, 16), (5, 16)]
    orig = {lp.name: lp for lp in fc.net_param.layer}
    for lp in back_param.layer:
        assert lp.type == orig[lp.name].type
        if lp.type == "InnerProduct":
            assert lp.inner_product_param.num_output == orig[lp.name].inner_product_param.num_output
            assert list(lp.param) == list(orig[lp.name].param)
    back_w = convert_weights(dense_w, back_changes)
    for name, (type_name, arrays) in weights_of(fc).items():
        assert back_w[name][0] == type_name
        for a, b in zip(arrays, back_w[name][1]):
            np.testing.assert_array_equal(a, b)


def test_to_fc_leaves_ordinary_convolutions_alone():
    dense_param, _ = to_dense(param(small_vgg()))
    back, changes = to_fc(dense_param)
    assert {c.name for c in changes} == {"fc6", "fc7", "fc8"}
    assert [lp.type for lp in back.layer if lp.name.startswith("conv")] == ["Convolution"] * 3


def test_v1_net_and_selected_layers():
    dense_param, changes = to_dense(param(small_vgg(v1=True)), layers=["fc6"])
    # fc7 stays an InnerProduct: it flattens fc6's 1x1 map, which still works at the crop size.
    assert [c.name for c in changes] == ["fc6"]
    shapes, _ = bottom_shapes(dense_param)
    assert shapes["fc7"] == [(1, 16, 1, 1)]


def test_bad_requests_are_caffe_errors():
    net = param(small_vgg())
    with pytest.raises(CaffeError, match="no layer named 'fc9'"):
        to_dense(net, layers=["fc9"])
    with pytest.raises(CaffeError, match="'conv1_1' is a Convolution, expected InnerProduct"):
        to_dense(net, layers=["conv1_1"])
    with pytest.raises(CaffeError, match="nothing to convert"):
        to_fc(net)
    with pytest.raises(CaffeError, match="not an inner product"):
        to_fc(net, layers=["conv1_1"])
    bad = param(small_vgg())
    next(lp for lp in bad.layer if lp.name == "fc6").inner_product_param.axis = 2
    with pytest.raises(CaffeError):
        to_dense(bad)
    fc = Net(small_vgg())
    with pytest.raises(CaffeError, match="blob 0 has"):
        w = weights_of(fc)
        w["fc6"] = ("InnerProduct", [np.zeros((3, 3), np.float32), w["fc6"][1][1]])
        convert_weights(w, to_dense(fc.net_param)[1])


def write_caffemodel(path, net, v1=False):
    """The net's weights as a binary NetParameter written with protobuf alone (independent of
    vgg_caffe.io.caffemodel): current format with BlobShape, or V1 with Caffe's legacy right-aligned
    4-d dims ((1, 1, N, K) inner-product weights, (1, 1, 1, N) biases)."""
    out = pb.NetParameter(name=net.net_param.name)
    v1_types = {"Convolution": "CONVOLUTION", "InnerProduct": "INNER_PRODUCT"}
    for name, blobs in net.params.items():
        type_name = net.layer(name).param.type
        if v1:
            layer = out.layers.add(name=name, type=pb.V1LayerParameter.LayerType.Value(v1_types[type_name]))
        else:
            layer = out.layer.add(name=name, type=type_name)
        for b in blobs:
            a = b.detach().numpy()
            blob = layer.blobs.add()
            if v1:
                blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - a.ndim) + a.shape
            else:
                blob.shape.dim.extend(a.shape)
            blob.data.extend(a.ravel().tolist())
    with open(path, "wb") as f:
        f.write(out.SerializeToString())
    return path


def test_agrees_with_the_generators_dense_deploy():
    """netgen writes deploy.prototxt and deploy_dense.prototxt independently: to_dense of the one
    must give the other's layer types and blob shapes, and to_fc must come back."""
    netgen = pytest.importorskip("vgg_caffe.vgg.netgen")
    opts = netgen.Options(width_div=16, crop=64, num_classes=7)
    fc, dense = netgen.deploy_net("A", opts), netgen.deploy_net("A", opts, dense=True)
    mine, _ = to_dense(fc)
    with torch.device("meta"):
        a, b = Net(mine), Net(dense)
    assert [(lp.name, lp.type) for lp in mine.layer] == [(lp.name, lp.type) for lp in dense.layer]
    assert {n: [tuple(t.shape) for t in bs] for n, bs in a.params.items()} == \
        {n: [tuple(t.shape) for t in bs] for n, bs in b.params.items()}
    back, changes = to_fc(dense)
    assert [c.name for c in changes] == ["fc6", "fc7", "fc8"]
    assert [(lp.name, lp.type) for lp in back.layer] == [(lp.name, lp.type) for lp in fc.layer]
