"""File formats: Caffe's .caffemodel wire format (V1 and current), its HDF5 weights layout, the
.solverstate, and conversion of weights to torchvision / safetensors / torch files.

    from vgg_caffe.io import read_weights, write_weights
    layers = read_weights("VGG_ILSVRC_16_layers.caffemodel")   # {name: StoredLayer(type, blobs)}

Modules: wire and wire_encode (the protobuf wire format walked by hand), caffemodel (weight files
in and out as arrays), net_weights (weights into and out of a built Net by layer name), hdf5
(Caffe's HDF5 layout), solverstate, convert (torchvision naming, BGR->RGB folding, other formats).
"""
from .caffemodel import (HDF5_SUFFIXES, Caffemodel, StoredLayer, is_hdf5, modern_shape,  # noqa: F401
                         open_weights, read_weights, write_weights)
from .net_weights import CopyReport, copy_into, save_net, shape_matches  # noqa: F401
