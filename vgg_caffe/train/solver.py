"""Solver: the training loop of Caffe's solvers (every type: SGD, Nesterov, AdaGrad, RMSProp,
AdaDelta, Adam), with its test pass, snapshots and resume.

Reproduces Caffe's Solver / SGDSolver (solver.cpp, sgd_solver.cpp); the parts live beside it:
nets.py builds the train and test nets, testing.py runs the test pass, updates/ holds one update
rule per solver type, snapshot.py writes and restores snapshots, log.py prints Caffe's lines.
- nets: one train net from net / net_param / train_net / train_net_param and the test nets from
  test_net_param, test_net and, for net / net_param, one instance per remaining test_iter, each
  with its NetState (phase, plus net_param.state, plus train_state / test_state[i]); test nets
  share the train net's blobs by layer name (ShareTrainedLayersWith).
- Step: zero the diffs; forward + backward iter_size times, the diffs summing; then ApplyUpdate
  with the rate at the current iteration: Caffe's SGD / Nesterov update (clipping, iter_size,
  L1/L2 decay, lr_mult/decay_mult, the rate inside the momentum history) is vgg_caffe.train.updates.
- Test every test_interval iterations (and at 0 unless test_initialization is false), the outputs
  averaged over test_iter batches; display every `display` iterations with the loss smoothed over
  average_loss iterations; snapshot every `snapshot` iterations and after training.
- Snapshots PREFIX_iter_N.caffemodel + PREFIX_iter_N.solverstate (".h5" appended for HDF5),
  written and restored by vgg_caffe.train.snapshot; restore continues the same trajectory (all
  randomness is keyed by iteration, see vgg_caffe.rng).

Beyond Caffe: a non-finite loss or gradient stops training with a CaffeError naming the iteration,
after a snapshot of the weights before the bad update; the "plateau" lr policy (lr_policy.py);
and data parallelism hooks: rank / world_size / allreduce (vgg_caffe.train.parallel). Each process
computes samples [rank*B/W, (rank+1)*B/W) of the global batch B; the gradients are averaged by
allreduce.overlapped's GradientReducer, its buckets all-reduced from gradient hooks during the
iteration's last backward (vgg_caffe.train.overlap), else by `allreduce(tensors)` after it, and a
few statistics with them; only rank 0 logs and snapshots. Devices (vgg_caffe.train.devices): the
nets move there still sharing blobs, inputs are label-checked on the host and copied without
waiting, and each iteration synchronises with the device once (the summary the host reads). The data for forward pass k (= iteration * iter_size + sub-batch) is
layer.batch(k, start, stop), and net.set_sample_window(SampleWindow(seed, k, start, stop, B))
keys dropout, so 1 process and W processes train the same trajectory.
"""
import math
import os
import time

import torch

from . import snapshot as snapshots
from ..errors import CaffeError
from .divergence import saturation_loss
from .lr_policy import LrSchedule
from ..proto import read_solver, upgrade_solver
from . import devices
from .divergence import LossWatch, TrainingDiverged  # noqa: F401  (re-exported)
from .nets import SolverNets, resolve_path
from .snapshot import SolverSnapshots
from .testing import NONE, SNAPSHOT, STOP, SolverTesting  # noqa: F401  (re-exported for solve.py)
from .updates import UpdateRule, known_rules, rule_class
from .log import TrainingLog, fmt




def solver_type(param, source):
    """The solver type string; the legacy `solver_type` enum is upgraded first, as Caffe's
    UpgradeSolverType does (vgg_caffe.proto.upgrade_solver)."""
    name = upgrade_solver(param, source).type
    if name not in known_rules():
        raise CaffeError(f"{source}: unknown solver type '{name}'; expected one of {', '.join(known_rules())}")
    return name


