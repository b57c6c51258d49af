"""LSTM against Caffe's unrolled net written out as a numpy loop over time steps: the cont
resets, the gate order i, f, o, g, the static input, exposed and carried states; Caffe's blob
order and shapes; float64 gradcheck with respect to x, x_static and every blob."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError

H = 3


def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def lstm_ref(x, cont, blobs, x_static=None, h0=None, c0=None):
    """Caffe's LSTM: x (T, N, ...), cont (T, N); blobs W_xc, b_c, [W_xc_static], W_hc."""
    t_steps, n = cont.shape
    w_xc, b_c = blobs[0], blobs[1]
    w_hc = blobs[-1]
    hdim = w_hc.shape[1]
    h = np.zeros((n, hdim)) if h0 is None else h0[0].copy()
    c = np.zeros((n, hdim)) if c0 is None else c0[0].copy()
    out = np.zeros((t_steps, n, hdim))
    for t in range(t_steps):
        for s in range(n):
            gates = w_hc @ (cont[t, s] * h[s]) + w_xc @ x[t, s].ravel() + b_c
            if x_static is not None:
                gates = gates + blobs[2] @ x_static[s].ravel()
            i = sig(gates[:hdim])
            f = 0.0 if cont[t, s] == 0 else cont[t, s] * sig(gates[hdim:2 * hdim])
            o = sig(gates[2 * hdim:3 * hdim])
            g = np.tanh(gates[3 * hdim:])
            c[s] = f * c[s] + i * g
            h[s] = o * np.tanh(c[s])
        out[t] = h
    return out, h[None].copy(), c[None].copy()


def _layer(make_layer, shapes, extra="", tops=1):
    static = len(shapes) == (5 if "expose" in extra else 3)
    names = ["x", "cont"] + (["x_static"] if static else []) + ["h0", "c0"]
    bottoms = "".join(f' bottom: "{n}"' for n in names[:len(shapes)])
    top = "".join(f' top: "{n}"' for n in ["h", "hT", "cT"][:tops])
    layer = make_layer(f'name: "lstm" type: "LSTM"{bottoms}{top} recurrent_param {{ num_output: {H} '
                       f'weight_filler {{ type: "uniform" min: -0.8 max: 0.8 }} '
                       f'bias_filler {{ type: "constant" value: 0.25 }}{extra} }}', shapes)
    layer.fill(torch.Generator().manual_seed(0))
    return layer.double()


def _blobs(layer):
    return [b.detach().numpy() for b in layer.blobs]


def _cont():
    cont = np.ones((4, 2))
    cont[0] = 0          # every stream starts a sequence
    cont[2, 1] = 0       # stream 1 starts a new one at t = 2
    return cont


def test_blob_order_and_shapes(make_layer):
    layer = _layer(make_layer, [(4, 2, 2, 3), (4, 2), (2, 5)])
    assert layer.blob_shapes() == [(4 * H, 6), (4 * H,), (4 * H, 5), (4 * H, H)]
    assert layer.top_shapes == [(4, 2, H)]
    assert np.all(_blobs(layer)[1] == 0.25) and np.abs(_blobs(layer)[0]).max() > 0
    plain = _layer(make_layer, [(4, 2, 6), (4, 2)])
    assert plain.blob_shapes() == [(4 * H, 6), (4 * H,), (4 * H, H)]
    assert plain.multiply_adds() == 4 * 2 * 4 * H * (6 + H)


def test_forward_with_resets_and_static_input(make_layer):
    rng = np.random.default_rng(0)
    x, xs, cont = rng.standard_normal((4, 2, 2, 3)), rng.standard_normal((2, 5)), _cont()
    layer = _layer(make_layer, [x.shape, cont.shape, xs.shape])
    (h,) = layer([torch.from_numpy(x), torch.from_numpy(cont), torch.from_numpy(xs)])
    want, _, _ = lstm_ref(x, cont, _blobs(layer), x_static=xs)
    np.testing.assert_allclose(h.detach().numpy(), want, atol=1e-12)
    # Stream 1 restarted at t = 2: its outputs from there on equal a fresh run of steps 2..3.
    fresh, _, _ = lstm_ref(x[2:, 1:], cont[2:, 1:], _blobs(layer), x_static=xs[1:])
    np.testing.assert_allclose(h.detach().numpy()[2:, 1:], fresh, atol=1e-12)


