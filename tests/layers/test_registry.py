"""Walk the whole registry: every non-data layer type builds from a minimal LayerParameter, its top
shapes match what forward returns, and it scripts; the registry refuses duplicates and unknowns."""
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.layers import Layer, known_types, layer_class, register

X = (2, 3, 5, 5)
# type -> (parameters, bottom shapes, number of tops). A type missing here is tried with no
# parameters, one (2, 3, 5, 5) bottom and one top, so a new layer either works that way or adds a line.
MINIMAL = {
    "Convolution": ("convolution_param { num_output: 2 kernel_size: 3 }", [X], 1),
    "Deconvolution": ("convolution_param { num_output: 2 kernel_size: 2 stride: 2 }", [X], 1),
    "InnerProduct": ("inner_product_param { num_output: 4 }", [X], 1),
    "Pooling": ("pooling_param { kernel_size: 2 stride: 2 }", [X], 1),
    "SoftmaxWithLoss": ("", [(2, 3), (2,)], 2),
    "Accuracy": ("", [(2, 3), (2,)], 2),
    "Concat": ("", [X, X], 1),
    "Eltwise": ("", [X, X], 1),
    "Split": ("", [X], 2),
    "BatchReindex": ("", [X, (3,)], 1),
    "Crop": ("crop_param { offset: 1 }", [X, (2, 3, 3, 3)], 1),
    "Embed": ("embed_param { num_output: 4 input_dim: 5 }", [X], 1),
    "Filter": ("", [X, (2,)], 1),
    "Im2col": ("convolution_param { kernel_size: 3 }", [X], 1),
    "Parameter": ("parameter_param { shape { dim: 2 dim: 3 } }", [], 1),
    "Reshape": ("reshape_param { shape { dim: 0 dim: -1 } }", [X], 1),
    "SPP": ("spp_param { pyramid_height: 2 }", [X], 1),
    "Tile": ("tile_param { tiles: 2 }", [X], 1),
    "Clip": ("clip_param { min: -1 max: 1 }", [X], 1),
    "Log": ("log_param { scale: 0.1 shift: 2 }", [X], 1),
    "EuclideanLoss": ("", [(2, 3), (2, 3)], 1),
    "SigmoidCrossEntropyLoss": ("", [(2, 3), (2, 3)], 1),
    "ContrastiveLoss": ("", [(2, 3, 1, 1), (2, 3, 1, 1), (2, 1, 1, 1)], 1),
    "HingeLoss": ("", [(2, 3), (2,)], 1),
    "MultinomialLogisticLoss": ("", [(2, 3), (2,)], 1),
    "InfogainLoss": ("", [(2, 3), (2,), (3, 3)], 2),
    "LSTM": ("recurrent_param { num_output: 4 }", [(3, 2, 5), (3, 2)], 1),
    "RNN": ("recurrent_param { num_output: 4 }", [(3, 2, 5), (3, 2)], 1),
    "LSTMUnit": ("", [(1, 2, 3), (1, 2, 12), (1, 2)], 2),
    "HDF5Output": ('hdf5_output_param { file_name: "registry_out.h5" }', [(2, 3), (2,)], 0),
}
# Inputs that hold indices or labels: (type, bottom) -> exclusive upper bound of the integers drawn.
INTEGER_INPUTS = {("SoftmaxWithLoss", 1): 3, ("Accuracy", 1): 3, ("BatchReindex", 1): 2, ("Embed", 0): 5,
                  ("HingeLoss", 1): 3, ("MultinomialLogisticLoss", 1): 3, ("InfogainLoss", 1): 3}


# "Python" dispatches to the class its python_param names (which may be a data layer); the data
# layers it serves are tested with the data package.
DISPATCHERS = {"Python"}


def _non_data_types():
    return [t for t in known_types() if not layer_class(t).is_data and t not in DISPATCHERS]


@pytest.mark.parametrize("type_name", _non_data_types())
def test_every_layer_builds_runs_and_scripts(make_layer, type_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # HDF5Output writes its file where it runs
    params, shapes, n_tops = MINIMAL.get(type_name, ("", [X], 1))
    bottoms = "".join(f' bottom: "b{i}"' for i in range(len(shapes)))
    tops = "".join(f' top: "t{i}"' for i in range(n_tops))
    layer = make_layer(f'name: "l" type: "{type_name}"{bottoms}{tops} {params}', shapes)
    layer.fill(torch.Generator().manual_seed(0))
    assert isinstance(layer, Layer) and layer.type == type_name
    inputs = [torch.randint(0, INTEGER_INPUTS[type_name, i], s).float() if (type_name, i) in INTEGER_INPUTS
              else torch.randn(s) for i, s in enumerate(shapes)]
    args = (inputs,) if getattr(layer, "takes_list", False) else tuple(inputs)
    out = layer(*args)
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    assert [tuple(o.shape) for o in outs] == layer.top_shapes
    assert all(torch.isfinite(o).all() for o in outs)
    if hasattr(layer, "reset"):   # recurrent layers carry their state between forwards, as in Caffe
        layer.reset()
    scripted = torch.jit.script(layer.eval())
    again = scripted(*args)
    again = [again] if isinstance(again, torch.Tensor) else list(again)
    for a, b in zip(again, outs if type_name != "Dropout" else [layer(*args)]):
        torch.testing.assert_close(a, b)
    assert layer.multiply_adds() >= 0 and len(layer.receptive()) == 3


def test_registry_refuses_duplicates_and_names_unknown_types():
    with pytest.raises(RuntimeError, match="registered twice"):
        @register
        class Again(Layer):
            type = "Pooling"
    with pytest.raises(CaffeError, match="layer 'fc9': unknown layer type 'Fancy'; known types: .*InnerProduct"):
        layer_class("Fancy", "fc9")
