"""`python -m vgg_caffe.caffe COMMAND [flags]`: Caffe's command-line brew (tools/caffe.cpp).

    python -m vgg_caffe.caffe train -solver S.prototxt [-weights A.caffemodel[,B...] | -snapshot X.solverstate]
                                    [-gpu 0 | 0,1 | all] [-level N] [-stage a,b]
                                    [-sigint_effect stop|snapshot|none] [-sighup_effect snapshot|stop|none]
    python -m vgg_caffe.caffe test  -model M.prototxt -weights W.caffemodel [-iterations 50] [-gpu 0]
                                    [-level N] [-stage a,b]
    python -m vgg_caffe.caffe time  -model M.prototxt [-iterations 50] [-phase TRAIN|TEST] [-gpu 0]
    python -m vgg_caffe.caffe device_query [-gpu 0 | 0,1 | all]

Flags are Caffe's (gflags): `-flag value`, `-flag=value`, `--flag value` and `--flag=value` all
work, before or after the command. The commands are thin: train is vgg_caffe.solve (so -gpu with
several ids runs data-parallel workers with Caffe's per-GPU batch semantics, the effective batch
growing with the GPU count), time is vgg_caffe.time; test is here, as Caffe's test(): the TEST net
runs -iterations batches from its data layers, printing "Batch i, NAME = V" for every element of
every output blob, then "Loss: L" and the means "NAME = V", with "(* W = W*V loss)" after loss
outputs. Output blobs come in Caffe's order, sorted by name (Net::Init keeps them in a std::set).
Lines are glog lines on stderr, as Caffe's LOG(INFO) with alsologtostderr.
"""
import argparse
import sys

import torch

from .errors import CaffeError, run_cli
from .train.log import TrainingLog, fmt

COMMANDS = ("train", "test", "time", "device_query")
EFFECTS = ("stop", "snapshot", "none")


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m vgg_caffe.caffe", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="command line brew\nusage: caffe <command> <args>\n\ncommands:\n"
                    "  train           train or finetune a model\n"
                    "  test            score a model\n"
                    "  device_query    show GPU diagnostic information\n"
                    "  time            benchmark model execution time")
    p.add_argument("command", nargs="?", help=", ".join(COMMANDS))

    def flag(name, **kw):
        p.add_argument(f"-{name}", f"--{name}", dest=name, **kw)

    flag("solver", default="", help="the solver definition protocol buffer text file (train)")
    flag("model", default="", help="the model definition protocol buffer text file (test, time)")
    flag("weights", default="", help="weights: for train, files to fine-tune from, separated by ','; "
                                     "for test, the trained weights to score")
    flag("snapshot", default="", help="the solver state to resume training from (train)")
    flag("iterations", type=int, default=50, help="the number of iterations to run (test, time; default 50)")
    flag("gpu", default="", help="GPU ids separated by ',', or 'all'; test and time use the first")
    flag("phase", default="", help="network phase, TRAIN or TEST (time only; default TRAIN)")
    flag("level", type=int, default=0, help="network level (default 0)")
    flag("stage", default="", help="network stages separated by ','")
    flag("sigint_effect", default="stop", help="what SIGINT does: snapshot, stop (default) or none (train)")
    flag("sighup_effect", default="snapshot", help="what SIGHUP does: snapshot (default), stop or none (train)")
    return p


