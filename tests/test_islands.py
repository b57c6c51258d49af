"""vgg_caffe.islands.FewRowsProduct: under bf16 on a CPU, an InnerProduct with at most 32 rows
computes in float32 in passes that build a graph -- bitwise the float32 net's forward and
gradients, checked against a float32 net with the same weights and against F.linear -- and in
bfloat16 otherwise (more rows, or no autograd), bitwise torch.autocast's F.linear."""
import pytest
import torch
import torch.nn.functional as F

from vgg_caffe.islands import FLOAT32_ROWS
from vgg_caffe.net import Net

K_IN, K_OUT = 24, 7


def net_text(shape, axis=1, transpose=False):
    dims = " ".join(f"dim: {d}" for d in shape)
    return f"""
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param {{ num_output: {K_OUT} axis: {axis} transpose: {str(transpose).lower()}
                              weight_filler {{ type: "gaussian" std: 0.3 }}
                              bias_filler {{ type: "constant" value: 0.1 }} }} }}
"""


def pair(shape, **kw):
    """A bf16 net and a float32 net with the same weights, and an input."""
    text = net_text(shape, **kw)
    bf16, fp32 = Net(text, "TRAIN", seed=3, precision="bf16"), Net(text, "TRAIN", seed=3)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    return bf16, fp32, x


def grads_of(net, x, upstream):
    net.zero_grad(set_to_none=True)
    top = net(data=x)["fc"]
    (top.float() * upstream).sum().backward()
    return top, [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("shape,axis,transpose", [((4, 6, 4), 1, False), ((FLOAT32_ROWS, K_IN), 1, False),
                                                  ((4, 6, 4), 1, True), ((2, 3, K_IN), 2, False)])
def test_few_rows_in_a_training_pass_are_float32(shape, axis, transpose):
    bf16, fp32, x = pair(shape, axis=axis, transpose=transpose)
    rows = torch.tensor(shape[:axis]).prod().item()
    assert rows <= FLOAT32_ROWS
    upstream = torch.randn(*shape[:axis], K_OUT, generator=torch.Generator().manual_seed(2))
    top, grads = grads_of(bf16, x, upstream)
    want_top, want_grads = grads_of(fp32, x, upstream)
    assert top.dtype == torch.float32 and torch.equal(top, want_top)
    assert all(torch.equal(g, w) for g, w in zip(grads, want_grads))
    w, b = bf16.params["fc"]
    flat = x.flatten(axis)
    assert torch.equal(top, flat @ w + b if transpose else F.linear(flat, w, b))
    # Without autograd (testing, evaluation) the same layer multiplies in bfloat16 as autocast does.
    with torch.no_grad():
        low = bf16(data=x)["fc"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref = torch.matmul(flat, w) + b if transpose else F.linear(flat, w, b)
    assert torch.equal(low, ref.float()) and not torch.equal(low, top)


@pytest.mark.parametrize("shape,axis", [((FLOAT32_ROWS + 1, K_IN), 1), ((4, 10, K_IN), 2)])
def test_more_rows_stay_bfloat16(shape, axis):
    bf16, fp32, x = pair(shape, axis=axis)
    upstream = torch.randn(*shape[:axis], K_OUT, generator=torch.Generator().manual_seed(2))
    top, grads = grads_of(bf16, x, upstream)
    w, b = bf16.params["fc"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = F.linear(x.flatten(axis), w, b)
    assert torch.equal(top, ref.float())          # (an output: returned as float32)
    _, want_grads = grads_of(fp32, x, upstream)
    assert all(g.dtype == torch.float32 for g in grads)
    assert not torch.equal(grads[0], want_grads[0])          # a bfloat16 product's gradient
    torch.testing.assert_close(grads[0], want_grads[0], rtol=0, atol=3e-2 * float(want_grads[0].abs().max()))
