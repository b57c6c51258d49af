"""pycaffe-style Python layers used by test_pycaffe_pylayer.py, written exactly as for BVLC pycaffe
(only the import differs: `import caffe` would need vgg_caffe.pycaffe.install())."""
import json

import numpy as np

from vgg_caffe import pycaffe as caffe


class ScaledSquare(caffe.Layer):
    """top = scale * x^2 + sin(x) + b, with b a learnable one-element blob (param_str: scale, bias)."""

    def setup(self, bottom, top):
        if len(bottom) != 1 or len(top) != 1:
            raise Exception("ScaledSquare takes one bottom and one top")
        cfg = json.loads(self.param_str)
        self.scale = cfg["scale"]
        self.blobs.add_blob(1)
        self.blobs[0].data[...] = cfg["bias"]
        self.seen_phase = self.phase

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        x = bottom[0].data
        top[0].data[...] = self.scale * x ** 2 + np.sin(x) + self.blobs[0].data[0]

    def backward(self, top, propagate_down, bottom):
        x = bottom[0].data
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff * (2 * self.scale * x + np.cos(x))
        self.blobs[0].diff[...] += top[0].diff.sum()


class EuclideanLossLayer(caffe.Layer):
    """pycaffe's example loss layer (examples/pycaffe/layers/pyloss.py), written from its description."""

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("Need two inputs to compute distance.")

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise Exception("Inputs must have the same dimension.")
        self.diff = np.zeros_like(bottom[0].data)
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.diff[...] = bottom[0].data - bottom[1].data
        top[0].data[...] = np.sum(self.diff ** 2) / bottom[0].num / 2.0

    def backward(self, top, propagate_down, bottom):
        for i in range(2):
            if not propagate_down[i]:
                continue
            sign = 1 if i == 0 else -1
            bottom[i].diff[...] = sign * self.diff / bottom[i].num


class Counter(caffe.Layer):
    """A data layer: a (2, 3) top holding the pass number plus 0..5."""

    def setup(self, bottom, top):
        self.count = json.loads(self.param_str or "{}").get("start", 0)

    def reshape(self, bottom, top):
        top[0].reshape(2, 3)

    def forward(self, bottom, top):
        top[0].data[...] = self.count + np.arange(6).reshape(2, 3)
        self.count += 1

    def backward(self, top, propagate_down, bottom):
        pass


class Negate(caffe.Layer):
    """Runs in place in the tests (top == bottom): Caffe hands it one blob as bottom and top."""

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = -bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = -top[0].diff


class ForwardOnly(caffe.Layer):
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data


class NotALayer:
    pass
