"""The zoo: our copies of the nets BVLC Caffe ships (tests/zoo/nets) build and run in TRAIN and TEST.

For every net and phase: the net builds from its prototxt, reads its data files (written by
zoo_data.make_all, in the Caffe-relative places the prototxt name), runs forward and backward,
every loss and output is finite, and every learnable blob with lr_mult > 0 receives a non-zero
gradient. The TEST net takes the TRAIN net's blobs after one pass, as Caffe's solver shares the
trained layers with its test nets (so BatchNorm has statistics to normalise with).
"""
import os

import pytest
import torch
from zoo_data import NETS

from vgg_caffe import Net

# net -> options: test_stages (NetState stages of the TEST net); deploy (no loss: the objective is
# a random projection of the outputs); stats_from (a net whose TRAIN pass provides the BatchNorm
# statistics, as a trained model would); cancelling (blobs whose gradient is exactly zero by
# symmetry, checked to be so).
ZOO = {
    "lenet_train_test": {},
    "lenet": {"deploy": True},
    # Upstream names both loss layers "loss"; Caffe allows that, vgg_caffe.net.Net refuses it.
    "mnist_autoencoder": {"test_stages": ("test-on-test",)},
    # The contrastive loss depends on feat - feat_p only, so the shared biases of feat (and of ip2,
    # seen through the shared feat weights) get equal and opposite gradients from the two towers.
    "mnist_siamese_train_test": {"cancelling": {"feat[1]", "ip2[1]"}},
    "mnist_siamese": {"deploy": True},
    "cifar10_quick_train_test": {},
    "cifar10_full_train_test": {},
    "cifar10_full": {"deploy": True},
    "cifar10_full_sigmoid_train_test_bn": {},
    "bvlc_reference_caffenet_train_val": {},
    "bvlc_alexnet_train_val": {},
    "bvlc_googlenet_train_val": {},
    "bvlc_reference_rcnn_ilsvrc13_deploy": {"deploy": True},
    "bvlc_caffenet_full_conv": {"deploy": True},
    "pascal_finetune_trainval_test": {},
    "finetune_flickr_style_train_val": {},
    "hdf5_classification_train_val": {},
    "hdf5_classification_train_val2": {},
    "linreg": {},
    "lstm_language_model": {},
    "resnet50_train_val": {},
    "resnet50_deploy": {"deploy": True, "stats_from": "resnet50_train_val"},
    "fcn32s_train_val": {},
    "stored_blobs": {"deploy": True},
}


def net_path(name):
    return os.path.join(NETS, name + ".prototxt")


def input_feeds(net, seed=0):
    """Values for the tops of Input layers: word ids, sequence-continuation flags, or Gaussians."""
    g = torch.Generator().manual_seed(seed)
    feeds = {}
    for layer in net.data_layers:
        if layer.type != "Input":
            continue
        for top, shape in zip(layer.param.top, layer.top_shapes):
            if top == "ids":
                feeds[top] = torch.randint(0, 7, shape, generator=g).float()
            elif top == "cont":
                feeds[top] = torch.ones(shape)
                feeds[top][0] = 0  # every stream starts a sequence at t = 0
            else:
                feeds[top] = torch.randn(shape, generator=g)
    return feeds


def share_trained(train, test):
    """Caffe's Net::ShareTrainedLayersWith: the TEST net uses the TRAIN net's blobs, by layer name."""
    trained = train.params
    for name, blobs in test.params.items():
        if name in trained:
            for mine, theirs in zip(blobs, trained[name]):
                mine.data = theirs.data


def run_pass(net, deploy, cancelling=()):
    """Forward and backward; returns (objective, outputs). Checks finiteness and gradients."""
    net.zero_grad(set_to_none=True)
    outputs = net(**input_feeds(net))
    for name, value in net.blobs.items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), f"blob '{name}' is not finite"
    if deploy:
        g = torch.Generator().manual_seed(1)
        objective = sum((v * torch.randn(v.shape, generator=g)).sum() for v in outputs.values())
    else:
        objective = net.loss
        assert objective is not None and len(net.loss_weights)
    assert torch.isfinite(objective)
    objective.backward()
    starved = []
    for layer, i, blob, spec in net.learnable():
        if spec.lr_mult <= 0:
            continue
        key = f"{layer.name}[{i}]"
        assert blob.grad is not None, f"no gradient reaches {key}"
        if key in cancelling:
            torch.testing.assert_close(blob.grad, torch.zeros_like(blob.grad), atol=1e-6, rtol=0)
        elif not bool(blob.grad.abs().sum() > 0):
            starved.append(key)
    assert not starved, f"the gradients of {starved} are all zero"
    return objective, outputs


