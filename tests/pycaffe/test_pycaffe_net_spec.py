"""caffe.net_spec: NetSpec output compared with hand-written prototxt (parsed messages), automatic
names, in-place layers, several tops, parameter routing over the schema, and schema errors."""
import pytest

from vgg_caffe.errors import CaffeError
from vgg_caffe.proto import parse_text, pb

LENET = '''
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 64 dim: 1 dim: 28 dim: 28 } shape { dim: 64 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        param { lr_mult: 1 } param { lr_mult: 2 }
        convolution_param { num_output: 20 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 50 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
        pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "fc1" type: "InnerProduct" bottom: "pool2" top: "fc1"
        inner_product_param { num_output: 500 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "drop" type: "Dropout" bottom: "fc1" top: "fc1" dropout_param { dropout_ratio: 0.25 }
        include { phase: TRAIN } }
layer { name: "score" type: "InnerProduct" bottom: "fc1" top: "score"
        inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" loss_weight: 0.5
        loss_param { ignore_label: 255 } }
'''


def lenet(caffe):
    L, P = caffe.layers, caffe.params
    n = caffe.NetSpec()
    n.data, n.label = L.Input(shape=[dict(dim=[64, 1, 28, 28]), dict(dim=[64])], ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type="xavier"),
                            param=[dict(lr_mult=1), dict(lr_mult=2)])
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50, weight_filler=dict(type="xavier"))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool="AVE")   # enum by name
    n.fc1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type="xavier"))
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.drop = L.Dropout(n.relu1, dropout_ratio=0.25, in_place=True, include=dict(phase=caffe.TRAIN))
    n.score = L.InnerProduct(n.drop, num_output=10, weight_filler=dict(type="xavier"))
    n.loss = L.SoftmaxWithLoss(n.score, n.label, loss_weight=0.5, loss_param=dict(ignore_label=255))
    return n


def test_netspec_equals_the_hand_written_prototxt(caffe):
    built = lenet(caffe).to_proto()
    assert isinstance(built, pb.NetParameter)
    expected = parse_text(LENET, pb.NetParameter())
    assert built == expected, f"got:\n{built}"
    # and the printed text parses back to the same message, as `print(n.to_proto())` files do
    assert parse_text(str(built), pb.NetParameter()) == expected


def test_the_result_builds_a_net(caffe):
    net = caffe.Net(lenet(caffe).to_proto(), caffe.TRAIN)
    assert net._layer_names[-1] == "loss" and net.blobs["pool2"].shape == (64, 50, 4, 4)


def test_automatic_names_and_to_proto_of_tops(caffe):
    L = caffe.layers
    data = L.DummyData(shape=dict(dim=[2, 3]), data_filler=dict(type="gaussian"))
    a, b = L.Slice(data, ntop=2, slice_param=dict(axis=1, slice_point=[1]))
    net = caffe.to_proto(L.ReLU(a), L.Sigmoid(b))
    assert [(l.name, l.type, list(l.bottom), list(l.top)) for l in net.layer] == [
        ("DummyData1", "DummyData", [], ["DummyData1"]),
        ("Slice1", "Slice", ["DummyData1"], ["Slice1", "Slice2"]),
        ("ReLU1", "ReLU", ["Slice1"], ["ReLU1"]),
        ("Sigmoid1", "Sigmoid", ["Slice2"], ["Sigmoid1"]),
    ]
    assert net.layer[0].dummy_data_param.data_filler[0].type == "gaussian"
    assert list(net.layer[1].slice_param.slice_point) == [1]


def test_routing_over_the_schema(caffe):
    L = caffe.layers
    n = caffe.NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.up = L.Deconvolution(n.x, num_output=3, kernel_size=4, stride=2, bias_term=False)   # shared message
    n.py = L.Python(n.up, module="m", layer="K", param_str="{}", propagate_down=[False])
    n.silence = L.Silence(n.py, ntop=0)
    layers = {l.name: l for l in n.to_proto().layer}
    up = layers["up"].convolution_param
    assert (up.num_output, list(up.kernel_size), list(up.stride), up.bias_term) == (3, [4], [2], False)
    assert (layers["py"].python_param.module, layers["py"].python_param.layer) == ("m", "K")
    assert list(layers["py"].propagate_down) == [False]
    assert list(layers["silence"].top) == [] and list(layers["silence"].bottom) == ["py"]


def test_schema_errors(caffe):
    L = caffe.layers
    with pytest.raises(caffe.net_spec.UnknownLayerType, match="'Convolutoin'; did you mean Convolution"):
        L.Convolutoin
    x = L.Input(shape=dict(dim=[1, 2]))
    with pytest.raises(CaffeError, match=r"'kernal_size' is not a field of LayerParameter or ConvolutionParameter "
                                         r"\(num_output, bias_term, pad, kernel_size"):
        caffe.to_proto(L.Convolution(x, kernal_size=3))
    with pytest.raises(CaffeError, match="FillerParameter has no field 'typ'"):
        caffe.to_proto(L.Convolution(x, weight_filler=dict(typ="xavier")))
    with pytest.raises(CaffeError, match="pool has no value 'MEDIAN'; values: MAX, AVE, STOCHASTIC"):
        caffe.to_proto(L.Pooling(x, pool="MEDIAN"))
    with pytest.raises(TypeError, match="ReLU input 0 is not a Top"):
        L.ReLU("data")
    custom = caffe.to_proto(L.custom("MyFancyLayer", x))
    assert custom.layer[-1].type == "MyFancyLayer"