def test_expose_hidden_takes_h0_c0_and_gives_final_states(make_layer):
    rng = np.random.default_rng(1)
    x, cont = rng.standard_normal((4, 2, 3)), np.ones((4, 2))
    h0, c0 = rng.standard_normal((1, 2, H)), rng.standard_normal((1, 2, H))
    layer = _layer(make_layer, [x.shape, cont.shape, h0.shape, c0.shape], " expose_hidden: true", tops=3)
    assert layer.top_shapes == [(4, 2, H), (1, 2, H), (1, 2, H)]
    th0 = torch.tensor(h0, requires_grad=True)
    h, h_t, c_t = layer([torch.from_numpy(x), torch.from_numpy(cont), th0, torch.from_numpy(c0)])
    want, want_h, want_c = lstm_ref(x, cont, _blobs(layer), h0=h0, c0=c0)
    np.testing.assert_allclose(h.detach().numpy(), want, atol=1e-12)
    np.testing.assert_allclose(h_t.numpy(), want_h, atol=1e-12)
    np.testing.assert_allclose(c_t.numpy(), want_c, atol=1e-12)
    # Caffe shares only the data of h0 and of hT/cT: no gradient into h0, none out of hT, cT.
    assert not h_t.requires_grad and not c_t.requires_grad
    h.sum().backward()
    assert th0.grad is None
    # Exposed states are not carried: the same call gives the same result.
    again = layer([torch.from_numpy(x), torch.from_numpy(cont), th0, torch.from_numpy(c0)])[0]
    torch.testing.assert_close(again, h)


def test_state_carries_across_forwards_and_reset(make_layer):
    rng = np.random.default_rng(2)
    x1, x2 = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 3))
    cont1, cont2 = _cont(), np.ones((4, 2))   # batch 2 continues every stream
    layer = _layer(make_layer, [x1.shape, cont1.shape])
    blobs = _blobs(layer)
    layer([torch.from_numpy(x1), torch.from_numpy(cont1)])
    (h2,) = layer([torch.from_numpy(x2), torch.from_numpy(cont2)])
    _, h_end, c_end = lstm_ref(x1, cont1, blobs)
    want, _, _ = lstm_ref(x2, cont2, blobs, h0=h_end, c0=c_end)
    np.testing.assert_allclose(h2.detach().numpy(), want, atol=1e-12)
    layer.reset()
    (h3,) = layer([torch.from_numpy(x2), torch.from_numpy(cont2)])
    np.testing.assert_allclose(h3.detach().numpy(), lstm_ref(x2, cont2, blobs)[0], atol=1e-12)
    # A batch of another size starts from zeros.
    x4 = rng.standard_normal((4, 3, 3))
    layer.reshape([x4.shape, (4, 3)])
    (h4,) = layer([torch.from_numpy(x4), torch.ones(4, 3, dtype=torch.float64)])
    np.testing.assert_allclose(h4.detach().numpy(), lstm_ref(x4, np.ones((4, 3)), blobs)[0], atol=1e-12)


def test_lstm_gradcheck_x_static_and_every_blob(make_layer):
    layer = _layer(make_layer, [(3, 2, 2), (3, 2), (2, 2)])
    cont = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    xs = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    names = [f"blobs.{i}" for i in range(len(layer.blobs))]

    def run(x, xs, *blobs):
        return torch.func.functional_call(layer, dict(zip(names, blobs)), ([x, cont, xs],))[0]

    assert torch.autograd.gradcheck(run, (x, xs, *layer.blobs))


