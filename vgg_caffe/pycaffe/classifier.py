"""caffe.Classifier: a TEST-phase Net that classifies images, as python/caffe/classifier.py.

    net = caffe.Classifier("deploy.prototxt", "w.caffemodel", image_dims=(256, 256),
                           mean=np.array([104, 117, 123]), raw_scale=255, channel_swap=(2, 1, 0))
    scores = net.predict([caffe.io.load_image("cat.jpg")])     # (N, classes)

predict(inputs, oversample=True): every (H, W, K) image is resized to image_dims (default the
input's spatial size); with oversample, the 10 crops of caffe.io.oversample are classified and
their predictions averaged per image, otherwise the centre crop is; crops are preprocessed by a
caffe.io.Transformer (transpose to K x H x W, then the given channel swap, raw scale, mean and
input scale) and run through forward_all; the result is the first output blob.
"""
import numpy as np

from . import io as caffe_io
from .net import TEST, Net


def input_transformer(net, mean, input_scale, raw_scale, channel_swap):
    """The Transformer pycaffe's Classifier and Detector set up for the net's first input: HWC
    images to CHW, then the optional mean, input scale, raw scale and channel swap."""
    in_ = net.inputs[0]
    transformer = caffe_io.Transformer({in_: net.blobs[in_].data.shape})
    transformer.set_transpose(in_, (2, 0, 1))
    if mean is not None:
        transformer.set_mean(in_, mean)
    if input_scale is not None:
        transformer.set_input_scale(in_, input_scale)
    if raw_scale is not None:
        transformer.set_raw_scale(in_, raw_scale)
    if channel_swap is not None:
        transformer.set_channel_swap(in_, channel_swap)
    return transformer


class Classifier(Net):
    def __init__(self, model_file, pretrained_file, image_dims=None, mean=None, input_scale=None,
                 raw_scale=None, channel_swap=None):
        Net.__init__(self, model_file, pretrained_file, TEST)
        in_ = self.inputs[0]
        self.transformer = input_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.crop_dims = np.array(self.blobs[in_].data.shape[2:])
        self.image_dims = tuple(image_dims) if image_dims is not None and len(image_dims) else tuple(self.crop_dims)

    def predict(self, inputs, oversample=True):
        """Class scores (N, ...) for N images (H x W x K float arrays, e.g. caffe.io.load_image)."""
        h, w = (int(d) for d in self.image_dims)
        images = np.zeros((len(inputs), h, w, inputs[0].shape[2]), dtype=np.float32)
        for i, image in enumerate(inputs):
            images[i] = caffe_io.resize_image(image, (h, w))
        if oversample:
            crops = caffe_io.oversample(images, self.crop_dims)
        else:
            ch, cw = (int(d) for d in self.crop_dims)
            y, x = int(h / 2.0 - ch / 2.0), int(w / 2.0 - cw / 2.0)
            crops = images[:, y:y + ch, x:x + cw, :]
        in_ = self.inputs[0]
        caffe_in = np.zeros((len(crops), crops.shape[3]) + crops.shape[1:3], dtype=np.float32)
        for i, crop in enumerate(crops):
            caffe_in[i] = self.transformer.preprocess(in_, crop)
        predictions = self.forward_all(**{in_: caffe_in})[self.outputs[0]]
        if oversample:
            predictions = predictions.reshape((len(predictions) // 10, 10, -1)).mean(1)
        return predictions
