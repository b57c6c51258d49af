#!/usr/bin/env python3
"""plot_training_log LOG OUT.png [--x iters|seconds]: training curves from a training log.

Three panels against iterations (or seconds since the start): the train loss (and the test loss
when the test net outputs one), every test output whose name contains "accuracy", and the
learning rate (log scale, drawn as the step function it is). Reads the same logs as
tools/parse_log.py; drawn with matplotlib (Agg, no display needed). The output format follows the
suffix (png, svg, pdf).
"""
import argparse
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vgg_caffe.errors import CaffeError, run_cli  # noqa: E402
from vgg_caffe.fileio import atomic_write  # noqa: E402
from vgg_caffe.train.log import parse_log


def plot(train, test, x="iters", title=None):
    """A matplotlib Figure of the curves."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    key = "NumIters" if x == "iters" else "Seconds"
    # 900 x 720 px at 100 dpi, the default 10 pt text readable at 100%; the rate panel is thin
    fig = Figure(figsize=(9, 7.2))
    loss_ax, acc_ax, lr_ax = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2.4, 1.5]})
    for rows, kind, style in ((train, "train", "-"), (test, "test", "o-")):
        losses = sorted({k for r in rows for k in r if "loss" in k.lower()})
        for name in losses:
            pts = [(r[key], r[name]) for r in rows if name in r]
            loss_ax.plot([p[0] for p in pts], [p[1] for p in pts], style, ms=3, label=f"{kind} {name}")
    loss_ax.set_ylabel("loss")
    accuracies = sorted({k for r in test for k in r if "accuracy" in k.lower()})
    for name in accuracies:
        pts = [(r[key], r[name]) for r in test if name in r]
        acc_ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, label=f"test {name}")
    acc_ax.set_ylabel("test accuracy")
    values = [r[n] for r in test for n in accuracies if n in r]
    if values and all(0 <= v <= 1 for v in values):
        acc_ax.set_ylim(-0.02, 1.02)   # the whole scale: a rise from 0.2 to 0.3 should look like one
    # The rate is a step function. A train row's LearningRate is the "lr =" line logged after the
    # previous row's outputs (Caffe's parse_log semantics), i.e. the rate of the iterations from the
    # previous row up to this one: each value holds on the interval that ends at its row, which is
    # matplotlib's "steps-pre" (a drop at iteration N shows as a vertical step at N, no ramp).
    pts = [(r[key], r["LearningRate"]) for r in train if r["LearningRate"] == r["LearningRate"]]
    if pts:
        lr_ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", drawstyle="steps-pre", color="tab:green",
                   label="learning rate")
        if all(p[1] > 0 for p in pts):
            lr_ax.set_yscale("log")
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("iterations" if x == "iters" else "seconds")
    for ax in (loss_ax, acc_ax, lr_ax):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def main(argv=None):
    p = argparse.ArgumentParser(prog="plot_training_log", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log", help="the training log")
    p.add_argument("out", help="the image to write (.png, .svg or .pdf)")
    p.add_argument("--x", choices=("iters", "seconds"), default="iters", help="horizontal axis")
    args = p.parse_args(argv)
    if not os.path.isfile(args.log):
        raise CaffeError(f"{args.log}: no such log file")
    train, test = parse_log(args.log)
    if not train and not test:
        raise CaffeError(f"{args.log}: nothing to plot (no 'Train net output' / 'Test net output' lines)")
    fmt = os.path.splitext(args.out)[1].lstrip(".").lower() or "png"
    if fmt not in ("png", "svg", "pdf"):
        raise CaffeError(f"{args.out}: unknown image type '{fmt}'; use .png, .svg or .pdf")
    fig = plot(train, test, args.x, title=os.path.basename(args.log))
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=100)
    atomic_write(args.out, buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
