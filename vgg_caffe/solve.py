"""`python -m vgg_caffe.solve SOLVER.prototxt`: train a net, as `caffe train -solver ...`.

  python -m vgg_caffe.solve solver.prototxt [--weights A.caffemodel[,B.caffemodel]]
         [--init-layers conv1_1,conv2_1,...] [--snapshot X.solverstate]
         [--sigint-effect stop|snapshot|none] [--sighup-effect snapshot|stop|none]
         [--device cpu|cuda|cuda:N] [--deterministic] [--log-file FILE] [--tensorboard DIR]
         [--gpus 0,1 | --cpu-workers N]

Caffe's flags and their meaning: --weights fine-tunes from the listed files (copied by layer
name, extra layers in a file ignored; it replaces the solver's own `weights`), --snapshot resumes
a run from its .solverstate (not both). --init-layers restricts the --weights copy to the named
layers: the paper's initialisation of the deeper nets from net A. SIGINT (and SIGTERM) stop after
a snapshot by default (SIGTERM under torchrun too: clusters preempt with it), SIGHUP snapshots
and goes on; a second SIGINT interrupts at once. --log-file (alias --log) appends the log to a file.
--gpus / --cpu-workers / torchrun run data-parallel workers (vgg_caffe.train.parallel).
--precision fp32|tf32|bf16 and --compile are the speed options of vgg_caffe.precision (fp32,
Caffe's arithmetic, by default; bf16 keeps float32 weights, updates, history and losses).
"""
import argparse
import signal
import sys

from . import precision as speed
from .train import parallel, tensorboard
from .errors import CaffeError, run_cli
from .proto import read_solver
from .train.solver import NONE, SNAPSHOT, STOP, Solver
from .train.log import TrainingLog

EFFECTS = {"stop": STOP, "snapshot": SNAPSHOT, "none": NONE}


class SignalActions:
    """Caffe's SignalHandler: turns SIGINT/SIGTERM and SIGHUP into solver requests, polled by the
    solver once per iteration (the current iteration finishes first)."""

    def __init__(self, sigint_effect="stop", sighup_effect="snapshot", handle_sigterm=True):
        self.pending = NONE
        self.effects = {signal.SIGINT: EFFECTS[sigint_effect]}
        if handle_sigterm:
            self.effects[signal.SIGTERM] = EFFECTS[sigint_effect]
        if hasattr(signal, "SIGHUP"):
            self.effects[signal.SIGHUP] = EFFECTS[sighup_effect]
        self.previous = {}
        self._interrupts = 0

    def install(self):
        for sig in self.effects:
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def _handle(self, sig, frame):
        if sig == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1:   # the user insists: stop now, without waiting for the iteration
                raise KeyboardInterrupt
        effect = self.effects.get(sig, NONE)
        if effect == STOP or self.pending != STOP:
            self.pending = effect if effect != NONE else self.pending

    def __call__(self):
        request, self.pending = self.pending, NONE
        return request


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m vgg_caffe.solve",
        description="Train a net with a Caffe solver (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam: the "
                    "solver's `type`); the `caffe train` of this project.")
    parser.add_argument("solver", nargs="?", help="the solver prototxt (SolverParameter text)")
    parser.add_argument("--solver", "-solver", dest="solver_flag", metavar="SOLVER",
                        help="the solver prototxt (Caffe's spelling; same as the positional argument)")
    parser.add_argument("--weights", "-weights", metavar="A.caffemodel[,B...]",
                        help="initial weights, copied by layer name (comma-separated files, in order); "
                             "replaces the solver's `weights`")
    parser.add_argument("--init-layers", "--init_layers", metavar="L1,L2,...",
                        help="copy only these layers from --weights (the paper: the first four conv layers "
                             "and the three FC layers of net A); the rest keep their fillers")
    parser.add_argument("--snapshot", "-snapshot", metavar="X.solverstate",
                        help="resume training from this solver state (binary or .h5)")
    parser.add_argument("--sigint-effect", "--sigint_effect", "-sigint_effect", choices=sorted(EFFECTS),
                        default="stop", help="what SIGINT (and SIGTERM) do: stop after a snapshot (default), "
                                             "snapshot and go on, or nothing")
    parser.add_argument("--sighup-effect", "--sighup_effect", "-sighup_effect", choices=sorted(EFFECTS),
                        default="snapshot", help="what SIGHUP does (default: snapshot and go on)")
    parser.add_argument("--level", "-level", type=int, default=0,
                        help="the train net's level (Caffe's -level; added to the solver's train_state)")
    parser.add_argument("--stage", "-stage", default="", metavar="S1,S2",
                        help="the train net's stages, comma-separated (Caffe's -stage)")
    parser.add_argument("--device", metavar="cpu|cuda|cuda:N",
                        help="where to train; default: the solver's solver_mode/device_id (GPU if available)")
    parser.add_argument("--log-file", "--log", dest="log", metavar="FILE",
                        help="also append the log to FILE (Caffe's glog lines); spell it --log-file after "
                             "torchrun, whose own --log-dir/--log-... options an abbreviated --log would hit")
    parser.add_argument("--deterministic", action="store_true",
                        help="bit-repeatable GPU runs: cuDNN's deterministic algorithms, no autotuning")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on a terminal")
    parser.add_argument("--tensorboard", metavar="DIR",
                        help="also write loss, lr, test outputs and images/s as TensorBoard events to DIR "
                             "(needs the tensorboard package: pip install tensorboard)")
    speed.add_arguments(parser)
    parallel.add_arguments(parser)
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.solver and args.solver_flag and args.solver != args.solver_flag:
        parser.error("give the solver once (positional or --solver)")
    args.solver = args.solver or args.solver_flag
    if not args.solver:
        parser.error("the solver prototxt is required")
    if args.weights and args.snapshot:
        raise CaffeError("give a snapshot to resume training or weights to fine-tune, not both")
    if args.init_layers and not args.weights:
        raise CaffeError("--init-layers selects layers of --weights; give --weights too")
    if args.tensorboard:
        tensorboard.require()   # fail now, not after the nets are built
    return args


