"""caffe.SGDSolver and friends: pycaffe's solvers over the project's solver (vgg_caffe.train).

    solver = caffe.SGDSolver("solver.prototxt")      # or caffe.get_solver(path): type from the file
    solver.net.blobs["data"].data[...] = X           # Input layers keep what you write
    solver.step(10)
    solver.net.params["conv1"][0].diff               # the last update applied, as in Caffe

As _caffe.cpp: SGDSolver, NesterovSolver, AdaGradSolver, RMSPropSolver, AdaDeltaSolver and
AdamSolver take a solver prototxt and use their own update rule whatever its `type` says;
get_solver reads the type from the file. Attributes net and test_nets (pycaffe Nets), iter,
param; methods step(n), solve(resume_file=None), restore(state), snapshot(),
add_callback(on_start, on_gradients_ready), apply_update(), share_weights(net).
The loop, lr policies, tests, display and snapshots are vgg_caffe.train's Solver. Its train net
runs through the pycaffe Net (layer by layer over the blobs), as Caffe's does: each iteration
clears the parameter diffs, runs forward and backward iter_size times (Input layers forward
whatever their blobs hold, other data layers their next batch), calls the callbacks, applies the
update, and leaves each diff holding the update just applied (Caffe's Net::Update subtracts the
diff). Test passes run the fx graph; a test net's Input layers read its pycaffe blobs.
"""
import os
from collections import OrderedDict

import torch

from ..errors import CaffeError
from ..proto import read_solver
from .net import Net
from .pylayer import PyCaffeDataLayer

try:
    from ..train import Solver as _TrainSolver
except ImportError:   # the training package before its __init__ exports the class
    from ..train.solver import Solver as _TrainSolver


class _Engine(_TrainSolver):
    """The project's solver with the train net run by a pycaffe Net and Caffe's callbacks."""

    def attach(self):
        self.pynet = Net.wrap(self.net)
        self.pytest_nets = [Net.wrap(n) for n in self.test_nets]
        self.callbacks = []
        self._stepping = False
        self.test_feeds = [self._feed(p) for p in self.pytest_nets]

    @staticmethod
    def _feed(pynet):
        def feed(index, start, stop):
            return {n: pynet.blobs[n].data_tensor[start:stop] for n in pynet.inputs}
        return feed

    def step(self, iters):
        self._stepping = True
        try:
            super().step(iters)
        finally:
            self._stepping = False

    def _forward_train(self, index, backward):
        net, py = self.net, self.pynet
        window = self._window(index, self._global_batch(net))
        net.set_sample_window(window)
        net.iteration = index
        if backward and index % self.param.iter_size == 0:
            if self._stepping:
                for on_start, _ in self.callbacks:
                    on_start()
            py.clear_param_diffs()   # Caffe's Step: ClearParamDiffs, then forward/backward
        data = {}
        for layer in net.data_layers:
            if isinstance(layer, PyCaffeDataLayer) or not hasattr(layer, "batch"):
                continue   # Python data layers run on the blobs; Input blobs keep their contents
            data.update(zip(layer.param.top, layer.batch(index, window.start, window.stop)))
        last = len(py._layer_names) - 1
        py._runner.forward(0, last, data=data)
        if not py._plan.loss_weights:
            raise CaffeError(f"{net.source}: the train net has no loss (no layer with a loss_weight)")
        loss = sum(w * py.blobs[b].data_tensor.double().sum() for b, w in py._plan.loss_weights.items())
        if backward:
            py._runner.backward(last, 0)
        outputs = OrderedDict((n, py.blobs[n].data_tensor.clone()) for n in py.outputs)
        return loss.float().detach(), outputs

    def _apply_update(self, rate, grads, grad_norm):
        if self._stepping:
            for _, on_gradients_ready in self.callbacks:
                on_gradients_ready()
        params = list(self.params)
        before = [p.detach().clone() for p in params]
        kept = [p.grad for p in params]
        super()._apply_update(rate, grads, grad_norm)
        with torch.no_grad():
            for p, old, g in zip(params, before, kept):
                g = torch.zeros_like(p) if g is None else g
                torch.sub(old, p.detach(), out=g)   # the diff now holds the update, as Caffe's
                p.grad = g


class Solver:
    """A pycaffe solver. Solver(filename) uses the file's type; the subclasses force theirs."""

    solver_type = None

    def __init__(self, filename):
        from . import _state

        path = os.fspath(filename)
        if not os.path.isfile(path):
            raise CaffeError(f"Could not open file {path}")
        param = read_solver(path)
        if self.solver_type is not None:
            param.type = self.solver_type
        seed = _state.get("seed") if param.random_seed < 0 else None
        self._engine = _Engine(param, source=path, seed=seed)
        self._engine.attach()

    @property
    def net(self):
        return self._engine.pynet

    @property
    def test_nets(self):
        return list(self._engine.pytest_nets)

    @property
    def iter(self):
        return self._engine.iter

    @property
    def param(self):
        return self._engine.param

    @property
    def type(self):
        return self._engine.type

    def step(self, iters):
        self._engine.step(int(iters))

    def solve(self, resume_file=None):
        self._engine.solve(resume_file)

    def restore(self, state_file):
        self._engine.restore(os.fspath(state_file))

    def snapshot(self):
        self._engine.snapshot()

    def add_callback(self, on_start, on_gradients_ready=None):
        """Call on_start() at the start of every iteration and on_gradients_ready() before every
        update; an object with those two methods (Caffe's Solver::Callback) is taken too."""
        if on_gradients_ready is None and hasattr(on_start, "on_gradients_ready"):
            on_start, on_gradients_ready = on_start.on_start, on_start.on_gradients_ready
        if not (callable(on_start) and callable(on_gradients_ready)):
            raise CaffeError("add_callback(on_start, on_gradients_ready) takes two callables")
        self._engine.callbacks.append((on_start, on_gradients_ready))

    def apply_update(self):
        """Caffe's ApplyUpdate: one update from the current diffs at the current iteration's rate
        (the iteration count is not advanced; step() does that)."""
        e = self._engine
        grads = e._grads()
        e._apply_update(e.schedule.rate(e.iter), grads, e._global_norm(grads, e.device))

    def share_weights(self, net):
        """net shares this solver's train-net blobs by layer name (ShareTrainedLayersWith)."""
        net.share_with(self.net)


class SGDSolver(Solver):
    solver_type = "SGD"


class NesterovSolver(Solver):
    solver_type = "Nesterov"


class AdaGradSolver(Solver):
    solver_type = "AdaGrad"


class RMSPropSolver(Solver):
    solver_type = "RMSProp"


class AdaDeltaSolver(Solver):
    solver_type = "AdaDelta"


class AdamSolver(Solver):
    solver_type = "Adam"


def get_solver(filename):
    """The solver the file's `type` (or legacy solver_type) names, as an instance of that type's
    class (Boost.Python hands back the most-derived class: an SGD file gives a caffe.SGDSolver)."""
    solver = Solver(filename)
    for cls in Solver.__subclasses__():
        if cls.solver_type == solver.type:
            solver.__class__ = cls     # the subclasses differ only in the type their __init__ forces
            break
    return solver
