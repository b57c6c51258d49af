"""vgg-caffe: the VGG paper's nets, training and test protocols with Caffe's exact semantics, on PyTorch.

    from vgg_caffe import Net, TRAIN, TEST
    net = Net("deploy.prototxt", TEST, weights="VGG_ILSVRC_16_layers.caffemodel")
    prob = net(data=batch)["prob"]
"""
import importlib
import importlib.abc
import importlib.util
import sys

from .errors import CaffeError
from .net import TEST, TRAIN, Net

# Modules that moved into subpackages; the old import paths keep working (with a warning naming
# the new one), so scripts written against earlier releases still run.
_MOVED = {
    "weights": "vgg_caffe.io", "wire": "vgg_caffe.io.wire", "hdf5_weights": "vgg_caffe.io.hdf5",
    "solverstate": "vgg_caffe.io.solverstate", "weights_convert": "vgg_caffe.io.convert",
    "solver": "vgg_caffe.train.solver", "sgd": "vgg_caffe.train.updates", "lr_policy": "vgg_caffe.train.lr_policy",
    "snapshot": "vgg_caffe.train.snapshot", "training_log": "vgg_caffe.train.log",
    "parallel": "vgg_caffe.train.parallel", "dense": "vgg_caffe.eval.dense", "configs": "vgg_caffe.vgg.configs",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves vgg_caffe.<old name> as the module at its new home."""

    def find_spec(self, fullname, path=None, target=None):
        head, _, leaf = fullname.rpartition(".")
        if head == __name__ and leaf in _MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        import warnings

        new = _MOVED[spec.name.rpartition(".")[2]]
        warnings.warn(f"{spec.name} moved to {new}; import it from there", DeprecationWarning, stacklevel=3)
        module = importlib.import_module(new)
        module.__dict__.setdefault("_vgg_caffe_spec", module.__spec__)
        return module

    def exec_module(self, module):
        # importlib stamped the alias's spec on the real module: give it back its own.
        module.__spec__ = module.__dict__["_vgg_caffe_spec"]


sys.meta_path.append(_MovedModules())

__all__ = ["Net", "TRAIN", "TEST", "CaffeError"]
__version__ = "0.1.0"
