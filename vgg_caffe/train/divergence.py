"""A diverged run whose loss is still a number: the solver's guard beside NaN / inf.

Caffe's SoftmaxWithLoss clamps each probability at FLT_MIN, so a net whose logits ran off (to ~1e10)
reports -log(FLT_MIN) = 87.3365 per sample: finite, with finite gradients (p - onehot), so a guard
on NaN / inf never fires and Caffe prints that loss for ever. With the default normalisation
(VALID: the mean over the labelled positions) the layer's value reaches 87.3365 only when *every*
position's probability of its label underflowed float32; a net that is learning never gets there.

saturation_loss(net) is the total loss at which that holds for every loss term of the train net
(the sum of loss_weight * 87.3365), when each term is such a SoftmaxWithLoss top; None when any
loss has no such ceiling (Euclidean, hinge, ...), and the guard then stays with NaN / inf. The
solver compares the loss averaged over iter_size and over the processes of a parallel job, so all
ranks decide alike.
"""
import math

from ..errors import CaffeError

LOG_FLT_MIN = -math.log(1.1754943508222875e-38)  # 87.33654475...

# float32 sums of equal terms round: accept the ceiling less a margin no learning net reaches
# (a label probability of 1e-37 already costs only 85.2).
_TOLERANCE = 1e-4

_FULL, _VALID, _BATCH_SIZE = 0, 1, 2


def saturation_loss(net):
    """The loss at or above which every sample of `net`'s SoftmaxWithLoss terms has saturated."""
    producers = {}
    for layer in net.layers.values():
        for k, top in enumerate(layer.param.top):
            producers[top] = (layer, k)
    ceiling = 0.0
    for top, weight in net.loss_weights.items():
        layer, k = producers.get(top, (None, None))
        if layer is None or layer.type != "SoftmaxWithLoss" or k != 0 or weight <= 0:
            return None
        mode, ignores = getattr(layer, "mode", _VALID), getattr(layer, "has_ignore", False)
        shape = net.blob_shapes.get(layer.param.bottom[0], ())
        axis = getattr(layer, "axis", 1)
        inner = math.prod(shape[axis + 1:]) if shape else 1
        # VALID averages over the labelled positions; FULL and (for one position per sample)
        # BATCH_SIZE do too when no label is ignored. Any other normaliser has no fixed ceiling.
        if not (mode == _VALID or (not ignores and (mode == _FULL or (mode == _BATCH_SIZE and inner == 1)))):
            return None
        ceiling += weight * LOG_FLT_MIN
    return ceiling * (1 - _TOLERANCE) if ceiling else None


class TrainingDiverged(CaffeError):
    """The loss or the gradient became NaN or infinite."""


class LossWatch:
    """Mixin of Solver: the smoothed loss Caffe displays, and the stop when training diverges."""

    def _update_smoothed_loss(self, loss, start_iter):
        """Caffe's UpdateSmoothedLoss: the mean of the last average_loss losses."""
        n = self.param.average_loss
        if len(self.losses) < n:
            self.losses.append(loss)
            size = len(self.losses)
            self.smoothed_loss = (self.smoothed_loss * (size - 1) + loss) / size
        else:
            idx = (self.iter - start_iter) % n
            self.smoothed_loss += (loss - self.losses[idx]) / n
            self.losses[idx] = loss

    def _diverged(self, loss, grad_norm, saturated=False):
        what = "loss" if not math.isfinite(loss) or saturated else "gradient"
        value = loss if not math.isfinite(loss) or saturated else grad_norm
        if saturated:  # see vgg_caffe.train.divergence
            value = (f"{value:.6g}, -log(FLT_MIN) for every sample: the softmax gave each label a probability "
                     "below FLT_MIN (the logits ran off)")
        self.log.error(f"Iteration {self.iter}: the {what} is {value}; stopping before the update")
        written = self.snapshot()
        where = f"; the weights before this update are in {written[0]}" if written else ""
        raise TrainingDiverged(f"{self.source}: training diverged at iteration {self.iter}: the {what} is "
                               f"{value} (try a lower base_lr or clip_gradients){where}")