def test_lstm_scripts(make_layer):
    layer = _layer(make_layer, [(4, 2, 3), (4, 2)])
    args = [torch.randn(4, 2, 3, dtype=torch.float64), torch.from_numpy(_cont())]
    scripted = torch.jit.script(layer)
    torch.testing.assert_close(scripted(args)[0], layer(args)[0])


@pytest.mark.parametrize("shapes,extra,tops,message", [
    ([(4, 2, 3), (4, 2)], "", 1, None),
    ([(4, 2, 3), (4, 3)], "", 1, r"'cont' \(sequence continuation\) has shape \(4, 3\); it must be \(T, N\) = \(4, 2\)"),
    ([(4, 2, 3), (4,)], "", 1, r"'cont'.*has shape \(4,\)"),
    ([(4,), (4, 2)], "", 1, r"'x' has shape \(4,\); it must have at least 2 axes"),
    ([(4, 2, 3), (4, 2), (3, 5)], "", 1, r"'x_static' \(static input\) has shape \(3, 5\); its first axis must be the 2"),
    ([(4, 2, 3), (4, 2)], " expose_hidden: true", 3, r"takes 4 or 5 bottoms \(x, cont, \[x_static\], h0, c0\)"),
    ([(4, 2, 3), (4, 2), (1, 2, H), (1, 2, 2)], " expose_hidden: true", 3, r"'c0' \(c0\) has shape \(1, 2, 2\)"),
    ([(4, 2, 3), (4, 2)], "", 3, r"takes 1 top\(s\) \(h\) with expose_hidden false, has 3"),
])
def test_lstm_bad_shapes_and_counts(make_layer, shapes, extra, tops, message):
    if message is None:
        _layer(make_layer, shapes, extra, tops)
        return
    with pytest.raises(CaffeError, match=r"layer 'lstm' \(LSTM\): .*" + message):
        _layer(make_layer, shapes, extra, tops)


def test_lstm_needs_num_output_and_fixed_time_steps(make_layer):
    with pytest.raises(CaffeError, match=r"layer 'lstm' \(LSTM\): recurrent_param.num_output is required"):
        make_layer('name: "lstm" type: "LSTM" bottom: "x" bottom: "cont"', [(4, 2, 3), (4, 2)])
    layer = _layer(make_layer, [(4, 2, 3), (4, 2)])
    with pytest.raises(CaffeError, match=r"'x' has 5 time steps, but the layer was built for 4"):
        layer.reshape([(5, 2, 3), (5, 2)])
    with pytest.raises(CaffeError, match=r"'x' \(4, 2, 4\) has 4 inputs per step.*take 3"):
        layer.reshape([(4, 2, 4), (4, 2)])


def test_lstm_in_a_net_with_euclidean_loss_trains_and_scripts():
    from vgg_caffe.net import Net
    net = Net('''
    layer { name: "data" type: "Input" top: "x" top: "cont" top: "target"
            input_param { shape { dim: 4 dim: 2 dim: 3 } shape { dim: 4 dim: 2 } shape { dim: 4 dim: 2 dim: 3 } } }
    layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "h"
            recurrent_param { num_output: 3 weight_filler { type: "uniform" min: -0.5 max: 0.5 } } }
    layer { name: "loss" type: "EuclideanLoss" bottom: "h" bottom: "target" top: "loss" }''', "TRAIN").fill(0)
    rng = np.random.default_rng(5)
    x, target, cont = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 3)), _cont()
    feeds = {k: torch.from_numpy(v).float() for k, v in (("x", x), ("cont", cont), ("target", target))}
    loss = net(**feeds)["loss"]
    h, _, _ = lstm_ref(x, cont, [b.detach().double().numpy() for b in net.layers["lstm"].blobs])
    np.testing.assert_allclose(loss.item(), ((h - target) ** 2).sum() / 4 / 2, rtol=1e-5)
    net.backward()
    assert all(b.grad is not None and b.grad.abs().sum() > 0 for b in net.layers["lstm"].blobs)
    scripted = torch.jit.script(net.to_module(["loss"]))
    torch.testing.assert_close(scripted(feeds["x"], feeds["cont"], feeds["target"]), loss)