def train(args, rank=0, world_size=1, allreduce=None, device=None, seed=None, batch_scale=1):
    """Train as the arguments say; in a parallel job, called in every worker (vgg_caffe.train.parallel)."""
    param = read_solver(args.solver)
    if getattr(args, "level", 0):
        param.train_state.level = args.level
    param.train_state.stage.extend(s for s in getattr(args, "stage", "").split(",") if s.strip())
    layers = [n.strip() for n in args.init_layers.split(",") if n.strip()] if args.init_layers else None
    if args.weights:
        param.ClearField("weights")
        param.weights.append(args.weights)
    events = tensorboard.TensorBoardSink(args.tensorboard) if getattr(args, "tensorboard", None) and rank == 0 else None
    log = TrainingLog(path=args.log, enabled=rank == 0, progress=False if args.no_progress else None, events=events)
    actions = SignalActions(args.sigint_effect, args.sighup_effect,
                            handle_sigterm=parallel.sigterm_snapshots(world_size))
    try:
        actions.install()
        if world_size > 1:
            log.info(f"Data parallel: {world_size} processes share each batch")
        solver = Solver(param, rank=rank, world_size=world_size, allreduce=allreduce,
                        device=device or args.device, seed=seed, batch_scale=batch_scale, log=log,
                        source=args.solver, action=actions, init_layers=layers,
                        deterministic=getattr(args, "deterministic", False))
        if events is not None:
            events.images_per_iter = tensorboard.images_per_iteration(solver)
        try:
            with speed.from_arguments(args, solver.device, log.info):   # --precision, --compile
                log.info("Starting Optimization")
                solver.solve(resume_file=args.snapshot)
        finally:
            solver.close()
        return 0
    finally:
        actions.restore()
        log.close()


def main(argv=None):
    args = parse_args(argv)
    if parallel.requested(args):
        return parallel.run(args, train)
    return train(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
