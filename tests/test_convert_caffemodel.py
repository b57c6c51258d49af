"""tools/convert_caffemodel.py: round trips through every format, torchvision's VGG naming checked
against a twin built the way torchvision builds its VGG, and the input-convention fold checked
with the arithmetic written out (exact inside the image; exact everywhere with mean padding)."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vgg_caffe.io import caffemodel as weights
from vgg_caffe.io import convert as wc
from vgg_caffe.errors import CaffeError
from vgg_caffe.net import Net
from vgg_caffe.vgg.netgen import Options, deploy_net

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "convert_caffemodel.py")
RNG = np.random.default_rng(99)
DIV = 16

_spec = importlib.util.spec_from_file_location("convert_caffemodel", TOOL)
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)

# torchvision's cfgs (models/vgg.py), with every width divided by DIV as netgen's width_div does.
TV_CFGS = {"A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
           "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]}


class TorchvisionTwin(nn.Module):
    """torchvision's VGG structure (features / avgpool / classifier, same module indices), with
    optional padding of the input by a fixed colour in place of conv1's zero padding."""

    def __init__(self, cfg, num_classes, pad_value=None):
        super().__init__()
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v // DIV, 3, padding=1), nn.ReLU(inplace=True)]
                c = v // DIV
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        fc = 4096 // DIV
        self.classifier = nn.Sequential(nn.Linear(c * 49, fc), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(fc, fc), nn.ReLU(True), nn.Dropout(), nn.Linear(fc, num_classes))
        self.pad_value = pad_value

    def forward(self, x):
        if self.pad_value is not None:
            pad = torch.as_tensor(self.pad_value, dtype=x.dtype).view(1, 3, 1, 1)
            big = pad.expand(x.shape[0], 3, x.shape[2] + 2, x.shape[3] + 2).clone()
            big[:, :, 1:-1, 1:-1] = x
            first = self.features[0]
            x = F.conv2d(big, first.weight, first.bias)
            x = self.features[1:](x)
        else:
            x = self.features(x)
        return self.classifier(torch.flatten(self.avgpool(x), 1))


def random_net(config, crop=224):
    opts = Options(width_div=DIV, crop=crop, num_classes=10, deploy_batch=1)
    net = Net(deploy_net(config, opts), phase="TEST")
    gen = torch.Generator().manual_seed(5)
    for p in net.parameters():
        p.data.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return net


def test_round_trip_through_every_format(tmp_path, capsys):
    net = random_net("A", crop=32)
    v1 = str(tmp_path / "a_v1.caffemodel")
    net.save(v1 + ".tmp.caffemodel")
    tool.main([v1 + ".tmp.caffemodel", v1, "--v1"])
    chain = [v1, "a.h5", "a.safetensors", "a.pt", "a2.caffemodel", "a_tv.pth", "a3.hdf5"]
    paths = [chain[0]] + [str(tmp_path / p) for p in chain[1:]]
    for src, dst in zip(paths, paths[1:]):
        assert tool.main([src, dst] + (["--torchvision"] if dst.endswith("_tv.pth") else [])) == 0
    final = weights.read_weights(paths[-1])
    for name, params in net.params.items():
        got = final[name][1]
        assert len(got) == len(params)
        for a, p in zip(got, params):
            np.testing.assert_array_equal(a, p.detach().numpy())
    direct = str(tmp_path / "direct.safetensors")
    tool.main([v1, direct])
    tensors, meta = wc.read_state_dict(direct)
    assert set(tensors) == {f"{n}.{j}" for n, ps in net.params.items() for j in range(len(ps))}
    assert meta["fc6"] == "InnerProduct" and tensors["fc6.0"].ndim == 2
    assert tool.main(["--info", v1]) == 0
    out = capsys.readouterr().out
    assert "V1 format" in out and "legacy 1x1x1x4" in out and "conv1_1" in out


def test_torchvision_keys_match_a_torchvision_shaped_model(tmp_path):
    net = random_net("D")
    src = str(tmp_path / "d.caffemodel")
    net.save(src)
    dst = str(tmp_path / "d_tv.pth")
    tool.main([src, dst, "--torchvision"])
    state = torch.load(dst, weights_only=True)
    twin = TorchvisionTwin(TV_CFGS["D"], 10)
    assert list(state) == list(twin.state_dict())
    twin.load_state_dict(state, strict=True)
    assert torch.equal(twin.features[28].weight, net.params["conv5_3"][0])
    assert torch.equal(twin.classifier[3].bias, net.params["fc7"][1])
    # With neither flag the twin computes the Caffe net on the same (BGR, mean-subtracted) input.
    x = torch.randn(1, 3, 224, 224)
    ref = net(data=x)["prob"]
    np.testing.assert_allclose(torch.softmax(twin.eval()(x), 1).detach(), ref.detach(), rtol=1e-4, atol=1e-6)


