"""LSTMUnit against Caffe's per-step formulas written out in numpy, its hand-written backward
(including the f * (1 - f) gradient with cont folded into f), and float64 gradcheck."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError

LAYER = 'name: "unit" type: "LSTMUnit" bottom: "c_prev" bottom: "gates" bottom: "cont" top: "c" top: "h"'


def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def forward_ref(c_prev, x, cont):
    """Caffe's LSTMUnit forward, one stream and one cell at a time."""
    _, n, hdim = c_prev.shape
    c, h = np.zeros_like(c_prev), np.zeros_like(c_prev)
    for s in range(n):
        for d in range(hdim):
            i = sig(x[0, s, d])
            f = 0.0 if cont[0, s] == 0 else cont[0, s] * sig(x[0, s, hdim + d])
            o = sig(x[0, s, 2 * hdim + d])
            g = np.tanh(x[0, s, 3 * hdim + d])
            c[0, s, d] = f * c_prev[0, s, d] + i * g
            h[0, s, d] = o * np.tanh(c[0, s, d])
    return c, h


def backward_ref(c_prev, x, cont, dc, dh):
    """Caffe's LSTMUnit backward (lstm_unit_layer.cpp): (dc_prev, dx)."""
    _, n, hdim = c_prev.shape
    dc_prev, dx = np.zeros_like(c_prev), np.zeros_like(x)
    c, _ = forward_ref(c_prev, x, cont)
    for s in range(n):
        for d in range(hdim):
            i = sig(x[0, s, d])
            f = 0.0 if cont[0, s] == 0 else cont[0, s] * sig(x[0, s, hdim + d])
            o = sig(x[0, s, 2 * hdim + d])
            g = np.tanh(x[0, s, 3 * hdim + d])
            tc = np.tanh(c[0, s, d])
            c_term = dc[0, s, d] + dh[0, s, d] * o * (1 - tc * tc)
            dc_prev[0, s, d] = c_term * f
            dx[0, s, d] = c_term * g * i * (1 - i)
            dx[0, s, hdim + d] = c_term * c_prev[0, s, d] * f * (1 - f)
            dx[0, s, 2 * hdim + d] = dh[0, s, d] * tc * o * (1 - o)
            dx[0, s, 3 * hdim + d] = c_term * i * (1 - g * g)
    return dc_prev, dx


def _inputs(rng, n=4, hdim=3):
    c_prev = rng.standard_normal((1, n, hdim))
    x = 2 * rng.standard_normal((1, n, 4 * hdim))
    return c_prev, x


def test_forward_gate_order_and_cont(make_layer):
    rng = np.random.default_rng(0)
    c_prev, x = _inputs(rng)
    cont = np.array([[1.0, 0.0, 0.5, 1.0]])  # 0 drops c_prev; Caffe multiplies, so 0.5 halves f
    layer = make_layer(LAYER, [c_prev.shape, x.shape, cont.shape])
    assert layer.top_shapes == [(1, 4, 3), (1, 4, 3)] and layer.blob_shapes() == []
    c, h = layer(*(torch.from_numpy(a) for a in (c_prev, x, cont)))
    want_c, want_h = forward_ref(c_prev, x, cont)
    np.testing.assert_allclose(c.numpy(), want_c, atol=1e-12)
    np.testing.assert_allclose(h.numpy(), want_h, atol=1e-12)
    # The stream with cont 0 does not see c_prev at all.
    c_prev2 = c_prev.copy()
    c_prev2[0, 1] += 100.0
    c2, _ = layer(*(torch.from_numpy(a) for a in (c_prev2, x, cont)))
    np.testing.assert_array_equal(c2.numpy()[0, 1], c.numpy()[0, 1])


def test_backward_is_caffes_including_non_binary_cont(make_layer):
    rng = np.random.default_rng(1)
    c_prev, x = _inputs(rng)
    cont = np.array([[1.0, 0.0, 0.5, 2.0]])
    dc, dh = rng.standard_normal(c_prev.shape), rng.standard_normal(c_prev.shape)
    layer = make_layer(LAYER, [c_prev.shape, x.shape, cont.shape])
    tc, tx = torch.tensor(c_prev, requires_grad=True), torch.tensor(x, requires_grad=True)
    tcont = torch.tensor(cont, requires_grad=True)
    c, h = layer(tc, tx, tcont)
    torch.autograd.backward([c, h], [torch.from_numpy(dc), torch.from_numpy(dh)])
    want_dc_prev, want_dx = backward_ref(c_prev, x, cont, dc, dh)
    np.testing.assert_allclose(tc.grad.numpy(), want_dc_prev, atol=1e-12)
    np.testing.assert_allclose(tx.grad.numpy(), want_dx, atol=1e-12)
    assert tcont.grad is None  # Caffe cannot back-propagate into cont


def test_lstm_unit_gradcheck(make_layer):
    rng = np.random.default_rng(2)
    c_prev, x = _inputs(rng, n=3, hdim=2)
    cont = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    layer = make_layer(LAYER, [c_prev.shape, x.shape, tuple(cont.shape)])
    tc, tx = torch.tensor(c_prev, requires_grad=True), torch.tensor(x, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: tuple(layer(a, b, cont)), (tc, tx))


def test_lstm_unit_scripts(make_layer):
    layer = make_layer(LAYER, [(1, 2, 3), (1, 2, 12), (1, 2)])
    args = (torch.randn(1, 2, 3), torch.randn(1, 2, 12), torch.tensor([[1.0, 0.0]]))
    for a, b in zip(torch.jit.script(layer)(*args), layer(*args)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("shapes,message", [
    ([(1, 2, 3), (1, 2, 10), (1, 2)], r"'gates'.*last axis must be 4 \* 3 = 12"),
    ([(1, 2, 3), (1, 3, 12), (1, 2)], r"'gates'.*3 streams, but 'c_prev'.*has 2"),
    ([(1, 2, 3), (1, 2, 12), (1, 3)], r"'cont'.*3 streams"),
    ([(2, 2, 3), (1, 2, 12), (1, 2)], r"'c_prev' has shape \(2, 2, 3\).*first axis of 1"),
    ([(1, 2, 3), (1, 2, 12), (1, 2, 1)], r"'cont' has shape \(1, 2, 1\); it must have 2 axes"),
])
def test_lstm_unit_shape_errors(make_layer, shapes, message):
    with pytest.raises(CaffeError, match=r"layer 'unit' \(LSTMUnit\): bottom " + message):
        make_layer(LAYER, shapes)