def parse_args(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in COMMANDS:
        known = ", ".join(COMMANDS)
        if args.command is None:
            parser.error(f"give a command: {known}")
        raise CaffeError(f"unknown action: {args.command} (available caffe actions: {known})")
    for name in ("sigint_effect", "sighup_effect"):
        if getattr(args, name) not in EFFECTS:
            raise CaffeError(f"-{name} {getattr(args, name)!r}: invalid signal effect; expected snapshot, stop or none")
    return args


def stages(args):
    return [s for s in args.stage.split(",") if s]


def gpu_ids(text):
    """Caffe's get_gpus: '' -> [], 'all' -> every CUDA device, '0,1' -> [0, 1]."""
    if not text:
        return []
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if text == "all":
        if not count:
            raise CaffeError("-gpu all: no CUDA device is available")
        return list(range(count))
    try:
        ids = [int(s) for s in text.split(",")]
    except ValueError:
        raise CaffeError(f"-gpu {text!r}: expected device ids separated by ',' (0,1) or 'all'") from None
    for i in ids:
        if i < 0 or i >= count:
            raise CaffeError(f"-gpu {text}: no CUDA device {i} (torch sees {count})")
    return ids


def single_device(args, log):
    """The one device of test and time: the first -gpu id (the rest dropped, as Caffe), else the CPU."""
    ids = gpu_ids(args.gpu)
    for extra in reversed(ids[1:]):
        log.info(f"Not using GPU #{extra} for single-GPU function")
    if ids:
        log.info(f"Use GPU with device ID {ids[0]}")
        log.info(f"GPU device name: {torch.cuda.get_device_name(ids[0])}")
        return torch.device("cuda", ids[0])
    log.info("Use CPU.")
    return torch.device("cpu")


# -- the commands ----------------------------------------------------------------------------------

def train(args):
    """Caffe's train(): vgg_caffe.solve with the same flags."""
    from . import solve

    if not args.solver:
        raise CaffeError("caffe train: need a solver definition to train (-solver S.prototxt)")
    if args.snapshot and args.weights:
        raise CaffeError("caffe train: give a snapshot to resume training or weights to finetune but not both")
    argv = [args.solver, "--sigint-effect", args.sigint_effect, "--sighup-effect", args.sighup_effect]
    if args.weights:
        argv += ["--weights", args.weights]
    if args.snapshot:
        argv += ["--snapshot", args.snapshot]
    ids = gpu_ids(args.gpu)
    if len(ids) == 1:
        argv += ["--device", f"cuda:{ids[0]}"]
    elif ids:   # Caffe's P2PSync: every GPU runs the prototxt's batch
        argv += ["--gpus", ",".join(map(str, ids)), "--caffe-multi-gpu"]
    if args.level or args.stage:   # Caffe puts them in the solver's train_state
        argv += ["--level", str(args.level), "--stage", args.stage]
    return solve.main(argv)


def test(args):
    """Caffe's test(): score the TEST net over -iterations batches of its data layers."""
    from .net import Net

    if not args.model:
        raise CaffeError("caffe test: need a model definition to score (-model M.prototxt)")
    if not args.weights:
        raise CaffeError("caffe test: need model weights to score (-weights W.caffemodel)")
    if args.iterations < 1:
        raise CaffeError(f"caffe test: -iterations must be positive, got {args.iterations}")
    log = TrainingLog(progress=False)
    try:
        device = single_device(args, log)
        net = Net(args.model, "TEST", level=args.level, stages=stages(args))
        log.info(f"Copying weights: {net.copy_from(args.weights, strict=False)}")
        net.to(device)
        log.info(f"Running for {args.iterations} iterations.")
        scores, loss = score(net, args.iterations, log)
        log.info(f"Loss: {fmt(loss)}")
        for name, values in scores.items():
            weight = net.loss_weights.get(name, 0.0)
            for v in values:
                mean = v / args.iterations
                extra = f" (* {fmt(weight)} = {fmt(weight * mean)} loss)" if weight else ""
                log.info(f"{name} = {fmt(mean)}{extra}")
    finally:
        log.close()
    return 0


def score(net, iterations, log=None):
    """Sum of every output element over `iterations` forward passes of `net`, by output name in
    Caffe's (sorted) order, and the mean loss; logs "Batch i, NAME = V" per element."""
    sums, loss = {}, 0.0
    with torch.no_grad():
        for i in range(iterations):
            outputs = net()
            loss += float(net.loss) if net.loss_weights else 0.0
            for name in sorted(outputs):
                values = outputs[name].detach().reshape(-1).double().cpu().tolist()
                if name not in sums:
                    sums[name] = [0.0] * len(values)
                for k, v in enumerate(values):
                    sums[name][k] += v
                    if log is not None:
                        log.info(f"Batch {i}, {name} = {fmt(v)}")
    return sums, loss / iterations


def time(args):
    """Caffe's time(): vgg_caffe.time with the same flags (TRAIN phase by default)."""
    from . import time as timing

    if not args.model:
        raise CaffeError("caffe time: need a model definition to time (-model M.prototxt)")
    phase = args.phase or "TRAIN"
    if phase not in ("TRAIN", "TEST"):
        raise CaffeError(f"-phase {args.phase!r}: phase must be \"TRAIN\" or \"TEST\"")
    log = TrainingLog(progress=False)
    device = single_device(args, log)
    log.close()
    argv = ["-model", args.model, "-iterations", str(args.iterations), "-phase", phase,
            "-level", str(args.level), "--device", str(device)]
    if args.stage:
        argv += ["-stage", args.stage]
    timing.main(argv)
    return 0


def device_query(args):
    """Caffe's device_query: the properties of each -gpu device; without -gpu, every device torch sees."""
    log = TrainingLog(progress=False)
    try:
        log.info(f"Querying GPUs {args.gpu}")
        ids = gpu_ids(args.gpu) if args.gpu else None
        if ids is None:
            log.info(f"Device cpu: torch {torch.__version__}, {torch.get_num_threads()} threads")
            ids = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
            if not ids:
                log.info("No CUDA device is available")
        for i in ids:
            prop = torch.cuda.get_device_properties(i)
            for key, value in (("Device id", i), ("Major revision number", prop.major),
                               ("Minor revision number", prop.minor), ("Name", prop.name),
                               ("Total global memory", prop.total_memory),
                               ("Number of multiprocessors", prop.multi_processor_count)):
                log.info(f"{key + ':':<28}{value}")
    finally:
        log.close()
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return {"train": train, "test": test, "time": time, "device_query": device_query}[args.command](args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
