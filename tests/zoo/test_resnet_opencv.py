"""The headline parity check: a ResNet-50-style net read by OpenCV 4.x's Caffe importer and by ours.

The caffemodel holds non-trivial BatchNorm statistics: the batch statistics of a TRAIN pass over
random images, stored multiplied by a random scale factor per layer (Caffe divides by blob 2, so
the factor must cancel), random Scale gammas and betas, and MSRA-filled convolutions. It is
written by Net.save and read by cv2.dnn.readNetFromCaffe and by Net(weights=...): the softmax
outputs agree within 1e-5 and the logits within 1e-4 relative (53 float32 layers deep).
"""
import os

import cv2
import numpy as np
import pytest
import torch
from zoo_data import NETS

from vgg_caffe import Net


def _train_net(root):
    cwd = os.getcwd()
    os.chdir(root)  # the data layer opens its LMDB when built; the pass below feeds random images
    try:
        return Net(TRAIN_VAL, "TRAIN", seed=3)
    finally:
        os.chdir(cwd)


DEPLOY = os.path.join(NETS, "resnet50_deploy.prototxt")
TRAIN_VAL = os.path.join(NETS, "resnet50_train_val.prototxt")


@pytest.fixture(scope="module")
def caffemodel(tmp_path_factory, zoo_root):
    g = torch.Generator().manual_seed(50)
    net = _train_net(zoo_root)
    with torch.no_grad():
        net(data=torch.randn(4, 3, 99, 99, generator=g) * 50, label=torch.zeros(4))
        factors = []
        for layer in net.layers.values():
            if layer.type == "BatchNorm":
                mean, var, factor = layer.blobs
                assert float(factor) == 1.0  # one pass: factor = 0 * 0.999 + 1
                f = float(torch.empty(1).uniform_(0.2, 5.0, generator=g))
                mean.mul_(f).add_(torch.randn(mean.shape, generator=g) * 0.05 * f)
                var.mul_(f * float(torch.empty(1).uniform_(0.8, 1.25, generator=g)))
                factor.fill_(f)
                factors.append(f)
            elif layer.type == "Scale":
                gamma, beta = layer.blobs
                gamma.uniform_(0.5, 1.5, generator=g)
                beta.uniform_(-0.3, 0.3, generator=g)
    assert len(factors) == 53 and min(abs(f - 1) for f in factors) > 1e-3
    path = str(tmp_path_factory.mktemp("resnet") / "resnet50.caffemodel")
    net.save(path)
    # Residual sums grow the activations; scale fc10 so that the logits have a spread of about 3
    # and the softmax is far from one-hot (else comparing it would say little).
    deploy = Net(DEPLOY, "TEST", weights=path)
    with torch.no_grad():
        deploy(data=torch.randn(2, 3, 99, 99, generator=g) * 50)
        w = deploy.params["fc10"][0]
        w.mul_(3.0 / float(deploy.blobs["fc10"].std()))
    deploy.save(path)
    return path


def test_opencv_and_our_net_agree(caffemodel):
    ours = Net(DEPLOY, "TEST", weights=caffemodel)
    bn = ours.layer("bn_conv1")
    assert bn.use_global_stats and float(bn.blobs[2]) != 1.0
    x = np.random.default_rng(0).standard_normal((2, 3, 99, 99)).astype(np.float32) * 50
    with torch.no_grad():
        out = ours(data=torch.from_numpy(x))
    prob, logits = out["prob"].numpy(), ours.blobs["fc10"].numpy()
    cv = cv2.dnn.readNetFromCaffe(DEPLOY, caffemodel)
    if hasattr(cv, "enableWinograd"):
        cv.enableWinograd(False)  # OpenCV's Winograd 3x3 convolutions trade precision for speed
    cv.setInput(x)
    cv_prob, cv_logits = cv.forward(["prob", "fc10"])
    assert prob.shape == cv_prob.reshape(prob.shape).shape == (2, 10)
    # Random statistics must still give a non-degenerate softmax for the check to mean anything.
    assert prob.max() < 0.999 and logits.std() > 0.1
    np.testing.assert_allclose(prob, cv_prob.reshape(prob.shape), atol=1e-5, rtol=0)
    np.testing.assert_allclose(logits, cv_logits.reshape(logits.shape), rtol=1e-4, atol=1e-4 * np.abs(logits).max())


def test_factor_is_divided_out(caffemodel):
    """Stored statistics are mean * f, var * f and f: the normalisation must not depend on f."""
    ours = Net(DEPLOY, "TEST", weights=caffemodel)
    x = torch.randn(1, 3, 99, 99) * 50
    with torch.no_grad():
        before = ours(data=x)["prob"].clone()
        for layer in ours.layers.values():
            if layer.type == "BatchNorm":
                for blob in layer.blobs:
                    blob.mul_(7.0)
        after = ours(data=x)["prob"]
    torch.testing.assert_close(after, before, atol=1e-6, rtol=1e-5)
