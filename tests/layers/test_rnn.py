"""RNN against Caffe's unrolled net written out as a numpy loop over time steps (tanh hidden,
tanh output, cont resets, static input, exposed and carried state); Caffe's blob order and
shapes; float64 gradcheck with respect to x, x_static and every blob."""
import numpy as np
import pytest
import torch

from vgg_caffe.errors import CaffeError

H = 3


def rnn_ref(x, cont, blobs, x_static=None, h0=None):
    """Caffe's RNN: blobs W_xh, b_h, [W_xh_static], W_hh, W_ho, b_o."""
    t_steps, n = cont.shape
    w_xh, b_h = blobs[0], blobs[1]
    w_hh, w_ho, b_o = blobs[-3], blobs[-2], blobs[-1]
    h = np.zeros((n, w_hh.shape[0])) if h0 is None else h0[0].copy()
    out = np.zeros((t_steps, n, w_ho.shape[0]))
    for t in range(t_steps):
        for s in range(n):
            pre = w_hh @ (cont[t, s] * h[s]) + w_xh @ x[t, s].ravel() + b_h
            if x_static is not None:
                pre = pre + blobs[2] @ x_static[s].ravel()
            h[s] = np.tanh(pre)
            out[t, s] = np.tanh(w_ho @ h[s] + b_o)
    return out, h[None].copy()


def _layer(make_layer, shapes, extra="", tops=1):
    static = len(shapes) == (4 if "expose" in extra else 3)
    names = ["x", "cont"] + (["x_static"] if static else []) + ["h0"]
    bottoms = "".join(f' bottom: "{n}"' for n in names[:len(shapes)])
    top = "".join(f' top: "{n}"' for n in ["o", "hT"][:tops])
    layer = make_layer(f'name: "rnn" type: "RNN"{bottoms}{top} recurrent_param {{ num_output: {H} '
                       f'weight_filler {{ type: "gaussian" std: 0.7 }} '
                       f'bias_filler {{ type: "uniform" min: -0.5 max: 0.5 }}{extra} }}', shapes)
    layer.fill(torch.Generator().manual_seed(1))
    return layer.double()


def _blobs(layer):
    return [b.detach().numpy() for b in layer.blobs]


def _cont():
    cont = np.ones((4, 2))
    cont[0] = 0
    cont[2, 0] = 0
    return cont


def test_blob_order_shapes_and_fillers(make_layer):
    layer = _layer(make_layer, [(4, 2, 2, 2), (4, 2), (2, 3, 1)])
    assert layer.blob_shapes() == [(H, 4), (H,), (H, 3), (H, H), (H, H), (H,)]
    assert layer.top_shapes == [(4, 2, H)]
    blobs = _blobs(layer)
    # biases from bias_filler (uniform within +-0.5), weights from weight_filler (std 0.7)
    assert all(np.abs(blobs[i]).max() <= 0.5 for i in (1, 5)) and np.abs(blobs[0]).max() > 0
    assert _layer(make_layer, [(4, 2, 5), (4, 2)]).blob_shapes() == [(H, 5), (H,), (H, H), (H, H), (H,)]


def test_forward_with_resets_and_static_input(make_layer):
    rng = np.random.default_rng(0)
    x, xs, cont = rng.standard_normal((4, 2, 2, 2)), rng.standard_normal((2, 3, 1)), _cont()
    layer = _layer(make_layer, [x.shape, cont.shape, xs.shape])
    (o,) = layer([torch.from_numpy(x), torch.from_numpy(cont), torch.from_numpy(xs)])
    np.testing.assert_allclose(o.detach().numpy(), rnn_ref(x, cont, _blobs(layer), x_static=xs)[0], atol=1e-12)


def test_expose_hidden_and_carried_state(make_layer):
    rng = np.random.default_rng(1)
    x, cont, h0 = rng.standard_normal((4, 2, 3)), np.ones((4, 2)), rng.standard_normal((1, 2, H))
    exposed = _layer(make_layer, [x.shape, cont.shape, h0.shape], " expose_hidden: true", tops=2)
    assert exposed.top_shapes == [(4, 2, H), (1, 2, H)]
    th0 = torch.tensor(h0, requires_grad=True)
    o, h_t = exposed([torch.from_numpy(x), torch.from_numpy(cont), th0])
    want, want_h = rnn_ref(x, cont, _blobs(exposed), h0=h0)
    np.testing.assert_allclose(o.detach().numpy(), want, atol=1e-12)
    np.testing.assert_allclose(h_t.numpy(), want_h, atol=1e-12)
    o.sum().backward()
    assert th0.grad is None and not h_t.requires_grad
    # Without expose_hidden the second forward starts where the first ended.
    carried = _layer(make_layer, [x.shape, cont.shape])
    blobs = _blobs(carried)
    x1 = rng.standard_normal((4, 2, 3))
    carried([torch.from_numpy(x1), torch.from_numpy(_cont())])
    (o2,) = carried([torch.from_numpy(x), torch.from_numpy(cont)])
    _, h_end = rnn_ref(x1, _cont(), blobs)
    np.testing.assert_allclose(o2.detach().numpy(), rnn_ref(x, cont, blobs, h0=h_end)[0], atol=1e-12)
    carried.reset()
    (o3,) = carried([torch.from_numpy(x), torch.from_numpy(cont)])
    np.testing.assert_allclose(o3.detach().numpy(), rnn_ref(x, cont, blobs)[0], atol=1e-12)


def test_rnn_gradcheck_x_static_and_every_blob(make_layer):
    layer = _layer(make_layer, [(3, 2, 2), (3, 2), (2, 2)])
    cont = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    xs = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    names = [f"blobs.{i}" for i in range(len(layer.blobs))]

    def run(x, xs, *blobs):
        return torch.func.functional_call(layer, dict(zip(names, blobs)), ([x, cont, xs],))[0]

    assert torch.autograd.gradcheck(run, (x, xs, *layer.blobs))


def test_rnn_scripts(make_layer):
    layer = _layer(make_layer, [(4, 2, 3), (4, 2)])
    args = [torch.randn(4, 2, 3, dtype=torch.float64), torch.from_numpy(_cont())]
    torch.testing.assert_close(torch.jit.script(layer)(args)[0], layer(args)[0])


@pytest.mark.parametrize("shapes,extra,tops,message", [
    ([(4, 2, 3), (4, 2, 1)], "", 1, r"'cont' \(sequence continuation\) has shape \(4, 2, 1\)"),
    ([(4, 2, 3), (4, 2), (2, 3), (1, 2, H)], "", 1, r"takes 2 or 3 bottoms \(x, cont, \[x_static\]\)"),
    ([(4, 2, 3), (4, 2), (1, 2, 4)], " expose_hidden: true", 2, r"'h0' \(h0\) has shape \(1, 2, 4\); it must be"),
    ([(4, 2, 3), (4, 2), (1, 2, H)], " expose_hidden: true", 1, r"takes 2 top\(s\) \(o, hT\)"),
])
def test_rnn_bad_shapes_and_counts(make_layer, shapes, extra, tops, message):
    with pytest.raises(CaffeError, match=r"layer 'rnn' \(RNN\): .*" + message):
        _layer(make_layer, shapes, extra, tops)


def test_rnn_needs_num_output(make_layer):
    with pytest.raises(CaffeError, match=r"layer 'rnn' \(RNN\): recurrent_param.num_output is required"):
        make_layer('name: "rnn" type: "RNN" recurrent_param { num_output: 0 }', [(4, 2, 3), (4, 2)])
