"""The update rules of Caffe's solvers on one base: SGDSolver::ApplyUpdate and its subclasses'
ComputeUpdateValue (sgd_solver.cpp, nesterov_solver.cpp, adagrad_solver.cpp, rmsprop_solver.cpp,
adadelta_solver.cpp, adam_solver.cpp).

Every solver type shares the first part of ApplyUpdate. After forward + backward have run
iter_size times, the diffs summing, with rate = the learning rate at the current 0-based iteration:
1. If clip_gradients >= 0 and the global L2 norm of all diffs exceeds it, every diff *= clip / norm.
2. Per learnable blob: diff /= iter_size; diff += weight_decay * decay_mult * w (L2; L1 uses sign(w)).
3. The type's ComputeUpdateValue turns the diff into the step, with local rate = rate * lr_mult,
   and w -= step (Caffe's Net::Update).
Caffe does this arithmetic in float: the rate, rate * lr_mult and weight_decay * decay_mult are
rounded to float32 before use (f32 below), so the steps match its bits, not just its formula.

Blobs with lr_mult 0 get no diff (Caffe turns their param_propagate_down off) and their weights
never move (local rate 0), but Caffe still runs the update over them: their diff is then
weight_decay * decay_mult * w, which AdaGrad, RMSProp, AdaDelta and Adam accumulate into the
history (BatchNorm's statistics among them, lr_mult 0 and decay_mult 1). We do the same, so a
.solverstate holds what Caffe's holds; the weights themselves are left untouched.

The history a .solverstate stores is `history`: for one-slot types (SGD, Nesterov, AdaGrad,
RMSProp) one tensor per learnable blob; AdaDelta and Adam keep two, stored as Caffe does: the
first N blobs, then N more. torch.optim's optimizers keep the rate outside their buffers, which
differs from Caffe's form as soon as the rate changes, so the rules are written out here with
torch._foreach_* over groups of blobs sharing (lr_mult, decay_mult).
"""
from collections import OrderedDict

import numpy as np
import torch

from ...errors import CaffeError
from ..log import fmt

_RULES = {}


def f32(x):
    """x rounded to float32, as Caffe's Dtype arithmetic on the rate and the multipliers."""
    return float(np.float32(x))


def register(cls):
    """Class decorator: register an update rule under Caffe's solver type string."""
    _RULES[cls.type] = cls
    return cls


def rule_class(name, source="<solver>"):
    from . import _load_all  # noqa: F401  (importing the package registers every rule)

    cls = _RULES.get(name)
    if cls is None:
        raise CaffeError(f"{source}: unknown solver type '{name}'; expected one of {', '.join(sorted(_RULES))}")
    return cls


def known_rules():
    from . import _load_all  # noqa: F401

    return sorted(_RULES)


class UpdateRule:
    """The learnable blobs of a net, their history, and Caffe's update over them.

    UpdateRule(learnable, param, source)

    learnable: net.learnable(), (layer, index, blob, ParamSpec) in Caffe's order.
    param: the SolverParameter (momentum, momentum2, delta, rms_decay, weight_decay,
        regularization_type, clip_gradients, iter_size).
    Attributes: learnable, params (the blobs), history (slots * N zero-initialised tensors:
    the solverstate's history), groups ([((lr_mult, decay_mult), [k, ...])], the blobs updated
    together), updated (the indices of the blobs with lr_mult != 0) and frozen (the groups of
    the lr_mult 0 blobs, whose history alone advances).
    Subclasses set `type`, `slots`, and implement step(ks, grads, local_rate, iteration),
    advancing the history of blobs `ks` and returning the values to subtract from the weights.
    """

    type = None
    slots = 1

    def __init__(self, learnable, param, source="<solver>"):
        self.param, self.source = param, source
        self.check(param)
        self.learnable = list(learnable)
        self.params = [blob for _, _, blob, _ in self.learnable]
        self.history = [torch.zeros_like(b, memory_format=torch.contiguous_format)
                        for _ in range(self.slots) for b in self.params]
        groups, frozen = OrderedDict(), OrderedDict()
        for k, (layer, i, blob, spec) in enumerate(self.learnable):
            if spec.lr_mult == 0:
                blob.requires_grad_(False)   # Caffe computes no diff for it and never moves it
                frozen.setdefault((0.0, float(spec.decay_mult)), []).append(k)
                continue
            blob.requires_grad_(True)
            groups.setdefault((float(spec.lr_mult), float(spec.decay_mult)), []).append(k)
        self.groups = list(groups.items())
        self.frozen = list(frozen.items())
        self.updated = [k for _, ks in self.groups for k in ks]

    def check(self, param):
        """The solver type's CHECKs on its parameters (Caffe's constructors)."""

    def slot(self, s, ks):
        """History slot `s` of the blobs `ks` (slot 1 is Caffe's second block of N blobs)."""
        n = len(self.params)
        return [self.history[s * n + k] for k in ks]

    def grads(self):
        """The diffs of the updated blobs, in order; zeros for a blob the loss does not depend on."""
        grads = []
        for k in self.updated:
            blob = self.params[k]
            if blob.grad is None:  # a blob the loss does not depend on
                blob.grad = torch.zeros_like(blob)
            grads.append(blob.grad)
        return grads

    @staticmethod
    def global_norm(grads, device):
        """The L2 norm of all the diffs together (what clip_gradients compares)."""
        if not grads:
            return torch.zeros((), device=device)
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))

    def apply(self, rate, grads, grad_norm, log, iteration=0):
        """Caffe's ApplyUpdate on the summed diffs `grads` (from grads(), with their global norm
        `grad_norm`) at 0-based `iteration`; clears the diffs afterwards."""
        p = self.param
        clip = p.clip_gradients
        if clip >= 0 and grad_norm > clip:
            scale = clip / grad_norm
            log.info(f"Gradient clipping: scaling down gradients (L2 norm {fmt(grad_norm)} > "
                     f"{fmt(clip)}) by scale factor {fmt(scale)}")
            torch._foreach_mul_(grads, scale)
        l1 = p.regularization_type == "L1"
        rate = f32(rate)
        with torch.no_grad():
            for (lr_mult, decay_mult), ks in self.groups:
                w = [self.params[k] for k in ks]
                g = [self.params[k].grad for k in ks]
                if p.iter_size > 1:
                    torch._foreach_mul_(g, f32(1.0 / p.iter_size))
                decay = f32(p.weight_decay * decay_mult)
                if decay:
                    torch._foreach_add_(g, torch._foreach_sign(w) if l1 else w, alpha=decay)
                torch._foreach_sub_(w, self.step(ks, g, f32(rate * lr_mult), iteration))
            for (_, decay_mult), ks in self.frozen:
                # Caffe's update over an lr_mult 0 blob: diff = decay * w (or 0), local rate 0;
                # only the history changes, so the step is not applied.
                w = [self.params[k] for k in ks]
                decay = f32(p.weight_decay * decay_mult)
                g = torch._foreach_mul(torch._foreach_sign(w) if l1 else w, decay)
                self.step(ks, g, 0.0, iteration)
        for blob in self.params:
            blob.grad = None

    def step(self, ks, grads, local_rate, iteration):
        raise NotImplementedError