def zoo_case(name):
    reason = ZOO[name].get("xfail")
    return pytest.param(name, marks=pytest.mark.xfail(reason=reason, strict=True)) if reason else name


@pytest.mark.parametrize("name", [zoo_case(n) for n in sorted(ZOO)])
def test_zoo_net_trains_and_tests(in_zoo, name):
    opts = ZOO[name]
    deploy, cancelling = opts.get("deploy", False), opts.get("cancelling", ())
    train = Net(net_path(name), "TRAIN", seed=0)
    if "stats_from" in opts:
        donor = Net(net_path(opts["stats_from"]), "TRAIN", seed=0)
        donor()
        share_trained(donor, train)
    run_pass(train, deploy, cancelling)
    test = Net(net_path(name), "TEST", stages=opts.get("test_stages", ()), seed=0)
    share_trained(train, test)
    run_pass(test, deploy, cancelling)
    if not opts.get("deploy"):
        assert set(test.loss_weights) <= set(test.output_names)


def test_every_fixture_is_in_the_zoo():
    assert sorted(f[:-len(".prototxt")] for f in os.listdir(NETS)) == sorted(ZOO)


# -- what particular nets are there to show -----------------------------------------------------

def test_siamese_towers_share_every_parameter(in_zoo):
    net = Net(net_path("mnist_siamese_train_test"), "TRAIN", seed=0)
    for layer in ("conv1", "conv2", "ip1", "ip2", "feat"):
        for a, b in zip(net.params[layer], net.params[layer + "_p"]):
            assert a is b
    assert net.blob_shapes["data"] == net.blob_shapes["data_p"] == (4, 1, 28, 28)
    run_pass(net, False, ZOO["mnist_siamese_train_test"]["cancelling"])


def test_autoencoder_test_net_needs_a_stage(in_zoo):
    # As Caffe: without a stage no data layer is kept in TEST, so "data" has no producer.
    from vgg_caffe.errors import CaffeError
    with pytest.raises(CaffeError, match="bottom 'data'"):
        Net(net_path("mnist_autoencoder"), "TEST")
    for stage in ("test-on-train", "test-on-test"):
        net = Net(net_path("mnist_autoencoder"), "TEST", stages=(stage,))
        assert net.blob_shapes["flatdata"] == (4, 784) and net.blob_shapes["decode1"] == (4, 784)


def test_googlenet_concat_and_auxiliary_losses(in_zoo):
    net = Net(net_path("bvlc_googlenet_train_val"), "TRAIN", seed=0)
    # inception_3a: 1x1 8 + 3x3 16 + 5x5 4 + pool_proj 4 channels at 12x12.
    assert net.blob_shapes["inception_3a/output"] == (2, 32, 12, 12)
    assert net.loss_weights == pytest.approx({"loss1/loss1": 0.3, "loss2/loss2": 0.3, "loss3/loss3": 1.0})


def test_fcn_scores_every_pixel_of_the_input(in_zoo):
    net = Net(net_path("fcn32s_train_val"), "TRAIN", seed=0)
    assert net.blob_shapes["upscore"] == (2, 5, 212, 212)
    assert net.blob_shapes["score"] == (2, 5, 32, 32)
    # Caffe's bilinear filler for k = 8: f = 4, c = 7/8, w[y, x] = (1 - |x/f - c|) (1 - |y/f - c|).
    w = net.params["upscore"][0].detach()
    assert tuple(w.shape) == (5, 1, 8, 8)
    assert float(w[2, 0, 3, 4]) == pytest.approx(0.875 * 0.875) and float(w[0, 0, 0, 7]) == pytest.approx(0.125 * 0.125)


def test_rcnn_window_batches(in_zoo):
    net = Net(net_path("pascal_finetune_trainval_test"), "TRAIN", seed=0)
    net()
    labels = net.blobs["label"].tolist()
    # batch 4, fg_fraction 0.25: three background windows (label 0), then one object (class > 0).
    assert labels[:3] == [0, 0, 0] and labels[3] > 0
    assert net.blob_shapes["data"] == (4, 3, 99, 99)


def test_full_conv_caffenet_gives_a_score_map(in_zoo):
    net = Net(net_path("bvlc_caffenet_full_conv"), "TEST", seed=0)
    assert net.blob_shapes["pool5"] == (1, 32, 3, 3)
    assert net.blob_shapes["prob"] == (1, 10, 2, 2)
    with torch.no_grad():
        prob = net(data=torch.randn(1, 3, 131, 131))["prob"]
    torch.testing.assert_close(prob.sum(1), torch.ones(1, 2, 2))
