"""Overhead of the parsed net: VGG-16 (configuration D) against a hand-written twin and OpenCV.

1. Training step cost: forward + backward of batch 8 at 224x224 through our Net (parsed from
   prototxt/D/deploy.prototxt, called as net(data=x) with its shape checks and blob bookkeeping)
   and through a hand-written nn.Sequential with the same weights, both in train mode (dropout
   active) with the same objective (-log prob of fixed labels). Ratio twin_time / our_time
   (1.0 = no overhead; target >= 0.98).
2. Inference: our Net in eval mode under torch.no_grad() against cv2.dnn (readNetFromCaffe of the
   same prototxt and weights) on the same batch. Ratio opencv_time / our_time (target >= 1).
Both are measured in the default layout and with net.channels_last = True (NHWC activations; the
twin then gets the same NHWC input, so the training ratio compares like with like).

Both sides use the same thread count (torch.set_num_threads, cv2.setNumThreads); repeats are
interleaved (ours, twin, ours, twin, ...) after a warm-up of each, and medians are compared, since
the machine is shared and noisy.

    python -m bench.bench_overhead [--batch 8] [--repeats 5] [--threads 2]

Results: bench/results/overhead.json.
"""
import argparse
import json
import math
import os
import statistics
import tempfile
import time

import cv2
import numpy as np
import torch
from torch import nn

from vgg_caffe.errors import run_cli
from bench._report import result_path, write
from vgg_caffe.net import Net

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = result_path("overhead")
PROTO = os.path.join(ROOT, "prototxt", "D", "deploy.prototxt")


def twin_of(net):
    """nn.Sequential computing what the VGG deploy net computes, holding copies of its weights."""
    mods = []
    for name, layer in zip(net.layer_names, net.layers.values()):
        kind = layer.type
        if kind == "Convolution":
            w, b = net.params[name]
            conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=layer.pad[0])
            mods.append(conv)
        elif kind == "ReLU":
            mods.append(nn.ReLU(inplace=True))
        elif kind == "Pooling":
            mods.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        elif kind == "InnerProduct":
            w, b = net.params[name]
            if not any(isinstance(m, nn.Flatten) for m in mods):
                mods.append(nn.Flatten())
            mods.append(nn.Linear(w.shape[1], w.shape[0]))
        elif kind == "Dropout":
            mods.append(nn.Dropout(layer.ratio))
        elif kind == "Softmax":
            mods.append(nn.Softmax(1))
        else:
            continue
        if kind in ("Convolution", "InnerProduct"):
            with torch.no_grad():
                mods[-1].weight.copy_(net.params[name][0])
                mods[-1].bias.copy_(net.params[name][1])
    return nn.Sequential(*mods)


def random_weights(net, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for blobs in net.params.values():
            blobs[0].normal_(0, math.sqrt(2.0 / (blobs[0].numel() / blobs[0].shape[0])), generator=gen)
            blobs[1].zero_()


def objective(prob, labels):
    return -torch.log(prob.gather(1, labels[:, None]).clamp(min=1e-30)).mean()


def step_ours(net, x, labels):
    net.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    prob = net(data=x)["prob"]
    objective(prob, labels).backward()
    return time.perf_counter() - t0


def step_twin(twin, x, labels):
    twin.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    prob = twin(x)
    objective(prob, labels).backward()
    return time.perf_counter() - t0


def infer_ours(net, x):
    t0 = time.perf_counter()
    with torch.no_grad():
        net(data=x)
    return time.perf_counter() - t0


def infer_opencv(cv, x):
    t0 = time.perf_counter()
    cv.setInput(x, "data")
    cv.forward("prob")
    return time.perf_counter() - t0


def interleaved(fns, repeats):
    times = {name: [] for name in fns}
    for name, fn in fns.items():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(fn())
    return {name: {"median_s": statistics.median(t), "all_s": t} for name, t in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    shape = (args.batch, 3, args.size, args.size)
    # Explicitly NCHW: the Net's default ("auto") is channels-last for convolutional nets. A second
    # Net in channels-last memory gets a copy of the weights (each keeps its own layout), so no
    # layout change happens inside the timing.
    net = Net(PROTO, input_shapes={"data": shape}, channels_last=False)
    random_weights(net)
    net_cl = Net(PROTO, input_shapes={"data": shape}, channels_last=True, fill=False)
    for a, b in zip(net.layers.values(), net_cl.layers.values()):
        for mine, theirs in zip(a.blobs, b.blobs):
            theirs.data.copy_(mine.data)
    twin = twin_of(net)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=gen) * 50
    labels = torch.randint(0, 1000, (args.batch,), generator=gen)
    net.train(), net_cl.train()
    twin.train()
    with torch.no_grad():  # the twin really is the same function (dropout off for the check)
        net.eval(), twin.eval()
        check = float((net(data=x[:2])["prob"] - twin(x[:2])).abs().max())
        net.train(), twin.train()
    xcl = x.contiguous(memory_format=torch.channels_last)

    def ours_cl(fn, *a):
        return fn(net_cl, *a)

    train = interleaved({"ours": lambda: step_ours(net, x, labels),
                         "twin": lambda: step_twin(twin, x, labels),
                         "ours_channels_last": lambda: ours_cl(step_ours, x, labels),
                         "twin_channels_last": lambda: step_twin(twin, xcl, labels)}, args.repeats)
    del twin
    net.eval()
    with tempfile.TemporaryDirectory(prefix="vgg_overhead_") as tmp:
        weights = os.path.join(tmp, "D.caffemodel")
        net.save(weights)
        cv = cv2.dnn.readNetFromCaffe(PROTO, weights)
    xn = x.numpy()
    infer = interleaved({"ours": lambda: infer_ours(net, x), "opencv": lambda: infer_opencv(cv, xn),
                         "ours_channels_last": lambda: ours_cl(infer_ours, x)}, args.repeats)
    ours_prob = net(data=x)["prob"].detach().numpy()
    cv.setInput(xn, "data")
    cv_prob = np.asarray(cv.forward("prob")).reshape(ours_prob.shape)
    report = {
        "bench": "overhead", "net": "VGG-16 (D) deploy.prototxt", "batch": args.batch, "size": args.size,
        "threads": args.threads, "repeats": args.repeats, "opencv": cv2.__version__,
        "twin_max_abs_prob_diff": check,
        "train_step": train, "train_ratio_twin_over_ours": train["twin"]["median_s"] / train["ours"]["median_s"],
        "train_ratio_twin_over_ours_channels_last":
            train["twin_channels_last"]["median_s"] / train["ours_channels_last"]["median_s"],
        "inference": infer,
        "inference_ratio_opencv_over_ours": infer["opencv"]["median_s"] / infer["ours"]["median_s"],
        "inference_ratio_opencv_over_ours_channels_last":
            infer["opencv"]["median_s"] / infer["ours_channels_last"]["median_s"],
        "inference_opencv_max_abs_prob_diff": float(np.abs(ours_prob - cv_prob).max()),
    }
    report["train_target_met"] = report["train_ratio_twin_over_ours"] >= 0.98
    report["inference_target_met"] = report["inference_ratio_opencv_over_ours"] >= 1.0
    report["inference_target_met_channels_last"] = report["inference_ratio_opencv_over_ours_channels_last"] >= 1.0
    write(args.out, report)
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, dict)}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_cli(main)
