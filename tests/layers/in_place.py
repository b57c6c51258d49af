"""One layer run in place (top == bottom) inside a Net, after a producer so that Caffe's in-place
rebinding of the blob name is exercised, as ReLU after a convolution."""
from vgg_caffe.net import Net


def in_place_forward(tmp_path, layer_text, x):
    """Net: Input "data" -> Power (x + 0, a producer) -> the layer with top == bottom. Returns the
    net's output for `x` (a float32 tensor)."""
    dims = " ".join(f"dim: {d}" for d in x.shape)
    proto = tmp_path / "in_place.prototxt"
    proto.write_text(f'''
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}
layer {{ name: "copy" type: "Power" bottom: "data" top: "blob" }}
layer {{ name: "layer" bottom: "blob" top: "blob" {layer_text} }}
''')
    net = Net(str(proto))
    return net(data=x)["blob"]
