"""Dropout: y = x * mask / (1 - p) in TRAIN, identity in TEST, and masks keyed by the sample window."""
import pytest
import torch

from vgg_caffe.rng import SampleWindow


def _layer(make_layer, ratio=0.3):
    layer = make_layer(f'name: "drop6" type: "Dropout" dropout_param {{ dropout_ratio: {ratio} }}', [(8, 50)])
    layer.train()
    return layer


def test_dropout_train_scales_survivors_and_test_is_identity(make_layer):
    layer = _layer(make_layer, 0.3)
    x = torch.rand(8, 50, dtype=torch.float64) + 1
    y = layer(x)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / 0.7)
    assert 0.5 < kept.double().mean() < 0.9  # 400 draws of Bernoulli(0.7)
    layer.eval()
    assert torch.equal(layer(x), x)


def test_window_masks_identical_for_one_and_two_processes(make_layer):
    layer = _layer(make_layer, 0.5)
    x = torch.rand(8, 50) + 1
    layer.set_sample_window(SampleWindow(seed=7, iteration=3, start=0, stop=8, total=8))
    whole = layer(x)
    parts = []
    for start, stop in ((0, 3), (3, 8)):
        layer.set_sample_window(SampleWindow(seed=7, iteration=3, start=start, stop=stop, total=8))
        parts.append(layer(x[start:stop]))
    torch.testing.assert_close(torch.cat(parts), whole)
    torch.testing.assert_close(whole[whole != 0], x[whole != 0] * 2)
    # A pure function of (seed, iteration, layer): the same again, different at the next iteration.
    layer.set_sample_window(SampleWindow(seed=7, iteration=3, start=0, stop=8, total=8))
    assert torch.equal(layer(x), whole)
    layer.set_sample_window(SampleWindow(seed=7, iteration=4, start=0, stop=8, total=8))
    assert not torch.equal(layer(x), whole)


def test_window_must_match_batch(make_layer):
    from vgg_caffe.errors import CaffeError
    layer = _layer(make_layer)
    layer.set_sample_window(SampleWindow(seed=0, iteration=0, start=0, stop=4, total=8))
    with pytest.raises(CaffeError, match="drop6"):
        layer(torch.ones(8, 50))


def test_dropout_gradient_is_the_mask(make_layer):
    layer = _layer(make_layer, 0.25)
    x = torch.rand(8, 50, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() / 0.75)
