"""Caffe's SGD update: SGDSolver::ApplyUpdate (sgd_solver.cpp) and NesterovSolver (nesterov_solver.cpp).

CAFFE.md §2. After forward + backward have run iter_size times, the diffs summing, with
rate = the learning rate at the current 0-based iteration:
1. If clip_gradients >= 0 and the global L2 norm of all diffs exceeds it, every diff *= clip / norm.
2. Per learnable blob: diff /= iter_size; diff += weight_decay * decay_mult * w (L2; L1 uses sign(w)).
3. history = momentum * history + rate * lr_mult * diff; w -= history.
   Nesterov: w -= (1 + momentum) * history_new - momentum * history_old.
Blobs with lr_mult 0 get no diff and are never updated.

torch.optim.SGD keeps the rate outside the momentum buffer (v = m*v + g; w -= lr*v), which
differs from Caffe's form as soon as the rate changes, so the update is written out here with
torch._foreach_* over groups of blobs sharing (lr_mult, decay_mult). The history is what a
.solverstate stores (vgg_caffe.snapshot).
"""
from collections import OrderedDict

import torch

from .training_log import fmt


class SGDUpdate:
    """The learnable blobs of a net, their momentum history, and Caffe's update over them.

    SGDUpdate(learnable, param, solver_type)

    learnable: net.learnable(), (layer, index, blob, ParamSpec) in Caffe's order.
    param: the SolverParameter (momentum, weight_decay, regularization_type, clip_gradients, iter_size).
    solver_type: "SGD" or "Nesterov".

    Attributes: learnable, params (the blobs), history (one zero-initialised tensor per blob, in
    the same order: the solverstate's history), groups ([((lr_mult, decay_mult), [k, ...])], the
    blobs updated together) and updated (the indices of the blobs with lr_mult != 0).
    """

    def __init__(self, learnable, param, solver_type):
        self.param, self.type = param, solver_type
        self.learnable = list(learnable)
        self.params = [blob for _, _, blob, _ in self.learnable]
        self.history = [torch.zeros_like(b, memory_format=torch.contiguous_format) for b in self.params]
        groups = OrderedDict()
        for k, (layer, i, blob, spec) in enumerate(self.learnable):
            if spec.lr_mult == 0:
                blob.requires_grad_(False)   # Caffe computes no diff for it and never updates it
                continue
            blob.requires_grad_(True)
            groups.setdefault((float(spec.lr_mult), float(spec.decay_mult)), []).append(k)
        self.groups = list(groups.items())
        self.updated = [k for _, ks in self.groups for k in ks]

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

    def apply(self, rate, grads, grad_norm, log):
        """Caffe's SGDSolver::ApplyUpdate on the summed diffs `grads` (from grads(), with their
        global norm `grad_norm`); clears the diffs afterwards."""
        p = self.param
        clip = p.clip_gradients
        if clip >= 0 and grad_norm > clip:
            scale = clip / grad_norm
            log.info(f"Gradient clipping: scaling down gradients (L2 norm {fmt(grad_norm)} > "
                     f"{fmt(clip)}) by scale factor {fmt(scale)}")
            torch._foreach_mul_(grads, scale)
        momentum, l1 = p.momentum, p.regularization_type == "L1"
        norm = 1.0 / p.iter_size
        with torch.no_grad():
            for (lr_mult, decay_mult), ks in self.groups:
                w = [self.params[k] for k in ks]
                g = [self.params[k].grad for k in ks]
                h = [self.history[k] for k in ks]
                if p.iter_size > 1:
                    torch._foreach_mul_(g, norm)
                decay = p.weight_decay * decay_mult
                if decay:
                    torch._foreach_add_(g, torch._foreach_sign(w) if l1 else w, alpha=decay)
                local_rate = rate * lr_mult
                if self.type == "Nesterov":
                    previous = [t.clone() for t in h]
                    torch._foreach_mul_(h, momentum)
                    torch._foreach_add_(h, g, alpha=local_rate)
                    torch._foreach_mul_(previous, -momentum)
                    torch._foreach_add_(previous, h, alpha=1.0 + momentum)
                    torch._foreach_sub_(w, previous)
                else:
                    torch._foreach_mul_(h, momentum)
                    torch._foreach_add_(h, g, alpha=local_rate)
                    torch._foreach_sub_(w, h)
        for blob in self.params:
            blob.grad = None
