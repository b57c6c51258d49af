"""caffe.Detector: R-CNN style windowed detection with a TEST-phase Net (python/caffe/detector.py).

    det = caffe.Detector("deploy.prototxt", "w.caffemodel", mean=..., raw_scale=255,
                         channel_swap=(2, 1, 0), context_pad=16)
    dets = det.detect_windows([("img.jpg", np.array([[ymin, xmin, ymax, xmax], ...]))])
    # [{"window": ..., "prediction": scores, "filename": "img.jpg"}, ...]

detect_windows loads each image (caffe.io.load_image), crops every window (crop(), with
context padding when context_pad is set: the window grown so that context_pad input pixels of
context surround it after warping, the part outside the image filled with the mean), warps
the crops to the input size, preprocesses them and runs forward_all; predictions are the first
output blob, in the order of the windows. detect_selective_search needs the external
selective_search_ijcv_with_python package and MATLAB, as in Caffe; without it the call is
refused with a CaffeError saying so.
"""
import os

import numpy as np

from ..errors import CaffeError
from . import io as caffe_io
from .classifier import input_transformer
from .net import TEST, Net


class Detector(Net):
    def __init__(self, model_file, pretrained_file, mean=None, input_scale=None, raw_scale=None,
                 channel_swap=None, context_pad=None):
        Net.__init__(self, model_file, pretrained_file, TEST)
        self.transformer = input_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.configure_crop(context_pad)

    def detect_windows(self, images_windows):
        """[(filename, windows)] with windows (ymin, xmin, ymax, xmax) rows -> one dict per window."""
        images_windows = [(f, np.asarray(w)) for f, w in images_windows]
        crops = []
        for filename, windows in images_windows:
            image = caffe_io.load_image(filename).astype(np.float32)
            crops += [self.crop(image, window) for window in windows]
        if not crops:
            return []
        in_ = self.inputs[0]
        caffe_in = np.zeros((len(crops), crops[0].shape[2]) + self.blobs[in_].data.shape[2:], dtype=np.float32)
        for i, crop in enumerate(crops):
            caffe_in[i] = self.transformer.preprocess(in_, crop)
        predictions = self.forward_all(**{in_: caffe_in})[self.outputs[0]]
        detections, i = [], 0
        for filename, windows in images_windows:
            for window in windows:
                detections.append({"window": window, "prediction": predictions[i], "filename": filename})
                i += 1
        return detections

    def detect_selective_search(self, image_fnames):
        try:
            import selective_search_ijcv_with_python as selective_search
        except ImportError:
            raise CaffeError("detect_selective_search needs the selective_search_ijcv_with_python package "
                             "(and MATLAB), which is not installed; compute windows another way and call "
                             "detect_windows([(filename, windows), ...])") from None
        image_fnames = [os.path.abspath(f) for f in image_fnames]
        windows = selective_search.get_windows(image_fnames, cmd="selective_search_rcnn")
        return self.detect_windows(zip(image_fnames, windows))

    def crop(self, im, window):
        """The window (ymin, xmin, ymax, xmax) of an H x W x K image, with context padding."""
        window = np.asarray(window)
        y0, x0, y1, x1 = (int(v) for v in window[:4])
        crop = im[y0:y1, x0:x1]
        if not self.context_pad:
            return crop
        size = self.blobs[self.inputs[0]].width   # square inputs, as Caffe assumes
        scale = size / (1.0 * size - self.context_pad * 2)
        half_h, half_w = (y1 - y0 + 1) / 2.0, (x1 - x0 + 1) / 2.0
        centre = (y0 + half_h, x0 + half_w)
        box = np.round(np.tile(centre, 2) + scale * np.array((-half_h, -half_w, half_h, half_w)))
        scale_h, scale_w = size / (box[2] - box[0] + 1), size / (box[3] - box[1] + 1)
        pad_y, pad_x = round(max(0, -box[0]) * scale_h), round(max(0, -box[1]) * scale_w)
        im_h, im_w = im.shape[:2]
        box = np.clip(box, 0.0, [im_h, im_w, im_h, im_w])
        clip_h, clip_w = box[2] - box[0] + 1, box[3] - box[1] + 1
        if clip_h <= 0 or clip_w <= 0:
            raise CaffeError(f"window {tuple(window)} lies outside the {im_h}x{im_w} image")
        crop_h = min(round(clip_h * scale_h), size - pad_y)
        crop_w = min(round(clip_w * scale_w), size - pad_x)
        context = im[int(box[0]):int(box[2]), int(box[1]):int(box[3])]
        context = caffe_io.resize_image(context, (crop_h, crop_w))
        out = np.ones(self.crop_dims, dtype=np.float32) * self.crop_mean
        out[pad_y:pad_y + crop_h, pad_x:pad_x + crop_w] = context
        return out

    def configure_crop(self, context_pad):
        """crop_dims (the input's H x W x K) and, for context padding, the mean in image space."""
        in_ = self.inputs[0]
        transpose = self.transformer.transpose[in_]
        inverse = np.argsort(transpose)
        self.crop_dims = np.array(self.blobs[in_].data.shape[1:])[inverse]
        self.context_pad = context_pad
        if not context_pad:
            return
        mean = self.transformer.mean.get(in_)
        if mean is None:
            self.crop_mean = np.zeros(self.crop_dims, dtype=np.float32)
            return
        crop_mean = np.array(mean, dtype=np.float32).transpose(inverse)
        swap = self.transformer.channel_swap.get(in_)
        if swap is not None:
            crop_mean = crop_mean[:, :, np.argsort(swap)]
        raw_scale = self.transformer.raw_scale.get(in_)
        if raw_scale is not None:
            crop_mean /= raw_scale
        self.crop_mean = crop_mean
