"""The caffe module itself: install() and the names it registers, the module-level functions
(set_random_seed, layer_type_list, modes, NCCL, Timer) and the lazily loaded solvers."""
import importlib
import logging
import sys

import numpy as np
import pytest

from vgg_caffe.errors import CaffeError


@pytest.fixture
def clean_modules(monkeypatch):
    for name in [n for n in sys.modules if n == "caffe" or n.startswith("caffe.")]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [n for n in sys.modules if n == "caffe" or n.startswith("caffe.")]:
        del sys.modules[name]


def test_install_registers_the_package_and_its_modules(caffe, clean_modules):
    assert caffe.install() is caffe
    import caffe as alias
    from caffe import layers as L
    from caffe import params as P
    from caffe.proto import caffe_pb2

    assert alias is caffe and L is caffe.layers and P is caffe.params
    assert caffe_pb2 is importlib.import_module("vgg_caffe.proto.caffe_pb2")
    for name in ("io", "net_spec", "draw", "coord_map", "classifier", "detector", "proto"):
        assert importlib.import_module(f"caffe.{name}") is importlib.import_module(f"vgg_caffe.pycaffe.{name}")
    assert importlib.import_module("caffe.proto.caffe_pb2").NetParameter is caffe_pb2.NetParameter
    assert alias.Net is caffe.Net and alias.SGDSolver.solver_type == "SGD"


def test_set_random_seed_makes_fillers_repeatable(caffe, small_path):
    caffe.set_random_seed(5)
    a = caffe.Net(str(small_path), caffe.TEST).params["conv1"][0].data.copy()
    caffe.set_random_seed(5)
    b = caffe.Net(str(small_path), caffe.TEST).params["conv1"][0].data.copy()
    caffe.set_random_seed(6)
    c = caffe.Net(str(small_path), caffe.TEST).params["conv1"][0].data.copy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_module_functions(caffe, caplog):
    types = caffe.layer_type_list()
    assert {"Convolution", "Python", "Input", "SoftmaxWithLoss"} <= set(types) and types == sorted(types)
    assert caffe.has_nccl() is False
    with caplog.at_level(logging.WARNING, logger="caffe"):
        caffe.set_mode_gpu()
    assert "run on the CPU" in caplog.text
    caffe.set_mode_cpu()
    caffe.set_device(0)
    with pytest.raises(CaffeError, match="NCCL multi-GPU training is not available"):
        caffe.NCCL(None, "uid")
    t = caffe.Timer()
    t.start()
    t.stop()
    assert t.ms >= 0
    with pytest.raises(AttributeError, match="has no attribute 'Nonsense'"):
        caffe.Nonsense
