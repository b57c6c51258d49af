"""Solver: Caffe's SGD (and Nesterov) solver's training loop, its test pass, snapshots and resume.

Reproduces Caffe's Solver / SGDSolver (solver.cpp, sgd_solver.cpp):
- nets: one train net from net / net_param / train_net / train_net_param and the test nets from
  test_net_param, test_net and, for net / net_param, one instance per remaining test_iter, each
  with its NetState (phase, plus net_param.state, plus train_state / test_state[i]); test nets
  share the train net's blobs by layer name (ShareTrainedLayersWith).
- Step: zero the diffs; forward + backward iter_size times, the diffs summing; then ApplyUpdate
  with the rate at the current iteration: Caffe's SGD / Nesterov update (clipping, iter_size,
  L1/L2 decay, lr_mult/decay_mult, the rate inside the momentum history) is vgg_caffe.sgd.
- Test every test_interval iterations (and at 0 unless test_initialization is false), the outputs
  averaged over test_iter batches; display every `display` iterations with the loss smoothed over
  average_loss iterations; snapshot every `snapshot` iterations and after training.
- Snapshots PREFIX_iter_N.caffemodel + PREFIX_iter_N.solverstate (".h5" appended for HDF5),
  written and restored by vgg_caffe.snapshot; restore continues the same trajectory (all
  randomness is keyed by iteration, see vgg_caffe.rng).

Beyond Caffe: a non-finite loss or gradient stops training with a CaffeError naming the iteration,
after a snapshot of the weights before the bad update; the "plateau" lr policy (lr_policy.py);
and data parallelism hooks: rank / world_size / allreduce (vgg_caffe.parallel). Each process
computes samples [rank*B/W, (rank+1)*B/W) of the global batch B, `allreduce(tensors)` averages
the gradients (and a few statistics) in place before the update, and only rank 0 logs and
snapshots. The data for forward pass k (= iteration * iter_size + sub-batch) is
layer.batch(k, start, stop), and net.set_sample_window(SampleWindow(seed, k, start, stop, B))
keys dropout, so 1 process and W processes train the same trajectory.
"""
import math
import os
import time
from collections import OrderedDict

import torch

from . import snapshot as snapshots
from .errors import CaffeError
from .lr_policy import LrSchedule
from .net import Net
from .proto import pb, read_net, read_solver, upgrade_net
from .rng import SampleWindow
from .sgd import SGDUpdate
from .training_log import TrainingLog, fmt

SOLVER_TYPES = {"SGD": "SGD", "Nesterov": "Nesterov"}
_CAFFE_ONLY_TYPES = ("AdaGrad", "RMSProp", "AdaDelta", "Adam")
_LEGACY_TYPE_NAMES = {pb.SolverParameter.SGD: "SGD", pb.SolverParameter.NESTEROV: "Nesterov",
                      pb.SolverParameter.ADAGRAD: "AdaGrad", pb.SolverParameter.RMSPROP: "RMSProp",
                      pb.SolverParameter.ADADELTA: "AdaDelta", pb.SolverParameter.ADAM: "Adam"}

# Actions a signal (or anyone) can request; checked once per iteration and per test batch.
NONE, STOP, SNAPSHOT = 0, 1, 2


class TrainingDiverged(CaffeError):
    """The loss or the gradient became NaN or infinite."""


def resolve_path(path, base_dir, what="file"):
    """Caffe resolves relative paths against the current directory; be lenient and also try the
    solver file's directory."""
    if not path or os.path.isabs(path) or os.path.exists(path) or not base_dir:
        return path
    candidate = os.path.join(base_dir, path)
    return candidate if os.path.exists(candidate) else path


def solver_type(param, source):
    """The solver type ("SGD" or "Nesterov"), from `type` or the legacy `solver_type` enum."""
    name = param.type
    if not param.HasField("type") and param.HasField("solver_type"):
        name = _LEGACY_TYPE_NAMES[param.solver_type]
    if name in SOLVER_TYPES:
        return name
    note = (f" ({name} is a Caffe solver this project does not implement)"
            if name in _CAFFE_ONLY_TYPES else "")
    raise CaffeError(f"{source}: unknown solver type '{name}'{note}; expected one of {', '.join(SOLVER_TYPES)}")


