"""pycaffe's solvers over vgg_caffe.train: steps against Caffe's SGD and Adam updates written out in
float64, the diffs after a step (the update, as Caffe leaves them) and at on_gradients_ready (the
gradient), the solver type rules, test nets fed from their blobs, and snapshots."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycaffe_helpers import write

NET = '''
name: "tiny"
layer { name: "data" type: "Input" top: "data" top: "label" input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
'''
SOLVER = '''
net: "{net}"
type: "{type}"
base_lr: 0.1
{momentum}weight_decay: 0.01
lr_policy: "step"
gamma: 0.5
stepsize: 2
max_iter: 4
display: 0
random_seed: 3
solver_mode: CPU
snapshot_prefix: "{prefix}"
{extra}
'''
X = np.array([[1.0, -2.0, 0.5], [0.3, 0.1, -1.0], [-0.7, 1.5, 2.0], [0.0, -0.4, 0.9]], np.float32)
Y = np.array([0, 1, 1, 0], np.float32)


@pytest.fixture
def solver_file(tmp_path):
    net = write(tmp_path, "train.prototxt", NET)

    def make(type_="SGD", extra="", momentum=0.9):
        text = SOLVER.format(net=net, type=type_, prefix=str(tmp_path / "snap"), extra=extra,
                             momentum=f"momentum: {momentum}\n" if momentum else "")
        return write(tmp_path, f"solver_{type_}.prototxt", text)
    return make


def grads(w, b, x=X, y=Y):
    """loss and (dW, db) in float64 by autograd: softmax loss averaged over the batch."""
    w = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    loss = F.cross_entropy(F.linear(torch.from_numpy(x).double(), w, b), torch.from_numpy(y).long())
    loss.backward()
    return loss.item(), w.grad.numpy(), b.grad.numpy()


def feed(solver):
    solver.net.blobs["data"].data[...] = X
    solver.net.blobs["label"].data[...] = Y


def test_sgd_steps_match_caffe_update_by_hand(caffe, solver_file):
    solver = caffe.SGDSolver(solver_file())
    feed(solver)
    w, b = (p.data.astype(np.float64) for p in solver.net.params["ip"])
    hw, hb = np.zeros_like(w), np.zeros_like(b)
    for it in range(3):
        loss, gw, gb = grads(w, b)
        rate = 0.1 * 0.5 ** (it // 2)
        gw = gw + 0.01 * w                       # weight decay (decay_mult 1); the bias has decay_mult 0
        hw, hb = 0.9 * hw + rate * gw, 0.9 * hb + rate * 2 * gb   # lr_mult 2 for the bias
        w, b = w - hw, b - hb
    solver.step(3)
    assert solver.iter == 3
    np.testing.assert_allclose(solver.net.params["ip"][0].data, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(solver.net.params["ip"][1].data, b, rtol=1e-5, atol=1e-6)
    # Caffe leaves the applied update in the diffs, and the last forward's loss in the blob
    np.testing.assert_allclose(solver.net.params["ip"][0].diff, hw, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(solver.net.params["ip"][1].diff, hb, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(solver.net.blobs["loss"].data, loss, rtol=1e-5)


def test_callbacks_see_the_gradient_before_the_update(caffe, solver_file):
    solver = caffe.get_solver(solver_file())
    feed(solver)
    w0, b0 = (p.data.astype(np.float64).copy() for p in solver.net.params["ip"])
    events, seen = [], []
    solver.add_callback(lambda: events.append("start"),
                        lambda: (events.append("ready"), seen.append(solver.net.params["ip"][0].diff.copy())))
    solver.step(2)
    assert events == ["start", "ready", "start", "ready"]
    _, gw, _ = grads(w0, b0)
    np.testing.assert_allclose(seen[0], gw, rtol=1e-4, atol=1e-6)   # the raw gradient, before decay


def test_apply_update_by_hand(caffe, solver_file):
    solver = caffe.SGDSolver(solver_file())
    feed(solver)
    w0 = solver.net.params["ip"][0].data.astype(np.float64).copy()
    solver.net.forward()
    solver.net.backward()
    g = solver.net.params["ip"][0].diff.astype(np.float64).copy()
    solver.apply_update()
    assert solver.iter == 0
    np.testing.assert_allclose(solver.net.params["ip"][0].data, w0 - 0.1 * (g + 0.01 * w0), rtol=1e-5, atol=1e-6)


def test_solver_types(caffe, solver_file):
    assert caffe.get_solver(solver_file("Nesterov")).type == "Nesterov"
    assert type(caffe.get_solver(solver_file("Nesterov"))) is caffe.NesterovSolver   # the most-derived class
    assert type(caffe.get_solver(solver_file())) is caffe.SGDSolver
    assert caffe.SGDSolver(solver_file("Nesterov")).type == "SGD"      # the class decides, as _caffe.cpp
    assert caffe.AdaGradSolver(solver_file(momentum=0)).type == "AdaGrad"   # Caffe: AdaGrad takes no momentum
    assert caffe.RMSPropSolver(solver_file(momentum=0)).type == "RMSProp"
    assert caffe.AdaDeltaSolver(solver_file()).type == "AdaDelta"


def test_adam_first_step_by_hand(caffe, solver_file):
    solver = caffe.AdamSolver(solver_file(extra="momentum2: 0.999\ndelta: 1e-8"))
    feed(solver)
    w, b = (p.data.astype(np.float64).copy() for p in solver.net.params["ip"])
    _, gw, _ = grads(w, b)
    gw = gw + 0.01 * w
    m, v = 0.1 * gw, 0.001 * gw ** 2          # t = 1: (1 - beta1) g, (1 - beta2) g^2
    rate = 0.1 * np.sqrt(1 - 0.999) / (1 - 0.9)
    solver.step(1)
    np.testing.assert_allclose(solver.net.params["ip"][0].data, w - rate * m / (np.sqrt(v) + 1e-8),
                               rtol=1e-4, atol=1e-6)


def test_test_nets_share_weights_and_read_their_blobs(caffe, solver_file, tmp_path):
    path = solver_file(extra=f'test_net: "{tmp_path / "train.prototxt"}"\ntest_iter: 1\ntest_interval: 100\n'
                             'test_initialization: false')
    solver = caffe.SGDSolver(path)
    feed(solver)
    test = solver.test_nets[0]
    assert np.shares_memory(test.params["ip"][0].data, solver.net.params["ip"][0].data)
    solver.step(1)
    x, y = X[::-1].copy(), Y[::-1].copy()
    test.blobs["data"].data[...] = x
    test.blobs["label"].data[...] = y
    result = solver._engine.test(0)
    w, b = (p.data.astype(np.float64) for p in test.params["ip"])
    assert result["loss"] == pytest.approx(grads(w, b, x, y)[0], rel=1e-5)


def test_solve_snapshot_and_restore(caffe, solver_file, tmp_path):
    path = solver_file()
    solver = caffe.SGDSolver(path)
    feed(solver)
    solver.solve()
    assert solver.iter == 4
    assert (tmp_path / "snap_iter_4.caffemodel").exists() and (tmp_path / "snap_iter_4.solverstate").exists()
    again = caffe.SGDSolver(path)
    again.restore(str(tmp_path / "snap_iter_4.solverstate"))
    assert again.iter == 4
    np.testing.assert_array_equal(again.net.params["ip"][0].data, solver.net.params["ip"][0].data)


def test_missing_solver_file(caffe, tmp_path):
    from vgg_caffe.errors import CaffeError

    with pytest.raises(CaffeError, match="Could not open file"):
        caffe.SGDSolver(str(tmp_path / "none.prototxt"))
