"""Accuracy against Caffe's rule written out: correct when fewer than top_k other classes score at
least as high as the true class (ties count against)."""
import numpy as np
import pytest
import torch


def reference(scores, labels, top_k, ignore=None):
    correct = count = 0
    for s, lab in zip(scores, labels):
        lab = int(lab)
        if ignore is not None and lab == ignore:
            continue
        count += 1
        rivals = sum(1 for c in range(len(s)) if c != lab and s[c] >= s[lab])
        correct += rivals < top_k
    return correct / count if count else 0.0


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_accuracy_topk_with_ties(make_layer, top_k):
    scores = np.array([[1, 2, 2, 0], [3, 3, 3, 3], [0, 1, 2, 3], [5, 1, 1, 1], [1, 1, 2, 2], [0, 0, 0, 1]], float)
    labels = np.array([1, 0, 1, 0, 2, 3], float)
    layer = make_layer(f'name: "acc" type: "Accuracy" bottom: "s" bottom: "l" top: "acc" '
                       f'accuracy_param {{ top_k: {top_k} }}', [scores.shape, labels.shape])
    (acc,) = layer(torch.from_numpy(scores), torch.from_numpy(labels))
    want = reference(scores, labels, top_k)
    assert float(acc) == pytest.approx(want)
    if top_k == 1:
        # ties: row 0 (2 vs 2) and row 1 (all equal) count as wrong; rows 3 and 5 are right.
        assert want == pytest.approx(2 / 6)


def test_accuracy_ignore_label_axis_and_per_class(make_layer):
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((2, 4, 3))  # N, C, positions
    labels = rng.integers(0, 4, (2, 3))
    labels[1, 2] = 9
    layer = make_layer('name: "acc" type: "Accuracy" bottom: "s" bottom: "l" top: "acc" top: "per_class" '
                       'accuracy_param { ignore_label: 9 }', [scores.shape, labels.shape])
    acc, per_class = layer(torch.from_numpy(scores), torch.from_numpy(labels))
    flat_s = scores.transpose(0, 2, 1).reshape(-1, 4)
    flat_l = labels.reshape(-1)
    assert float(acc) == pytest.approx(reference(flat_s, flat_l, 1, ignore=9))
    for c in range(4):
        rows = flat_l == c
        want = reference(flat_s[rows], flat_l[rows], 1) if rows.any() else 0.0
        assert float(per_class[c]) == pytest.approx(want)


def test_accuracy_all_ignored_is_zero(make_layer):
    layer = make_layer('name: "acc" type: "Accuracy" bottom: "s" bottom: "l" accuracy_param { ignore_label: 0 }',
                       [(2, 3), (2,)])
    (acc,) = layer(torch.randn(2, 3), torch.zeros(2))
    assert float(acc) == 0.0
