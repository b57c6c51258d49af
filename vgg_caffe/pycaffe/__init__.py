"""pycaffe's Python API (BVLC Caffe's `import caffe`) over the vgg_caffe runtime.

    from vgg_caffe import pycaffe as caffe      # or: vgg_caffe.pycaffe.install(); import caffe
    net = caffe.Net("deploy.prototxt", caffe.TEST, weights="w.caffemodel")
    net.blobs["data"].data[...] = caffe.io.Transformer(...).preprocess("data", image)
    prob = net.forward()["prob"]

    python -m vgg_caffe.pycaffe SCRIPT.py [ARGS]  # run an unmodified pycaffe script

What _caffe.cpp and python/caffe/*.py offer: Net and Blob (numpy views sharing memory with the
torch tensors), Layer for Python layers, the solvers, io, Classifier, Detector, net_spec
(NetSpec, layers as L, params as P, to_proto), draw, coord_map and proto.caffe_pb2 (our schema,
vgg_caffe.proto.caffe_pb2). Modules: blob, net (+ engine, batching), pylayer, solver, io,
classifier, detector, net_spec, draw, coord_map, proto, runner (python -m). install() registers
this package as `caffe` in sys.modules, with its submodules as caffe.io, caffe.proto, ...
Computation runs on the CPU: numpy views need host memory (set_mode_gpu is accepted and noted).
"""
import importlib
import logging
import sys
import time

import torch

from ..errors import CaffeError
from . import coord_map, draw, io, proto  # noqa: F401  (caffe.coord_map, caffe.draw, ...)
from .blob import Blob, BlobShapeError, BlobVec
from .classifier import Classifier
from .detector import Detector
from .net import TEST, TRAIN, ArgumentError, Net
from .net_spec import NetSpec, layers, params, to_proto
from .pylayer import Layer

__version__ = "1.0.0"  # the Caffe version whose Python API this reproduces

_logger = logging.getLogger("caffe")
_state = {"mode": "CPU", "device": 0, "solver_count": 1, "solver_rank": 0, "multiprocess": False}

SUBMODULES = ("io", "proto", "net_spec", "draw", "coord_map", "classifier", "detector", "blob", "pylayer")
_SOLVERS = ("Solver", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver",
            "AdamSolver", "get_solver")


def __getattr__(name):
    # The solvers pull in the training package (vgg_caffe.train); load it on first use only.
    if name in _SOLVERS:
        from . import solver

        return getattr(solver, name)
    raise AttributeError(f"module 'caffe' ({__name__}) has no attribute '{name}'")


def set_mode_cpu():
    _state["mode"] = "CPU"


def set_mode_gpu():
    """Accepted for compatibility; pycaffe nets still compute on the CPU (their blobs are numpy
    views). Train on a GPU with vgg_caffe.train.Solver / `python -m vgg_caffe.solve --device cuda`."""
    if _state["mode"] != "GPU":
        _logger.warning("caffe.set_mode_gpu(): pycaffe nets run on the CPU here (numpy views of the blobs need "
                    "host memory); use vgg_caffe's own solver for GPU training")
    _state["mode"] = "GPU"


def set_device(device_id):
    _state["device"] = int(device_id)


def set_random_seed(seed):
    """Caffe::set_random_seed: the generator fillers, dropout and solvers draw from."""
    torch.manual_seed(int(seed))
    _state["seed"] = int(seed)


def layer_type_list():
    from ..layers import known_types

    return known_types()


def has_nccl():
    return False


def init_log(level=0, use_glog=False):
    logging.basicConfig(level=logging.INFO if level <= 0 else logging.WARNING)


def log(message):
    """caffe.log: a message in Caffe's log (LOG(INFO))."""
    _logger.info(message)


# Caffe's multi-GPU bookkeeping (pycaffe's train.py sets these); one process here.
def solver_count():
    return _state["solver_count"]


def set_solver_count(count):
    _state["solver_count"] = int(count)


def solver_rank():
    return _state["solver_rank"]


def set_solver_rank(rank):
    _state["solver_rank"] = int(rank)


def set_multiprocess(value):
    _state["multiprocess"] = bool(value)


class NCCL:
    """pycaffe's NCCL multi-GPU helper is not available: train data-parallel with vgg_caffe's solver
    (python -m vgg_caffe.solve --gpus ...), whose workers split each batch and average gradients."""

    def __init__(self, *args, **kwargs):
        raise CaffeError("caffe.NCCL: NCCL multi-GPU training is not available through the pycaffe API here; "
                         "use vgg_caffe's data-parallel solver (python -m vgg_caffe.solve)")


class Timer:
    """caffe.Timer: start(), stop(), ms (milliseconds between them)."""

    def __init__(self):
        self._start, self._ms = None, 0.0

    def start(self):
        self._start = time.perf_counter()

    def stop(self):
        if self._start is not None:
            self._ms = (time.perf_counter() - self._start) * 1000.0
            self._start = None

    @property
    def ms(self):
        return self._ms


def install(name="caffe"):
    """Register this package as `caffe` (and caffe.io, caffe.proto, caffe.proto.caffe_pb2,
    caffe.net_spec, ...) in sys.modules, so that `import caffe` in unmodified scripts and Python
    layer modules gets it. Returns the package."""
    package = sys.modules[__name__]
    sys.modules[name] = package
    for sub in SUBMODULES:
        sys.modules[f"{name}.{sub}"] = importlib.import_module(f"{__name__}.{sub}")
    sys.modules[f"{name}.proto.caffe_pb2"] = proto.caffe_pb2
    sys.modules[f"{name}.pycaffe"] = importlib.import_module(f"{__name__}.net")
    sys.modules[f"{name}._caffe"] = package
    return package

__all__ = ["Net", "Blob", "BlobVec", "Layer", "TRAIN", "TEST", "Classifier", "Detector", "NetSpec", "layers",
           "params", "to_proto", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver",
           "AdaDeltaSolver", "AdamSolver", "Solver", "get_solver", "set_mode_cpu", "set_mode_gpu",
           "set_device", "set_random_seed", "layer_type_list", "has_nccl", "install", "io", "proto",
           "CaffeError", "ArgumentError", "BlobShapeError"]
