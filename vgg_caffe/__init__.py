"""vgg-caffe: the VGG paper's nets, training and test protocols with Caffe's exact semantics, on PyTorch.

    from vgg_caffe import Net, TRAIN, TEST
    net = Net("deploy.prototxt", TEST, weights="VGG_ILSVRC_16_layers.caffemodel")
    prob = net(data=batch)["prob"]
"""
from .errors import CaffeError
from .net import TEST, TRAIN, Net

__all__ = ["Net", "TRAIN", "TEST", "CaffeError"]
__version__ = "0.1.0"
