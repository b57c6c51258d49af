"""Solver overhead: one iteration of vgg_caffe.train.solver.Solver vs a bare torch training loop.

    .venv/bin/python -m bench.bench_solver [--config A] [--batch 8] [--crop 224] [--iters 5]
                                           [--rounds 3] [--threads N] [--device cpu|cuda]

The net is VGG-A (configuration A of Table 1, the generator's train net with its data layers
replaced by an Input layer) at 224x224, batch 8, on fixed random data. The bare loop is the speed
reference: the same net's torch graph, forward, loss.backward(), torch.optim.SGD (momentum,
weight decay, foreach) step. The solver runs Caffe's iteration (sample window, statistics and
all-reduce hook, global gradient norm for the NaN/inf check, Caffe's update with lr_mult /
decay_mult groups). Blocks of `iters` iterations alternate between the two, `rounds` times, after
one warm-up block each; the medians of the per-iteration times are compared. Then the updates
alone (torch.optim.SGD.step vs the solver's norm + Caffe update) on the same random diffs,
interleaved, as the part where the two actually differ.
Target: solver / bare <= 1.05. Results: bench/results/solver.json.
"""
import argparse
import json
import statistics
import time

import torch

from vgg_caffe.vgg import netgen
from bench._report import result_path, write
from vgg_caffe.proto import pb
from vgg_caffe.train.solver import Solver
from vgg_caffe.train.log import TrainingLog

RESULTS = result_path("solver")


def train_net(config, batch, crop, classes=1000):
    """The generator's TRAIN net with an Input layer (data, label) instead of its data layers."""
    opts = netgen.Options(crop=crop, num_classes=classes)
    net = netgen.train_val_net(config, "S256", opts)
    layers = [l for l in net.layer if l.type not in ("Python", "Data")]
    del net.layer[:]
    data = net.layer.add(name="data", type="Input", top=["data", "label"])
    data.input_param.shape.add().dim.extend([batch, 3, crop, crop])
    data.input_param.shape.add().dim.extend([batch])
    net.layer.extend(layers)
    return net


def solver_param(net, device):
    return pb.SolverParameter(net_param=net, base_lr=0.001, lr_policy="step", gamma=0.1, stepsize=100000,
                              momentum=0.9, weight_decay=0.0005, max_iter=10 ** 9, display=0,
                              snapshot_after_train=False, random_seed=1,
                              solver_mode=pb.SolverParameter.GPU if device.type == "cuda" else pb.SolverParameter.CPU)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="A")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--iters", type=int, default=3, help="iterations per timed block")
    ap.add_argument("--rounds", type=int, default=3, help="alternating blocks per side")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both sides")
    ap.add_argument("--update-reps", type=int, default=8, help="interleaved update-only timings per side")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    g = torch.Generator().manual_seed(0)
    data = torch.randn(args.batch, 3, args.crop, args.crop, generator=g) * 50
    label = torch.randint(0, 1000, (args.batch,), generator=g).float()
    data_d, label_d = data.to(device), label.to(device)
    feed = lambda index, start, stop: {"data": data_d[start:stop], "label": label_d[start:stop]}  # noqa: E731

    solver = Solver(solver_param(train_net(args.config, args.batch, args.crop), device),
                    log=TrainingLog(enabled=False), train_feed=feed, device=device)
    net = solver.net
    module = net.graph_module
    params = [p for p in solver.params if p.requires_grad]
    lr_mults = {id(b): spec.lr_mult for _, _, b, spec in solver.learnable}
    decay = {id(b): spec.decay_mult for _, _, b, spec in solver.learnable}
    groups = {}
    for p in params:
        groups.setdefault((lr_mults[id(p)], decay[id(p)]), []).append(p)
    opt = torch.optim.SGD([{"params": ps, "lr": 0.001 * lm, "weight_decay": 0.0005 * dm}
                           for (lm, dm), ps in groups.items()], lr=0.001, momentum=0.9, foreach=True)

    def bare_block(n):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            blobs = module(data_d, label_d)
            loss = blobs["loss"].sum()
            del blobs                  # activations go before the next pass, as in the solver
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss.item()
            sync(device)
            times.append(time.perf_counter() - t)
        return times

    def solver_block(n):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            solver.step(1)
            sync(device)
            times.append(time.perf_counter() - t)
        return times

    bare_block(1)
    solver_block(1)
    bare, ours = [], []
    for r in range(args.rounds):
        # alternate which side goes first so drifts in machine load hit both
        first, second = (bare_block, solver_block) if r % 2 == 0 else (solver_block, bare_block)
        a = first(args.iters)
        b = second(args.iters)
        (bare if first is bare_block else ours).extend(a)
        (ours if first is bare_block else bare).extend(b)
        print(f"round {r}: bare {statistics.median(bare):.4f}s  solver {statistics.median(ours):.4f}s", flush=True)
    # The two loops differ only in the update (and the solver's bookkeeping), a small part of an
    # iteration that the machine's noise can hide: time the updates alone too, interleaved, on
    # the same random diffs (the solver's global-norm pass for the NaN/inf check included).
    g = torch.Generator().manual_seed(1)
    diffs = [(torch.randn(p.shape, generator=g) * 1e-3).to(device) for p in params]
    upd_bare, upd_ours = [], []
    for r in range(args.update_reps):
        for side in ((0, 1) if r % 2 == 0 else (1, 0)):
            for p, d in zip(params, diffs):
                p.grad = d.clone()
            sync(device)
            t = time.perf_counter()
            if side == 0:
                opt.step()
                opt.zero_grad(set_to_none=True)
            else:
                grads = solver._grads()
                norm = solver._global_norm(grads, device).item()
                solver._apply_update(0.001, grads, norm)
            sync(device)
            (upd_bare if side == 0 else upd_ours).append(time.perf_counter() - t)
    print(f"update only: torch.optim.SGD {statistics.median(upd_bare):.4f}s  "
          f"solver {statistics.median(upd_ours):.4f}s", flush=True)
    result = {
        "benchmark": "solver iteration vs bare torch loop (forward, backward, torch.optim.SGD step)",
        "net": f"VGG-{args.config} train net, {args.crop}x{args.crop}, batch {args.batch}",
        "device": str(device) + ("" if device.type == "cpu" else f" ({torch.cuda.get_device_name(device)})"),
        "threads": torch.get_num_threads(), "iters_per_block": args.iters, "rounds": args.rounds,
        "bare_median_s": statistics.median(bare), "solver_median_s": statistics.median(ours),
        "bare_times_s": bare, "solver_times_s": ours,
        "ratio_solver_over_bare": statistics.median(ours) / statistics.median(bare),
        "target": "<= 1.05",
        "update_only_bare_median_s": statistics.median(upd_bare),
        "update_only_solver_median_s": statistics.median(upd_ours),
        "update_only_ratio": statistics.median(upd_ours) / statistics.median(upd_bare),
        "update_only_reps": args.update_reps,
        "update_share_of_iteration": statistics.median(upd_ours) / statistics.median(ours),
        "note": "one run, interleaved blocks, medians; the machine is shared, so absolute times are noisy",
    }
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("times_s")}, indent=1))
    return write(args.out, result)


if __name__ == "__main__":
    main()