def test_fold_is_exact_inside_the_image_and_with_mean_padding():
    w = RNG.standard_normal((5, 3, 3, 3))
    b = RNG.standard_normal(5)
    u_rgb = RNG.uniform(0, 1, (1, 3, 9, 11))                   # an image in [0, 1], RGB
    m_bgr = np.array(wc.VGG_MEAN_BGR)
    mu, sigma = np.array(wc.TV_MEAN_RGB), np.array(wc.TV_STD_RGB)
    caffe_x = 255.0 * u_rgb[:, ::-1] - m_bgr[None, :, None, None]            # BGR, 0..255 - mean
    tv_t = (u_rgb - mu[None, :, None, None]) / sigma[None, :, None, None]       # RGB, normalised
    w2, b2 = wc.fold_normalisation(wc.swap_rgb_bgr(w), b)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    caffe = F.conv2d(t(caffe_x), t(w), t(b), padding=1).numpy()
    tv = F.conv2d(t(tv_t), t(w2), t(b2), padding=1).numpy()
    np.testing.assert_allclose(tv[..., 1:-1, 1:-1], caffe[..., 1:-1, 1:-1], rtol=1e-12, atol=1e-9)
    assert np.abs(tv[..., 0, :] - caffe[..., 0, :]).max() > 1e-3     # the border really differs
    # Padding t with the value Caffe's zero padding stands for, (m/255 - mu)/sigma, is exact everywhere.
    pad = (m_bgr[::-1] / 255.0 - mu) / sigma
    big = np.broadcast_to(pad[None, :, None, None], (1, 3, 11, 13)).copy()
    big[..., 1:-1, 1:-1] = tv_t
    np.testing.assert_allclose(F.conv2d(t(big), t(w2), t(b2)).numpy(), caffe, rtol=1e-12, atol=1e-9)
    w3, b3 = wc.unfold_normalisation(w2, b2)
    np.testing.assert_allclose(wc.swap_rgb_bgr(w3), w, rtol=1e-12)
    np.testing.assert_allclose(b3, b, rtol=1e-12, atol=1e-12)


def test_whole_vgg_from_torchvision_input_with_mean_padding(tmp_path):
    """Net D (Caffe semantics, BGR 0..255 - mean) against the torchvision-shaped twin given the
    usual torchvision input, after --torchvision --torchvision-normalisation; the twin pads its
    input with the mean colour, so the outputs agree everywhere."""
    net = random_net("D")
    src = str(tmp_path / "d.caffemodel")
    net.save(src)
    dst = str(tmp_path / "d_tv.safetensors")
    tool.main([src, dst, "--torchvision", "--torchvision-normalisation"])
    from safetensors.torch import load_file
    m_bgr, mu, sigma = np.array(wc.VGG_MEAN_BGR), np.array(wc.TV_MEAN_RGB), np.array(wc.TV_STD_RGB)
    twin = TorchvisionTwin(TV_CFGS["D"], 10, pad_value=((m_bgr[::-1] / 255 - mu) / sigma).astype(np.float32))
    twin.load_state_dict(load_file(dst), strict=True)
    u = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))            # RGB in [0, 1]
    caffe_in = 255 * u.flip(1) - torch.tensor(m_bgr, dtype=torch.float32).view(1, 3, 1, 1)
    tv_in = (u - torch.tensor(mu, dtype=torch.float32).view(1, 3, 1, 1)) / torch.tensor(sigma, dtype=torch.float32).view(1, 3, 1, 1)
    ref = net(data=caffe_in)["prob"].detach()
    got = torch.softmax(twin.eval()(tv_in), 1).detach()
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-6)
    # and back: the Caffe weights come out again
    back = str(tmp_path / "back.caffemodel")
    tool.main([dst, back, "--torchvision-normalisation"])
    again = weights.read_weights(back)
    for name, params in net.params.items():
        for a, p in zip(again[name][1], params):
            np.testing.assert_allclose(a, p.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_conversion_errors(tmp_path):
    c = str(tmp_path / "c.caffemodel")
    weights.write_weights(c, {"conv1_1": ("Convolution", [np.zeros((2, 3, 3, 3), np.float32), np.zeros(2, np.float32)])})
    with pytest.raises(CaffeError, match="not those of VGG configuration"):
        tool.main([c, str(tmp_path / "x.pth"), "--torchvision"])
    with pytest.raises(CaffeError, match="both Caffe files"):
        tool.main([c, str(tmp_path / "x.h5"), "--rgb-first-conv"])
    with pytest.raises(CaffeError, match="unknown suffix"):
        tool.main([c, str(tmp_path / "x.npz")])
    torch.save({"conv1_1.weight": torch.zeros(1)}, str(tmp_path / "bad.pt"))
    with pytest.raises(CaffeError, match="not '<layer>.<blob index>'"):
        tool.main([str(tmp_path / "bad.pt"), str(tmp_path / "y.caffemodel")])
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    run = subprocess.run([sys.executable, TOOL, str(empty), str(tmp_path / "z.h5")], capture_output=True, text=True)
    assert run.returncode == 1 and "empty.caffemodel: the file is empty" in run.stderr
    assert "Traceback" not in run.stderr
