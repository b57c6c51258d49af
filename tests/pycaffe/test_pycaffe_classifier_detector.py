"""caffe.Classifier and caffe.Detector against the same steps done by hand: crops by slicing,
preprocessing written out as arithmetic, and the forward pass of a plain vgg_caffe.Net."""
import cv2
import numpy as np
import pytest
import skimage.data
import torch
from pycaffe_helpers import write

from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net as RuntimeNet

DEPLOY = '''
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 10 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.01 }
                            bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
'''
MEAN = np.array([100.0, 110.0, 120.0], np.float32)


@pytest.fixture
def files(caffe, tmp_path):
    model = write(tmp_path, "deploy.prototxt", DEPLOY)
    weights = str(tmp_path / "w.caffemodel")
    caffe.Net(model, caffe.TEST).save(weights)
    return model, weights


def reference(model, weights, crops):
    """Scores of H x W x 3 RGB [0, 1] crops: BGR, x255, minus the mean, through a plain vgg_caffe.Net."""
    net = RuntimeNet(model, "TEST", weights=weights)
    x = np.stack([(c[:, :, ::-1] * 255 - MEAN).transpose(2, 0, 1) for c in crops]).astype(np.float32)
    return net(data=torch.from_numpy(x))["prob"].detach().numpy()


def test_classifier_predict_oversampled_and_centre(caffe, files):
    model, weights = files
    clf = caffe.Classifier(model, weights, image_dims=(12, 14), mean=MEAN, raw_scale=255, channel_swap=(2, 1, 0))
    cat = skimage.data.chelsea().astype(np.float32) / 255
    images = [cat[:60, :80], cat[100:150, 200:270]]
    scores = clf.predict(images)
    assert scores.shape == (2, 3)
    for k, im in enumerate(images):
        r = caffe.io.resize_image(im, (12, 14))   # checked against OpenCV in test_pycaffe_io
        windows = [r[0:8, 0:8], r[0:8, 6:14], r[4:12, 0:8], r[4:12, 6:14], r[2:10, 3:11]]
        expected = reference(model, weights, windows + [w[:, ::-1] for w in windows]).mean(0)
        np.testing.assert_allclose(scores[k], expected, rtol=1e-5, atol=1e-7)
    centre = clf.predict(images, oversample=False)
    r = caffe.io.resize_image(images[1], (12, 14))
    np.testing.assert_allclose(centre[1], reference(model, weights, [r[2:10, 3:11]])[0], rtol=1e-5, atol=1e-7)


@pytest.fixture
def photo(tmp_path):
    path = str(tmp_path / "cat.png")
    cv2.imwrite(path, skimage.data.chelsea()[:, :, ::-1])
    return path, skimage.data.chelsea().astype(np.float32) / 255


def test_detector_windows(caffe, files, photo):
    model, weights = files
    path, cat = photo
    det = caffe.Detector(model, weights, mean=MEAN, raw_scale=255, channel_swap=(2, 1, 0))
    windows = np.array([[10, 20, 60, 90], [100, 150, 180, 260], [0, 0, 30, 30]])
    dets = det.detect_windows([(path, windows[:2]), (path, windows[2:])])
    assert [d["filename"] for d in dets] == [path] * 3
    crops = [caffe.io.resize_image(cat[y0:y1, x0:x1], (8, 8)) for y0, x0, y1, x1 in windows]
    expected = reference(model, weights, crops)
    for d, e, w in zip(dets, expected, windows):
        np.testing.assert_array_equal(d["window"], w)
        np.testing.assert_allclose(d["prediction"], e, rtol=1e-5, atol=1e-7)


def test_detector_context_padding_geometry(caffe, files, photo):
    model, weights = files
    _, cat = photo
    det = caffe.Detector(model, weights, mean=MEAN, raw_scale=255, channel_swap=(2, 1, 0), context_pad=1)
    # input 8 with 1 pixel of context: scale 8/6. Window (10, 20, 29, 49): centre (20, 35), half
    # sizes (10, 15) grown to (13.33, 20) -> box (7, 15, 33, 55), inside the image, warped whole.
    np.testing.assert_allclose(det.crop(cat, np.array([10, 20, 29, 49])),
                               caffe.io.resize_image(cat[7:33, 15:55], (8, 8)), atol=1e-6)
    # Window (0, 0, 9, 9): box (-2, -2, 12, 12), 15 px -> 8: one row/column of padding (round(2 * 8/15))
    # and round(13 * 8/15) = 7 px of image; the padding is the mean in image space (RGB, / 255).
    crop = det.crop(cat, np.array([0, 0, 9, 9]))
    np.testing.assert_allclose(crop[1:, 1:], caffe.io.resize_image(cat[0:12, 0:12], (7, 7)), atol=1e-6)
    np.testing.assert_allclose(crop[0, 0], MEAN[::-1] / 255, atol=1e-6)
    np.testing.assert_allclose(crop[:, 0], np.tile(MEAN[::-1] / 255, (8, 1)), atol=1e-6)


def test_selective_search_is_refused_clearly(caffe, files):
    det = caffe.Detector(*files)
    with pytest.raises(CaffeError, match="selective_search_ijcv_with_python"):
        det.detect_selective_search(["x.jpg"])
