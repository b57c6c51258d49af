"""InfogainLoss against -sum H[label, l] log(max(p_l, 1e-20)) / normaliser written out in numpy,
with H from a binaryproto file or a third bottom, ignore_label, axis, normalisation modes, and
Caffe's gradient p * sum(H[label]) - H[label] (also where the threshold clamps)."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.proto import pb

THRESHOLD = float(np.float32(1e-20))  # Caffe's kLOG_THRESHOLD is a float


def softmax(z, axis):
    e = np.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def reference(x, labels, hmat, axis=1, ignore=None, norm="VALID"):
    """Value and Caffe's gradient, one position at a time; x has classes on `axis`."""
    xm = np.moveaxis(x, axis, -1)
    p = softmax(xm, -1)
    lab = labels.reshape(xm.shape[:-1])
    total, valid, grad = 0.0, 0, np.zeros_like(p)
    for idx in np.ndindex(*lab.shape):
        k = int(lab[idx])
        if ignore is not None and k == ignore:
            continue
        total -= (hmat[k] * np.log(np.maximum(p[idx], THRESHOLD))).sum()
        grad[idx] = p[idx] * hmat[k].sum() - hmat[k]
        valid += 1
    denom = max({"FULL": lab.size, "VALID": valid, "BATCH_SIZE": int(np.prod(x.shape[:axis])), "NONE": 1}[norm], 1)
    return total / denom, np.moveaxis(grad / denom, -1, axis)


def write_h(path, hmat, legacy=True):
    c = hmat.shape[0]
    blob = pb.BlobProto(num=1, channels=1, height=c, width=c) if legacy else pb.BlobProto()
    if not legacy:
        blob.shape.dim.extend([c, c])
    blob.data.extend(hmat.astype(np.float32).ravel().tolist())
    path.write_bytes(blob.SerializeToString())
    return str(path)


def _hmat(rng, c):
    return rng.uniform(0, 1, (c, c)).astype(np.float32).astype(np.float64) + np.eye(c)


@pytest.mark.parametrize("norm", ["FULL", "VALID", "BATCH_SIZE", "NONE"])
def test_h_from_source_dense_labels_and_ignore(make_layer, tmp_path, norm):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3))
    labels = rng.integers(0, 4, (2, 3)).astype(float)
    labels[1, 2] = 255
    hmat = _hmat(rng, 4)
    source = write_h(tmp_path / "H.binaryproto", hmat, legacy=norm != "NONE")
    layer = make_layer(f'name: "loss" type: "InfogainLoss" bottom: "x" bottom: "l" top: "loss" '
                       f'infogain_loss_param {{ source: "{source}" }} '
                       f'loss_param {{ ignore_label: 255 normalization: {norm} }}', [x.shape, labels.shape])
    tx = torch.tensor(x, requires_grad=True)
    (loss,) = layer([tx, torch.from_numpy(labels)])
    want, grad = reference(x, labels, hmat, ignore=255, norm=norm)
    np.testing.assert_allclose(loss.item(), want, rtol=1e-6)  # H is stored as float
    loss.backward()
    np.testing.assert_allclose(tx.grad.numpy(), grad, rtol=1e-6, atol=1e-12)


def test_h_as_third_bottom_axis_2_and_prob_top(make_layer):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 5))   # classes on axis 2
    labels = rng.integers(0, 5, (2, 3)).astype(float)
    hmat = _hmat(rng, 5)
    layer = make_layer('name: "loss" type: "InfogainLoss" bottom: "x" bottom: "l" bottom: "H" top: "loss" '
                       'top: "prob" infogain_loss_param { axis: 2 }', [x.shape, labels.shape, (1, 1, 5, 5)])
    assert layer.top_shapes == [(), x.shape]
    tx = torch.tensor(x, requires_grad=True)
    th = torch.tensor(hmat.reshape(1, 1, 5, 5), requires_grad=True)
    loss, prob = layer([tx, torch.from_numpy(labels), th])
    want, grad = reference(x, labels, hmat, axis=2)
    np.testing.assert_allclose(loss.item(), want, rtol=1e-12)
    np.testing.assert_allclose(prob.detach().numpy(), softmax(x, 2), rtol=1e-12)
    loss.backward()
    np.testing.assert_allclose(tx.grad.numpy(), grad, atol=1e-13)
    assert th.grad is None  # Caffe cannot back-propagate into H


