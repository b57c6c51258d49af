"""Caffe's fillers (filler.hpp) against their definitions written out here: value ranges, row sums,
the sparse gaussian's keep probability sparse/shape[0], and the fan-in/fan-out scales."""
import math

import pytest
import torch

from vgg_caffe.errors import CaffeError
from vgg_caffe.layers.fillers import fill
from vgg_caffe.proto import parse_text, pb


def filler(text):
    return parse_text(text, pb.FillerParameter())


def test_positive_unitball_rows_sum_to_one():
    t = torch.empty(7, 3, 4, 5)
    fill(t, filler('type: "positive_unitball"'), torch.Generator().manual_seed(0))
    assert (t >= 0).all() and (t <= 1).all()
    torch.testing.assert_close(t.reshape(7, -1).sum(1), torch.ones(7))


def test_sparse_gaussian_keeps_sparse_over_num_outputs():
    # 200 outputs, sparse 50: each weight survives with probability 50/200 = 0.25.
    t = torch.empty(200, 400)
    fill(t, filler('type: "gaussian" std: 1 sparse: 50'), torch.Generator().manual_seed(1))
    kept = (t != 0).float().mean().item()
    assert abs(kept - 0.25) < 0.01


def test_xavier_and_msra_scales():
    t = torch.empty(64, 32, 3, 3)   # fan_in = 32*9 = 288, fan_out = 64*9 = 576
    fill(t, filler('type: "xavier"'), torch.Generator().manual_seed(2))
    assert t.abs().max().item() <= math.sqrt(3 / 288) + 1e-7
    fill(t, filler('type: "msra" variance_norm: FAN_OUT'), torch.Generator().manual_seed(3))
    assert t.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.05)


def test_unknown_filler_names_the_choices():
    with pytest.raises(CaffeError, match="conv1.*unknown filler type 'orthogonal'.*positive_unitball"):
        fill(torch.empty(2, 2), filler('type: "orthogonal"'), None, "conv1")


@pytest.mark.parametrize("k", [2, 3, 4, 6, 7, 16])
def test_bilinear_is_caffes_centred_upsampling_kernel(k):
    # Caffe's BilinearFiller (filler.hpp, checked by its TestFillOdd k=7 / TestFillEven k=6):
    # f = ceil(k / 2), c = (k - 1) / (2f), w[y][x] = (1 - |x/f - c|) * (1 - |y/f - c|), every
    # (out, in) pair alike. Written here as FCN's upsample_filt: centre f - 1 (k odd) or f - 0.5
    # (k even), w = (1 - |x - centre| / f) * (1 - |y - centre| / f), so the kernel is symmetric.
    t = torch.empty(3, 2, k, k, dtype=torch.float64)
    fill(t, filler('type: "bilinear"'))
    f = math.ceil(k / 2)
    centre = f - 1 if k % 2 == 1 else f - 0.5
    for y in range(k):
        for x in range(k):
            want = (1 - abs(x - centre) / f) * (1 - abs(y - centre) / f)
            assert (t[:, :, y, x] - want).abs().max().item() < 1e-12, (k, y, x)
    assert torch.allclose(t, t.flip(-1), atol=1e-12) and torch.allclose(t, t.flip(-2), atol=1e-12)
