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
}


# "Python" dispatches to the class its python_param names (which may be a data layer); the data
# layers it serves are tested with the data package.
DISPATCHERS = {"Python"}


def _non_data_types():
    return [t for t in known_types() if not layer_class(t).is_data and t not in DISPATCHERS]


@pytest.mark.parametrize("type_name", _non_data_types())
def test_every_layer_builds_runs_and_scripts(make_layer, type_name):
    params, shapes, n_tops = MINIMAL.get(type_name, ("", [X], 1))
    bottoms = "".join(f' bottom: "b{i}"' for i in range(len(shapes)))
    tops = "".join(f' top: "t{i}"' for i in range(n_tops))
    layer = make_layer(f'name: "l" type: "{type_name}"{bottoms}{tops} {params}', shapes)
    layer.fill(torch.Generator().manual_seed(0))
    assert isinstance(layer, Layer) and layer.type == type_name
    inputs = [torch.randint(0, 3, s).float() if i == 1 and type_name in ("SoftmaxWithLoss", "Accuracy")
              else torch.randn(s) for i, s in enumerate(shapes)]
    args = (inputs,) if getattr(layer, "takes_list", False) else tuple(inputs)
    out = layer(*args)
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    assert [tuple(o.shape) for o in outs] == layer.top_shapes
    assert all(torch.isfinite(o).all() for o in outs)
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