class Solver(SolverNets, SolverTesting, LossWatch, SolverSnapshots):
    """A Caffe solver over a Net (the type from the SolverParameter).

    Solver(param, rank=0, world_size=1, allreduce=None, device=None, seed=None, batch_scale=1,
           log=None, train_feed=None, test_feeds=None, source=None)

    param: a SolverParameter or the path of a solver prototxt.
    allreduce(tensors): averages a list of tensors in place across processes (None: one process).
    seed: overrides random_seed (the workers of a parallel job agree on one).
    batch_scale: multiplies the train net's batch sizes (Caffe's per-GPU multi-GPU semantics).
    train_feed(forward_index, start, stop) / test_feeds[i](batch_index, start, stop): dicts of
    input tensors for nets whose inputs are Input layers (tests, benchmarks).
    action(): polled every iteration, returns NONE, STOP or SNAPSHOT (signal handlers).
    init_layers: restricts the copy of the solver's `weights` to these layer names.
    """

    def __init__(self, param, rank=0, world_size=1, allreduce=None, device=None, seed=None,
                 batch_scale=1, log=None, train_feed=None, test_feeds=None, source=None, action=None,
                 init_layers=None, deterministic=False, precision=None):
        if isinstance(param, (str, os.PathLike)):
            source = source or os.fspath(param)
            param = read_solver(param)
        self.source = source or "<solver>"
        self.base_dir = os.path.dirname(os.path.abspath(source)) if source and os.path.exists(source) else None
        self.param = param
        self.rank, self.world_size = rank, world_size
        self.allreduce = allreduce
        self.log = log if log is not None else TrainingLog(enabled=rank == 0)
        self.train_feed, self.test_feeds = train_feed, list(test_feeds or [])
        self.action = action or (lambda: NONE)
        self.type = solver_type(param, self.source)
        self._check_param()
        self.seed = self._choose_seed(seed)
        self.device = devices.choose_device(device, param, self.source, self.log)
        self.schedule = LrSchedule(param, self.source)
        self.iter = 0
        self.requested_early_exit = False
        self.snapshot_prefix = snapshots.snapshot_prefix(param, self.source)

        self.net = self._init_train_net(batch_scale)   # filled from its fillers with self.seed
        self.test_nets = self._init_test_nets()   # filled, then sharing the train net's blobs
        self._check_batch_split()                  # before any weights are read or a test runs
        for path in param.weights:
            self.load_weights(path, init_layers)
        self._place(precision, deterministic)
        for layer in self._data_layers():
            if hasattr(layer, "seed"):   # Caffe seeds everything from random_seed
                layer.seed = self.seed
        self._init_update()
        self.losses, self.smoothed_loss = [], 0.0
        self.saturation_loss = saturation_loss(self.net)   # a finite loss that means divergence

    # -- set-up ---------------------------------------------------------------------------------

    def _check_param(self):
        p, where = self.param, self.source
        if p.average_loss < 1:
            raise CaffeError(f"{where}: average_loss should be non-negative and at least 1, got {p.average_loss}")
        if p.iter_size < 1:
            raise CaffeError(f"{where}: iter_size must be >= 1, got {p.iter_size}")
        if p.regularization_type not in ("L1", "L2"):
            raise CaffeError(f"{where}: unknown regularization_type '{p.regularization_type}'; expected L1 or L2")
        if p.max_iter < 0 or p.display < 0 or p.snapshot < 0 or p.test_interval < 0:
            raise CaffeError(f"{where}: max_iter, display, snapshot and test_interval must not be negative")
        if not p.HasField("lr_policy"):
            raise CaffeError(f"{where}: lr_policy is required (fixed, step, exp, inv, multistep, poly, sigmoid, plateau)")

    def _choose_seed(self, seed):
        if seed is not None and seed >= 0:
            return int(seed)
        if self.param.random_seed >= 0:
            return int(self.param.random_seed)
        return int.from_bytes(os.urandom(4), "little")

    def _place(self, precision, deterministic):
        """Move the nets to the device, still sharing their blobs; cuDNN and the data layers set
        up for it (vgg_caffe.train.devices)."""
        devices.place(self.net, self.test_nets, self.device, self.param, self.world_size, self.log,
                      precision, deterministic)

    def _init_update(self):
        """The learnable blobs, their history, and the groups the update runs over (vgg_caffe.train.updates);
        the lists are shared, so solver.params / solver.history are the update's own. In a parallel
        job the gradients are averaged by a GradientReducer overlapping backward where the
        allreduce offers one (allreduce.overlapped)."""
        self.rule = rule_class(self.type, self.source)(self.net.learnable(), self.param, self.source)
        u = self.rule
        self.learnable, self.params, self.history = u.learnable, u.params, u.history
        self.groups, self.updated = u.groups, u.updated
        self.reducer = None
        overlapped = getattr(self.allreduce, "overlapped", None)
        if self.world_size > 1 and overlapped is not None and self.updated:
            self.reducer = overlapped([self.params[k] for k in self.updated])

    def _data_layers(self):
        for net in [self.net] + self.test_nets:
            yield from net.data_layers

    def close(self):
        """Stop the data layers' prefetch workers, if any, and remove the gradient hooks."""
        if getattr(self, "reducer", None) is not None:
            self.reducer.close()
            self.reducer = None
        for layer in self._data_layers():
            if hasattr(layer, "close"):
                layer.close()

    def load_weights(self, paths, layers=None):
        """Copy weights by layer name (Caffe's -weights: comma-separated files; extra file layers are
        ignored); `layers` restricts the copy to the named layers (the paper's initialisation of
        deeper nets from net A). Test layers share the train net's blobs by name, so they follow
        (a learnable layer only the test net has keeps its fillers)."""
        for path in str(paths).split(","):
            path = resolve_path(path.strip(), self.base_dir)
            if not path:
                continue
            if not os.path.exists(path):
                raise CaffeError(f"weights file '{path}' does not exist")
            report = self.net.copy_from(path, strict=False, layers=layers)
            self.log.info(f"Copying weights: {report}" if report is not None else f"Copied weights from {path}")

    # -- running --------------------------------------------------------------------------------

    def solve(self, resume_file=None):
        """Caffe's Solver::Solve: optionally restore, train to max_iter, final snapshot/test."""
        p = self.param
        self.log.info(f"Solving {self.net.net_param.name}")
        self.log.info(f"Learning Rate Policy: {p.lr_policy}")
        self.requested_early_exit = False
        if resume_file:
            self.log.info(f"Restoring previous solver status from {resume_file}")
            self.restore(resume_file)
        start_iter = self.iter
        self.step(p.max_iter - self.iter)
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0):
            self.snapshot()
        if self.requested_early_exit:
            self.log.info("Optimization stopped early.")
            return
        if p.display and self.iter % p.display == 0:
            with torch.no_grad():
                loss = self._forward_train(self.iter * p.iter_size, backward=False)[0]
            loss = self._average([loss.reshape(1)])[0].item()
            self._update_smoothed_loss(loss, start_iter)
            self.log.info(f"Iteration {self.iter}, loss = {fmt(self.smoothed_loss)}")
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        self.log.info("Optimization Done.")

    def step(self, iters):
        """Caffe's Solver::Step: `iters` iterations of forward/backward, update, display, snapshot."""
        p = self.param
        start_iter, stop_iter = self.iter, self.iter + iters
        self.losses, self.smoothed_loss = [], 0.0
        timer, last_iter = time.perf_counter(), self.iter
        rate_shown = 0.0
        while self.iter < stop_iter:
            if p.test_interval and self.iter % p.test_interval == 0 and (self.iter > 0 or p.test_initialization):
                self.test_all()
                if self.requested_early_exit:
                    break
            display = p.display and self.iter % p.display == 0
            loss_sum, outputs = None, None
            if self.reducer is not None:
                self.reducer.prepare()
            for k in range(p.iter_size):
                if self.reducer is not None:   # the all-reduce runs during the last sub-batch's backward
                    self.reducer.arm(k == p.iter_size - 1)
                loss, outputs = self._forward_train(self.iter * p.iter_size + k, backward=True)
                loss_sum = loss if loss_sum is None else loss_sum + loss
            grads = self.reducer.finish() if self.reducer is not None else self._grads()
            # The statistics every rank must agree on, averaged with the gradients (or after the
            # reducer's buckets): the loss, whether anyone asked to stop or snapshot, and the
            # displayed outputs. The flags are written on the device (no host-to-device copy).
            request = self.action()
            flags = torch.zeros(2, dtype=loss_sum.dtype, device=loss_sum.device)
            if request in (STOP, SNAPSHOT):
                flags[0 if request == STOP else 1] = 1
            head = [loss_sum.reshape(1) / p.iter_size, flags]
            if display:
                head.append(torch.cat([v.detach().reshape(-1).to(loss_sum.dtype) for v in outputs.values()]))
            stats = torch.cat(head)
            self._average([stats] if self.reducer is not None else grads + [stats])
            norm = self._global_norm(grads, stats.device)
            # The iteration's one host synchronisation: everything the host needs, in one copy.
            summary = torch.cat([stats[:3], norm.reshape(1).to(stats.dtype), stats[3:]]).tolist()
            loss, stop_req, snap_req, grad_norm = summary[:4]
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                self._diverged(loss, grad_norm)
            if self.saturation_loss is not None and loss >= self.saturation_loss:
                self._diverged(loss, grad_norm, saturated=True)
            self._update_smoothed_loss(loss, start_iter)
            if display:
                now = time.perf_counter()
                lapse = now - timer
                per_s = (self.iter - last_iter) / (lapse if lapse else 1)
                self.log.info(f"Iteration {self.iter} ({fmt(per_s)} iter/s, {fmt(lapse)}s/{p.display} iters), "
                              f"loss = {fmt(self.smoothed_loss)}")
                timer, last_iter = now, self.iter
                self._log_outputs("Train", self.net, outputs, summary[4:])
            rate = self.schedule.rate(self.iter)
            if display:
                self.log.info(f"Iteration {self.iter}, lr = {fmt(rate)}")
            self._apply_update(rate, grads, grad_norm)
            self.iter += 1
            elapsed = time.perf_counter() - timer
            rate_shown = (self.iter - last_iter) / elapsed if elapsed > 0 else rate_shown
            self.log.progress(self.iter, p.max_iter, self.smoothed_loss, rate, rate_shown)
            if (p.snapshot and self.iter % p.snapshot == 0) or snap_req > 0:
                self.snapshot()
            if stop_req > 0:
                self.requested_early_exit = True
                break

    def _forward_train(self, index, backward):
        net = self.net
        window = self._window(index, self._global_batch(net))
        net.set_sample_window(window)
        net.iteration = index
        outputs = net(**self._inputs(net, self.train_feed, index, window))
        loss = net.loss
        if loss is None:
            raise CaffeError(f"{net.source}: the train net has no loss (no layer with a loss_weight)")
        if backward:
            loss.backward()
        net.blobs = {}  # let the activations go before the next pass
        return loss.detach(), outputs

    # The update itself is vgg_caffe.train.updates; these stay for the loop above and bench/bench_solver.py.

    def _grads(self):
        return self.rule.grads()

    def _average(self, tensors):
        if self.allreduce is not None and self.world_size > 1:
            self.allreduce(tensors)
        return tensors

    @staticmethod
    def _global_norm(grads, device):
        return UpdateRule.global_norm(grads, device)

    def _apply_update(self, rate, grads, grad_norm):
        """Caffe's SGDSolver::ApplyUpdate on the summed diffs (vgg_caffe.train.updates)."""
        self.rule.apply(rate, grads, grad_norm, self.log, self.iter)