def test_identity_h_matches_softmax_with_loss_and_threshold(make_layer):
    x = np.array([[0.0, 60.0, -60.0], [1.0, 2.0, 3.0]])  # sample 0: p_label = e^-120 < 1e-20
    labels = np.array([2.0, 0.0])
    eye = np.eye(3)
    info = make_layer('name: "loss" type: "InfogainLoss" bottom: "x" bottom: "l" bottom: "H"',
                      [x.shape, labels.shape, eye.shape])
    soft = make_layer('name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "l"', [x.shape, labels.shape])
    tx = torch.tensor(x, requires_grad=True)
    (loss,) = info([tx, torch.from_numpy(labels), torch.from_numpy(eye)])
    p = softmax(x, 1)
    np.testing.assert_allclose(loss.item(), (-np.log(THRESHOLD) - np.log(p[1, 0])) / 2, rtol=1e-12)
    loss.backward()
    sx = tx.detach().clone().requires_grad_()
    soft(sx, torch.from_numpy(labels))[0].backward()
    np.testing.assert_allclose(tx.grad.numpy(), sx.grad.numpy(), atol=1e-15)  # both p - onehot


def test_infogain_gradcheck(make_layer):
    rng = np.random.default_rng(2)
    hmat = torch.from_numpy(_hmat(rng, 3))
    layer = make_layer('name: "loss" type: "InfogainLoss" bottom: "x" bottom: "l" bottom: "H" '
                       'loss_param { ignore_label: 1 }', [(2, 3, 2), (2, 2), (3, 3)])
    labels = torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer([x, labels, hmat])[0], (x,))


def test_infogain_errors(make_layer, tmp_path):
    base = 'name: "loss" type: "InfogainLoss" bottom: "x" bottom: "l" '
    with pytest.raises(CaffeError, match=r"layer 'loss' \(InfogainLoss\): infogain_loss_param.source .* is required"):
        make_layer(base, [(2, 3), (2,)])
    with pytest.raises(CaffeError, match=r"layer 'loss' \(InfogainLoss\): infogain_loss_param.source: .*nope.bin"):
        make_layer(base + f'infogain_loss_param {{ source: "{tmp_path}/nope.bin" }}', [(2, 3), (2,)])
    source = write_h(tmp_path / "H.binaryproto", np.eye(2))
    with pytest.raises(CaffeError, match=r"H \(infogain_loss_param.source '.*H.binaryproto'\) has 4 values; "
                                         r"it must be 3 x 3"):
        make_layer(base + f'infogain_loss_param {{ source: "{source}" }}', [(2, 3), (2,)])
    with pytest.raises(CaffeError, match=r"H \(bottom 'H' \(2, 2\)\) has 4 values"):
        make_layer(base + 'bottom: "H"', [(2, 3), (2,), (2, 2)])
    with pytest.raises(CaffeError, match=r"loss_param.normalize is deprecated .*use \"normalization\""):
        make_layer(base + 'bottom: "H" loss_param { normalize: true }', [(2, 3), (2,), (3, 3)])
    with pytest.raises(CaffeError, match=r"label 'l' has shape \(3,\) \(3 values\).*needs one label per position"):
        make_layer(base + 'bottom: "H"', [(3, 3, 2), (3,), (3, 3)])
    layer = make_layer(base + 'bottom: "H"', [(2, 3), (2,), (3, 3)])
    with pytest.raises(CaffeError, match=r"label 3 is outside \[0, 3\)"):
        layer([torch.zeros(2, 3), torch.tensor([0.0, 3.0]), torch.eye(3)])
