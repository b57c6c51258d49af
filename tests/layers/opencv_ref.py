"""One Caffe layer run by OpenCV 4.x's independent Caffe importer (cv2.dnn.readNetFromCaffe).

The prototxt and the .caffemodel are written here (the blobs with protobuf alone), so neither our
net builder nor our weight reader is involved in the reference.
"""
import cv2
import numpy as np

from vgg_caffe.proto import pb


def opencv_forward(tmp_path, layer_text, inputs, blobs=()):
    """Run `layer_text` (a LayerParameter body without name/bottom/top) on `inputs`, a dict of
    input name -> float32 array (the layer's bottoms, in order), with `blobs` (arrays, Caffe's
    order) as its weights. Returns OpenCV's top as a float32 array of its own shape."""
    names = list(inputs)
    net_text = 'name: "ref"\n'
    for n, a in inputs.items():
        dims = " ".join(f"dim: {d}" for d in a.shape)
        net_text += f'input: "{n}"\ninput_shape {{ {dims} }}\n'
    bottoms = " ".join(f'bottom: "{n}"' for n in names)
    net_text += f'layer {{ name: "layer" {bottoms} top: "out" {layer_text} }}\n'
    proto, weights = tmp_path / "ref.prototxt", tmp_path / "ref.caffemodel"
    proto.write_text(net_text)
    model = pb.NetParameter(name="ref")
    lp = model.layer.add(name="layer", type=layer_text.split('type: "')[1].split('"')[0])
    for a in blobs:
        a = np.asarray(a, np.float32)
        blob = lp.blobs.add()
        blob.shape.dim.extend(a.shape)
        blob.data.extend(a.ravel().tolist())
    weights.write_bytes(model.SerializeToString())
    net = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
    for n, a in inputs.items():
        net.setInput(np.ascontiguousarray(a, np.float32), n)
    return np.asarray(net.forward("layer"))  # OpenCV names outputs by layer
