"""ContrastiveLoss (Caffe's ContrastiveLossLayer): the siamese loss of Hadsell, Chopra and LeCun.

Bottoms a and b (N, C, 1, 1) (or (N, C)) and the similarity y (N, 1, 1, 1) (or (N,)), a pair
counting as similar when int(y) != 0, as Caffe's cast. With d^2 = ||a_n - b_n||^2:
    similar:     d^2
    dissimilar:  max(margin - d, 0)^2,  or with legacy_version max(margin - d^2, 0)
loss = sum / N / 2; margin defaults to 1. The gradient is Caffe's: for a dissimilar pair (new
form) it is -(margin - d) / (d + 1e-4) * (a - b) / N where margin > d, the 1e-4 keeping it finite
at d = 0, so it is not exactly the derivative of the value. b gets the negative of a's gradient;
nothing flows into y.
"""
import torch

from .base import Layer, register
from .softmax_with_loss import with_caffe_gradient


def legacy_dims(layer, shape, name):
    """Caffe's num, channels, height, width of a blob of at most 4 axes (missing ones are 1)."""
    if len(shape) > 4:
        raise layer.error(f"bottom '{name}' has shape {shape}; Caffe's legacy 4-d accessors take at most 4 axes")
    return tuple(shape) + (1,) * (4 - len(shape))


@register
class ContrastiveLoss(Layer):
    type = "ContrastiveLoss"
    bottoms = (3, 3)
    is_loss = True
    __constants__ = ["margin", "legacy"]

    def setup(self):
        p = self.param.contrastive_loss_param
        self.margin = float(p.margin)
        self.legacy = bool(p.legacy_version)

    def reshape(self, bottom_shapes):
        names = list(self.param.bottom) or ["#0", "#1", "#2"]
        a, b, y = (legacy_dims(self, tuple(s), n) for s, n in zip(bottom_shapes, names))
        if a[0] != b[0] or a[0] != y[0]:
            raise self.error(f"bottoms '{names[0]}' {tuple(bottom_shapes[0])}, '{names[1]}' "
                             f"{tuple(bottom_shapes[1])} and '{names[2]}' {tuple(bottom_shapes[2])} must have "
                             "the same first axis N (one pair and one similarity per item)")
        if a[1] != b[1] or a[2:] != (1, 1) or b[2:] != (1, 1):
            raise self.error(f"bottoms '{names[0]}' {tuple(bottom_shapes[0])} and '{names[1]}' "
                             f"{tuple(bottom_shapes[1])} must both be (N, C, 1, 1) with the same C")
        if y[1:] != (1, 1, 1):
            raise self.error(f"bottom '{names[2]}' (similarity) has shape {tuple(bottom_shapes[2])}; it must "
                             "hold one value per pair (N, 1, 1, 1)")
        return [()]

    def forward(self, a, b, y):
        num = a.shape[0]
        diff = (a - b).reshape(num, -1)
        d = diff.detach()
        dist_sq = (d * d).sum(1)
        similar = y.detach().reshape(num).to(torch.int64) != 0
        if self.legacy:
            mdist = self.margin - dist_sq
            dissimilar = torch.clamp(mdist, min=0.0)
            beta = torch.full_like(dist_sq, -1.0)
        else:
            dist = torch.sqrt(dist_sq)
            mdist = self.margin - dist
            dissimilar = torch.clamp(mdist, min=0.0) ** 2
            beta = -mdist / (dist + 1e-4)
        value = torch.where(similar, dist_sq, dissimilar).sum() / num / 2.0
        # Caffe's backward per pair: diff for similar ones, beta * diff for dissimilar ones
        # inside the margin, 0 otherwise; over N (the 1/2 cancels the square's 2).
        coef = torch.where(similar, torch.ones_like(beta),
                           torch.where(mdist > 0, beta, torch.zeros_like(beta)))
        grad = coef.unsqueeze(1) * d / num
        return with_caffe_gradient(value, diff, grad)
