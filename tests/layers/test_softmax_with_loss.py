"""SoftmaxWithLoss against -sum(log(max(p, FLT_MIN))) / normaliser written out in numpy."""
import numpy as np
import pytest
import torch

FLT_MIN = np.float32(1.1754943508222875e-38)


def reference(x, labels, ignore=None, norm="VALID"):
    """x (N, C, H, W) and labels (N, H, W) -> Caffe's loss, looping over positions."""
    n, c, h, w = x.shape
    total, valid = 0.0, 0
    for i in range(n):
        for a in range(h):
            for b in range(w):
                lab = int(labels[i, a, b])
                if ignore is not None and lab == ignore:
                    continue
                z = x[i, :, a, b]
                p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
                total -= np.log(max(p[lab], FLT_MIN))
                valid += 1
    denom = {"FULL": n * h * w, "VALID": valid, "BATCH_SIZE": n, "NONE": 1}[norm]
    return total / max(denom, 1)


@pytest.mark.parametrize("norm", ["FULL", "VALID", "BATCH_SIZE", "NONE"])
def test_normalisations_with_ignore_label(make_layer, norm):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3, 2))
    labels = rng.integers(0, 4, (2, 3, 2)).astype(np.float32)
    labels[0, 1, 1] = labels[1, 2, 0] = 255
    layer = make_layer(f'name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "l" top: "loss" '
                       f'loss_param {{ ignore_label: 255 normalization: {norm} }}', [x.shape, labels.shape])
    (loss,) = layer(torch.from_numpy(x), torch.from_numpy(labels))
    assert layer.top_shapes == [()]
    np.testing.assert_allclose(float(loss), reference(x, labels, 255, norm), rtol=1e-10)


@pytest.mark.parametrize("normalize,norm", [("true", "VALID"), ("false", "BATCH_SIZE")])
def test_legacy_normalize(make_layer, normalize, norm):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 2, 2))
    labels = rng.integers(0, 5, (3, 2, 2))
    labels[0, 0, 0] = -1
    layer = make_layer(f'name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "l" top: "loss" '
                       f'loss_param {{ ignore_label: -1 normalize: {normalize} }}', [x.shape, labels.shape])
    (loss,) = layer(torch.from_numpy(x), torch.from_numpy(labels))  # integer labels work too
    np.testing.assert_allclose(float(loss), reference(x, labels, -1, norm), rtol=1e-10)


def test_classifier_loss_probabilities_and_flt_min_clamp(make_layer):
    x = np.array([[0.0, 200.0, -200.0], [1.0, 2.0, 3.0]])
    labels = np.array([2.0, 0.0])
    layer = make_layer('name: "loss" type: "SoftmaxWithLoss" bottom: "fc8" bottom: "label" top: "loss" top: "prob"',
                       [x.shape, labels.shape])
    xt = torch.tensor(x, requires_grad=True)
    loss, prob = layer(xt, torch.from_numpy(labels))
    # Sample 0: p = exp(-400) underflows float, so Caffe's loss is -log(FLT_MIN) = 87.3365.
    want = (-np.log(FLT_MIN) - np.log(np.exp(1) / np.exp([1, 2, 3]).sum())) / 2
    np.testing.assert_allclose(loss.item(), want, rtol=1e-6)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(prob.detach().numpy(), e / e.sum(1, keepdims=True), rtol=1e-12)
    # Caffe's gradient (p - onehot) / N, also where the value was clamped.
    loss.backward()
    p = e / e.sum(1, keepdims=True)
    onehot = np.eye(3)[labels.astype(int)]
    np.testing.assert_allclose(xt.grad.numpy(), (p - onehot) / 2, atol=1e-12)


def test_label_count_and_range_errors(make_layer):
    from vgg_caffe.errors import CaffeError
    with pytest.raises(CaffeError, match="layer 'loss'.*label 'l'.*one label per position"):
        make_layer('name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "l"', [(2, 3), (3,)])
    layer = make_layer('name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "l"', [(2, 3), (2,)])
    with pytest.raises(CaffeError, match="label 7 is outside"):
        layer(torch.zeros(2, 3), torch.tensor([0, 7]))


def test_softmax_with_loss_gradcheck(make_layer):
    layer = make_layer('name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "l" '
                       'loss_param { ignore_label: 1 }', [(3, 4, 2), (3, 2)])
    labels = torch.tensor([[0, 1], [3, 2], [1, 1]])
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer(x, labels)[0], (x,))


def test_huge_logits_cost_minus_log_flt_min_with_caffe_gradient(make_layer):
    """Issue 13: float32 logits ~1e10 underflow p to 0; Caffe's loss is -log(FLT_MIN) per sample
    (a straight-through clamp cancels to 0 here) and its gradient stays softmax - onehot."""
    layer = make_layer('name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "l" top: "loss"', [(1, 3), (1,)])
    want = -np.log(np.finfo(np.float32).tiny)
    for run in (layer, torch.jit.script(layer)):
        x = torch.tensor([[1e10, -1e10, 0.0]], dtype=torch.float32, requires_grad=True)
        (loss,) = run(x, torch.tensor([1.0]))
        assert loss.dtype == torch.float32
        np.testing.assert_allclose(loss.item(), want, rtol=1e-6)
        loss.backward()
        z = x.detach().double().numpy()
        e = np.exp(z - z.max(1, keepdims=True))
        np.testing.assert_allclose(x.grad.numpy(), e / e.sum(1, keepdims=True) - np.eye(3)[[1]], atol=1e-7)


def test_loss_weight_scales_caffe_gradient(make_layer):
    layer = make_layer('name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "l"', [(2, 3), (2,)])
    x = torch.tensor([[0.5, -1.0, 2.0], [3.0, 0.0, -300.0]], dtype=torch.float64, requires_grad=True)
    (0.25 * layer(x, torch.tensor([2, 2]))[0]).backward()
    z = x.detach().numpy()
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(x.grad.numpy(), 0.25 * (p - np.eye(3)[[2, 2]]) / 2, atol=1e-14)