class Solver:
    """Caffe's SGD solver over a Net.

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
                 init_layers=None):
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
        self.device = self._choose_device(device)
        self.schedule = LrSchedule(param, self.source)
        self.iter = 0
        self.requested_early_exit = False
        self.snapshot_prefix = snapshots.snapshot_prefix(param, self.source)

        self.net = self._init_train_net(batch_scale)   # filled from its fillers with self.seed
        self.test_nets = self._init_test_nets()   # filled, then sharing the train net's blobs
        self._check_batch_split()                  # before any weights are read or a test runs
        for path in param.weights:
            self.load_weights(path, init_layers)
        self.net.to(self.device)
        for tn in self.test_nets:
            tn.to(self.device)
        for layer in self._data_layers():
            if hasattr(layer, "seed"):   # Caffe seeds everything from random_seed
                layer.seed = self.seed
        self._init_update()
        self.losses, self.smoothed_loss = [], 0.0

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

    def _choose_device(self, device):
        if device is not None:
            device = torch.device(device)
            if device.type == "cuda" and not torch.cuda.is_available():
                raise CaffeError("--device cuda: no CUDA device is available")
            return device
        if self.param.solver_mode == pb.SolverParameter.GPU:
            if torch.cuda.is_available():
                if self.param.device_id >= torch.cuda.device_count():
                    raise CaffeError(f"{self.source}: device_id {self.param.device_id} but CUDA sees "
                                     f"{torch.cuda.device_count()} GPU(s)")
                return torch.device("cuda", self.param.device_id)
            self.log.info("solver_mode is GPU but no CUDA device is available: running on the CPU")
        return torch.device("cpu")

    def _net_param(self, param_field, file_field, index=None):
        p = self.param
        if index is None:
            if p.HasField(param_field):
                return upgrade_net(getattr(p, param_field), self.source)
            path = resolve_path(getattr(p, file_field), self.base_dir)
        else:
            params = getattr(p, param_field)
            if index < len(params):
                return upgrade_net(params[index], self.source)
            path = resolve_path(getattr(p, file_field)[index - len(params)], self.base_dir)
        if not os.path.exists(path):
            raise CaffeError(f"{self.source}: net file '{path}' does not exist")
        return read_net(path)

    def _init_train_net(self, batch_scale):
        p, where = self.param, self.source
        given = [f for f in ("train_net_param", "train_net", "net_param", "net") if p.HasField(f)]
        if not given:
            raise CaffeError(f"{where}: one of net, net_param, train_net or train_net_param must be given")
        if len(given) > 1:
            raise CaffeError(f"{where}: give only one of net, net_param, train_net, train_net_param (found {', '.join(given)})")
        field = given[0]
        if field.endswith("_param"):
            model = net_param = upgrade_net(getattr(p, field), where)
            net_source = where          # the net is written inside the solver file
        else:
            model = net_source = self._existing(getattr(p, field))
            net_param = read_net(model)
        if batch_scale != 1:
            from .parallel import scale_batch_size
            model = net_param = scale_batch_size(net_param, batch_scale, pb.TRAIN)
        state = pb.NetState(phase=pb.TRAIN)
        state.MergeFrom(net_param.state)
        state.MergeFrom(p.train_state)
        self.log.info(f"Creating training net from {field}" + ("" if field.endswith("_param") else f" file {getattr(p, field)}"))
        # The net's errors name its file (the solver's, for a net_param written inside it).
        return Net(model, phase=state.phase, level=state.level, stages=list(state.stage), source=net_source,
                   seed=self.seed)

    def _check_batch_split(self):
        """In a parallel job, every batch must split over the workers: the train batch evenly (the
        averaged gradient is then the batch's), a test batch into non-empty shares. Checked once the
        nets are built, so a bad batch size fails before the first test pass or iteration."""
        if self.world_size == 1:
            return
        from .parallel import sample_slice
        for net, what, even in [(self.net, "train net", True)] + [(tn, f"test net #{i}", False)
                                                                 for i, tn in enumerate(self.test_nets)]:
            total = self._declared_batch(net)
            if total is None:
                continue
            try:
                sample_slice(total, self.rank, self.world_size, even=even)
            except CaffeError as e:
                raise CaffeError(f"{net.source}: {what}: {e}") from None

    @staticmethod
    def _declared_batch(net):
        """The global batch of `net` as its data layers (or inputs) declare it; None without any."""
        for layer in net.data_layers:
            if layer.top_shapes and layer.top_shapes[0]:
                return int(layer.top_shapes[0][0])
        for name in net.input_names:
            shape = net.blob_shapes.get(name)
            if shape:
                return int(shape[0])
        return None

    def _existing(self, path):
        resolved = resolve_path(path, self.base_dir)
        if not os.path.exists(resolved):
            raise CaffeError(f"{self.source}: net file '{path}' does not exist")
        return resolved

    def _init_test_nets(self):
        p, where = self.param, self.source
        generic = p.HasField("net") or p.HasField("net_param")
        specific = [("test_net_param", i) for i in range(len(p.test_net_param))] + \
                   [("test_net", i) for i in range(len(p.test_net))]
        if generic:
            if len(p.test_iter) < len(specific):
                raise CaffeError(f"{where}: test_iter must be specified for each test network "
                                 f"({len(specific)} test nets, {len(p.test_iter)} test_iter)")
        elif len(p.test_iter) != len(specific):
            raise CaffeError(f"{where}: test_iter must be specified for each test network "
                             f"({len(specific)} test nets, {len(p.test_iter)} test_iter)")
        count = len(specific) + (len(p.test_iter) - len(specific) if generic else 0)
        if len(p.test_state) and len(p.test_state) != count:
            raise CaffeError(f"{where}: test_state must be unspecified or given once per test net ({count})")
        if count and p.test_interval <= 0:
            raise CaffeError(f"{where}: there are {count} test net(s) but test_interval is {p.test_interval}; "
                             "set test_interval > 0")
        nets = []
        for i in range(count):
            if i < len(specific):
                kind, j = specific[i]
                if kind == "test_net_param":
                    model = net_param = upgrade_net(p.test_net_param[j], where)
                    net_source = where
                else:
                    model = net_source = self._existing(p.test_net[j])
                    net_param = read_net(model)
            elif p.HasField("net_param"):
                model = net_param = upgrade_net(p.net_param, where)
                net_source = where
            else:
                model = net_source = self._existing(p.net)
                net_param = read_net(model)
            state = pb.NetState(phase=pb.TEST)
            state.MergeFrom(net_param.state)
            if len(p.test_state):
                state.MergeFrom(p.test_state[i])
            self.log.info(f"Creating test net (#{i})")
            net = Net(model, phase=state.phase, level=state.level, stages=list(state.stage), source=net_source,
                      seed=self.seed + 1 + i)
            self._share_trained_layers(net)
            nets.append(net)
        return nets

    def _share_trained_layers(self, test_net):
        """Caffe's ShareTrainedLayersWith: a test layer with the name of a train layer uses its blobs."""
        train_layers = dict(zip(self.net.layer_names, self.net.layers.values()))
        for name, layer in zip(test_net.layer_names, test_net.layers.values()):
            source = train_layers.get(name)
            if source is None or not len(layer.blobs):
                continue
            if len(source.blobs) != len(layer.blobs):
                raise CaffeError(f"{self.source}: layer '{name}' has {len(layer.blobs)} blobs in the test net "
                                 f"but {len(source.blobs)} in the train net")
            for j, blob in enumerate(source.blobs):
                if blob.shape != layer.blobs[j].shape:
                    raise CaffeError(f"{self.source}: layer '{name}' blob {j}: shape {tuple(layer.blobs[j].shape)} "
                                     f"in the test net, {tuple(blob.shape)} in the train net")
                layer.blobs[j] = blob

    def _init_update(self):
        """The learnable blobs, their history, and the groups the update runs over (vgg_caffe.sgd);
        the lists are shared, so solver.params / solver.history are the update's own."""
        self.sgd = SGDUpdate(self.net.learnable(), self.param, self.type)
        u = self.sgd
        self.learnable, self.params, self.history = u.learnable, u.params, u.history
        self.groups, self.updated = u.groups, u.updated

    def _data_layers(self):
        for net in [self.net] + self.test_nets:
            yield from net.data_layers

    def close(self):
        """Stop the data layers' prefetch workers, if any."""
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
            for k in range(p.iter_size):
                loss, outputs = self._forward_train(self.iter * p.iter_size + k, backward=True)
                loss_sum = loss if loss_sum is None else loss_sum + loss
            grads = self._grads()
            # One all-reduce carries the gradients and the statistics every rank must agree on:
            # the loss, whether anyone asked to stop or snapshot, and the displayed outputs.
            request = self.action()
            head = [loss_sum.reshape(1) / p.iter_size,
                    torch.tensor([request == STOP, request == SNAPSHOT], dtype=loss_sum.dtype, device=loss_sum.device)]
            if display:
                head.append(torch.cat([v.detach().reshape(-1).to(loss_sum.dtype) for v in outputs.values()]))
            stats = torch.cat(head)
            self._average(grads + [stats])
            norm = self._global_norm(grads, stats.device)
            summary = torch.cat([stats[:3], norm.reshape(1).to(stats.dtype)]).tolist()
            loss, stop_req, snap_req, grad_norm = summary
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                self._diverged(loss, grad_norm)
            self._update_smoothed_loss(loss, start_iter)
            if display:
                now = time.perf_counter()
                lapse = now - timer
                per_s = (self.iter - last_iter) / (lapse if lapse else 1)
                self.log.info(f"Iteration {self.iter} ({fmt(per_s)} iter/s, {fmt(lapse)}s/{p.display} iters), "
                              f"loss = {fmt(self.smoothed_loss)}")
                timer, last_iter = now, self.iter
                self._log_outputs("Train", self.net, outputs, stats[3:].tolist())
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

    def _window(self, index, total, even=True):
        from .parallel import sample_slice
        start, stop = sample_slice(total, self.rank, self.world_size, even=even)
        return SampleWindow(self.seed, index, start, stop, total)

    def _global_batch(self, net):
        # The data layers' declared batch is the global batch; net.blob_shapes follows the last
        # forward pass, which in a parallel job holds only this process's slice.
        total = self._declared_batch(net)
        if total is not None:
            return total
        raise CaffeError(f"{net.source}: the net has no data layer or input to train on")

    def _inputs(self, net, feed, index, window):
        """The inputs of forward pass `index` for this process's slice: from `feed`, else from the
        net's data layers (layer.batch(index, start, stop))."""
        if feed is not None:
            return dict(feed(index, window.start, window.stop))
        inputs = {}
        for layer in net.data_layers:
            tops = list(layer.param.top)
            if not hasattr(layer, "batch"):
                raise CaffeError(f"{net.source}: layer '{layer.name}' ({layer.type}) has no data source; the "
                                 f"solver cannot train a net whose input '{tops[0]}' is fed by hand (use a data layer)")
            for t, v in zip(tops, layer.batch(index, window.start, window.stop)):
                inputs[t] = v
        return inputs

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

    # The update itself is vgg_caffe.sgd; these stay for the loop above and bench/bench_solver.py.

    def _grads(self):
        return self.sgd.grads()

    def _average(self, tensors):
        if self.allreduce is not None and self.world_size > 1:
            self.allreduce(tensors)
        return tensors

    @staticmethod
    def _global_norm(grads, device):
        return SGDUpdate.global_norm(grads, device)

    def _apply_update(self, rate, grads, grad_norm):
        """Caffe's SGDSolver::ApplyUpdate on the summed diffs (vgg_caffe.sgd)."""
        self.sgd.apply(rate, grads, grad_norm, self.log)

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

    def _log_outputs(self, kind, net, outputs, values):
        """'    Train net output #k: NAME = V (* W = W*V loss)', one line per output element."""
        k, pos = 0, 0
        for name, blob in outputs.items():
            weight = net.loss_weights.get(name, 0.0)
            for _ in range(blob.numel()):
                v = values[pos]
                pos += 1
                extra = f" (* {fmt(weight)} = {fmt(weight * v)} loss)" if weight else ""
                self.log.info(f"    {kind} net output #{k}: {name} = {fmt(v)}{extra}")
                k += 1

    def _diverged(self, loss, grad_norm):
        what = "loss" if not math.isfinite(loss) else "gradient"
        value = loss if not math.isfinite(loss) else grad_norm
        self.log.error(f"Iteration {self.iter}: the {what} is {value}; stopping before the update")
        written = self.snapshot()
        where = f"; the weights before this update are in {written[0]}" if written else ""
        raise TrainingDiverged(f"{self.source}: training diverged at iteration {self.iter}: the {what} is "
                               f"{value} (try a lower base_lr or clip_gradients){where}")

    # -- testing --------------------------------------------------------------------------------

    def test_all(self):
        results = []
        for i in range(len(self.test_nets)):
            if self.requested_early_exit:
                break
            results.append(self.test(i))
        if self.schedule.watches_tests and results and results[0] is not None:
            self._plateau(results[0])
        return results

    def test(self, i):
        """Caffe's Solver::Test: mean of every output element over test_iter batches; returns
        {output name: mean} (the first element of each output)."""
        p, net = self.param, self.test_nets[i]
        self.log.info(f"Iteration {self.iter}, Testing net (#{i})")
        feed = self.test_feeds[i] if i < len(self.test_feeds) else None
        total, loss_total, names = None, None, None
        with torch.no_grad():
            for k in range(p.test_iter[i]):
                # In a parallel job requests wait for the next iteration, where all ranks agree.
                request = self.action() if self.world_size == 1 else NONE
                if request == SNAPSHOT:
                    self.snapshot()
                elif request == STOP:
                    self.requested_early_exit = True
                if self.requested_early_exit:
                    self.log.info("Test interrupted.")
                    return None
                window = self._window(k, self._global_batch(net), even=False)
                net.set_sample_window(window)
                net.iteration = k
                outputs = net(**self._inputs(net, feed, k, window))
                # Outputs are means over this process's rows; a test batch may split unevenly
                # (50 over 4 workers), so weigh them by the rows they cover before averaging.
                share = (window.stop - window.start) * self.world_size / window.total
                values = torch.cat([v.reshape(-1).float() for v in outputs.values()]) if outputs else torch.zeros(0)
                values = values * share if share != 1 else values
                names = [(n, v.numel()) for n, v in outputs.items()]
                total = values if total is None else total + values
                if p.test_compute_loss and net.loss_weights:
                    loss = net.loss.reshape(1).float() * share
                    loss_total = loss if loss_total is None else loss_total + loss
                net.blobs = {}
        if total is None:
            return {}
        packed = [total / p.test_iter[i]]
        if loss_total is not None:
            packed.append(loss_total / p.test_iter[i])
        self._average(packed)
        means = packed[0].tolist()
        if loss_total is not None:
            self.log.info(f"Test loss: {fmt(packed[1].item())}")
        result, k, pos = OrderedDict(), 0, 0
        for name, count in names:
            weight = net.loss_weights.get(name, 0.0)
            for j in range(count):
                v = means[pos]
                pos += 1
                extra = f" (* {fmt(weight)} = {fmt(weight * v)} loss)" if weight else ""
                self.log.info(f"    Test net output #{k}: {name} = {fmt(v)}{extra}")
                k += 1
                if j == 0:
                    result[name] = v
        return result

    def _plateau(self, result):
        metric = self.param.plateau_metric
        if metric not in result:
            raise CaffeError(f"{self.source}: lr_policy plateau watches test output '{metric}' "
                             f"(plateau_metric) but test net #0 outputs {', '.join(result) or 'nothing'}")
        before = self.schedule.current_step
        if self.schedule.observe(result[metric]):
            self.log.info(f"Plateau: test {metric} has not improved for {self.param.plateau_patience} test(s); "
                          f"lowering the learning rate to {fmt(self.schedule.rate(self.iter))} "
                          f"(drop {before + 1} of at most {self.param.plateau_max_drops})")

    # -- snapshots (vgg_caffe.snapshot) --------------------------------------------------------

    def snapshot_filename(self, extension):
        return snapshots.snapshot_filename(self.snapshot_prefix, self.iter, extension)

    def snapshot(self):
        """Caffe's Solver::Snapshot (rank 0 only): weights, then the solver state. Returns the paths."""
        if self.rank != 0:
            return None
        return snapshots.write(self.param, self.snapshot_prefix, self.iter, self.net, self.schedule,
                               self.history, self.log)

    def restore(self, path):
        """Caffe's Solver::Restore: iteration, weights (learned_net), lr policy position, history."""
        self.iter = snapshots.restore(path, self.net, self.schedule, self.history, self.learnable)
        self.log.info("SGDSolver: restoring history")
