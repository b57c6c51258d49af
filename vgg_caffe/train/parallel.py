"""Data parallelism: the VGG paper's batch splitting over torch.distributed, one node or many.

The paper (Sec. 3.3) trains on several GPUs by splitting each batch of 256 across them,
computing the gradient of each share in parallel and averaging: the result is what one GPU
would compute. Here each worker (one process) runs forward/backward on its slice
[rank*B/W, (rank+1)*B/W) of the global batch of B samples (the net's batch_size is the global
batch), and before the update the gradients are averaged in place. Because every random draw
(augmentation, dropout masks) is keyed by (seed, iteration, global sample index) -- see
vgg_caffe.rng -- one process and W processes train the same trajectory.

Caffe's own multi-GPU semantics are behind --caffe-multi-gpu: every GPU runs the prototxt's
batch_size, so the effective batch is W*B, and the diffs are summed then divided by W. That is
the same averaging over a global batch of W*B samples, which is how it is run here: the train
net's batch sizes are multiplied by W and then split (scale_batch_size).

Launching:
  --gpus 0,1,2,3 | all   one process per GPU on this machine, NCCL
  --cpu-workers N        N CPU processes, gloo (the scheme runs and is tested without GPUs)
  torchrun ...           RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT from the
                         environment, any number of nodes; NCCL when CUDA is there, else gloo
                         (a LOCAL_RANK beyond the visible GPUs uses cuda:0 when the launcher shows each
                         worker one GPU); SIGTERM (preemption) snapshots and stops, as SIGINT
A worker that dies or hangs brings the job down with a message naming it: the process group
has a timeout (--worker-timeout), so a collective waiting on a lost peer fails instead of
blocking, and the launcher's watchdog stops the other workers as soon as one exits non-zero.
Every rank records how many collectives it has entered in a key-value store (the launcher's
TCPStore, or torchrun's), so the report names the rank(s) that never arrived rather than the
healthy ones that waited for them. NCCL runs with TORCH_NCCL_BLOCKING_WAIT=1, so its timeout
raises in the waiting rank too; a healthy rank that NCCL's watchdog aborted instead (signal 6,
where a user turned blocking wait off) is reported as having lost its peers.

The solver side of the contract (vgg_caffe.solve / vgg_caffe.train.solver):
  solve.main parses its flags plus add_arguments(parser); when requested(args) it returns
  run(args, train) where `train` is a module-level function (it must pickle for spawn) called
  in every worker as train(args, **worker_kwargs) with rank, world_size, allreduce, device,
  seed (the random_seed all workers agree on, or None = the solver's) and batch_scale (W under
  --caffe-multi-gpu, else 1). The Solver computes the slice with sample_slice, averages the
  gradients with allreduce.overlapped(params) (bucketed all-reduces launched from gradient hooks
  during the last backward of an iteration, vgg_caffe.train.overlap; allreduce(list of tensors)
  where a caller's allreduce has no `overlapped`), and only rank 0 logs and snapshots.
"""
import datetime
import os
import shutil
import tempfile
import time
import warnings

import torch
import torch.distributed as dist

from ..errors import CaffeError
from .collective import (
    DEFAULT_BUCKET_BYTES,
    DEFAULT_WORKER_TIMEOUT,
    PeerLost,
    CollectiveCounts,
    Worker,
    _buckets,
    agreed_seed,
    init_process_group,
    make_allreduce,
    read_counts,
    sample_slice,
    scale_batch_size,
)
from .workers import (
    ABORT_ENV,
    DIE_ENV,
    HANG_ENV,
    RANK_ENV,
    _failure_report,
    _forward_signals,
    _spawned,
    _stop,
    _work,
)

# The collective and worker primitives are re-exported: callers and tests use parallel.X.
__all__ = ["DEFAULT_BUCKET_BYTES", "DEFAULT_WORKER_TIMEOUT", "PeerLost", "CollectiveCounts", "Worker", "_buckets",
           "agreed_seed", "init_process_group", "make_allreduce", "read_counts", "sample_slice",
           "scale_batch_size", "ABORT_ENV", "DIE_ENV", "HANG_ENV", "RANK_ENV", "add_arguments", "requested",
           "torchrun_environment", "parse_gpus", "run", "launch", "sigterm_snapshots"]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")



def add_arguments(parser):
    """Add the parallel flags to `parser` (an argparse.ArgumentParser)."""
    g = parser.add_argument_group("data parallelism")
    g.add_argument("--gpus", "--gpu", "-gpu", metavar="IDS",
                   help="run one worker per GPU on this machine: comma-separated ids or 'all' (NCCL); "
                        "each iteration's batch is split over them")
    g.add_argument("--cpu-workers", type=int, metavar="N",
                   help="run N CPU worker processes (gloo), splitting each batch over them")
    g.add_argument("--worker-timeout", type=float, default=DEFAULT_WORKER_TIMEOUT, metavar="SECONDS",
                   help="a worker waiting this long on another one fails the job "
                        f"(default {DEFAULT_WORKER_TIMEOUT:g})")
    g.add_argument("--caffe-multi-gpu", action="store_true",
                   help="Caffe's semantics: batch_size is per worker (effective batch W*batch_size) "
                        "instead of the paper's global batch split over the workers")
    return parser


def requested(args):
    """True when the command line or the environment (torchrun) asks for more than one process."""
    gpus = getattr(args, "gpus", None)
    workers = getattr(args, "cpu_workers", None)
    if gpus is not None and workers is not None:
        raise CaffeError("--gpus and --cpu-workers exclude each other; give one")
    return gpus is not None or workers is not None or torchrun_environment() is not None


def torchrun_environment():
    """{RANK, WORLD_SIZE, LOCAL_RANK, ...} when launched by torchrun (or any env:// launcher)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    missing = [v for v in _TORCHRUN_VARS if v not in os.environ]
    if missing:
        raise CaffeError(f"RANK and WORLD_SIZE are set but {', '.join(missing)} are not: launch with "
                         "torchrun (which sets all of them) or set them yourself")
    env = {}
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        try:
            env[v] = int(os.environ[v])
        except ValueError:
            raise CaffeError(f"environment variable {v}={os.environ[v]!r} is not an integer") from None
    if not 0 <= env["RANK"] < env["WORLD_SIZE"]:
        raise CaffeError(f"RANK={env['RANK']} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={env['WORLD_SIZE']})")
    env["MASTER_ADDR"], env["MASTER_PORT"] = os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]
    return env


def parse_gpus(text):
    """'0,1,3' -> [0, 1, 3]; 'all' -> every visible GPU. Checked against what CUDA sees."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if text.strip().lower() == "all":
        if count == 0:
            raise CaffeError("--gpus all: no CUDA GPU is visible (use --cpu-workers N to run on CPUs)")
        return list(range(count))
    try:
        ids = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise CaffeError(f"--gpus {text!r}: expected comma-separated GPU ids (0,1,2) or 'all'") from None
    if not ids:
        raise CaffeError("--gpus: no GPU id given")
    if len(set(ids)) != len(ids):
        raise CaffeError(f"--gpus {text}: a GPU is listed twice")
    bad = [i for i in ids if not 0 <= i < count]
    if bad:
        raise CaffeError(f"--gpus {text}: no GPU {bad[0]} (CUDA sees {count} GPU(s))")
    return ids




def run(args, train_fn):
    """Run train_fn(args, **worker_kwargs) on every worker the flags or torchrun ask for.

    Under torchrun this process is one worker. Otherwise it is the launcher: it spawns the
    workers, watches them, and returns 0 when all succeed; a failed worker gets a CaffeError
    naming it (and the others are stopped).
    """
    timeout = float(getattr(args, "worker_timeout", DEFAULT_WORKER_TIMEOUT) or DEFAULT_WORKER_TIMEOUT)
    if timeout <= 0:
        raise CaffeError(f"--worker-timeout {timeout:g}: expected a positive number of seconds")
    caffe_semantics = bool(getattr(args, "caffe_multi_gpu", False))
    env = torchrun_environment()
    if env is not None and getattr(args, "gpus", None) is None and getattr(args, "cpu_workers", None) is None:
        return _run_torchrun(args, train_fn, env, timeout, caffe_semantics)
    if env is not None:
        raise CaffeError("under torchrun, leave out --gpus/--cpu-workers: torchrun starts the workers")
    if getattr(args, "gpus", None) is not None:
        gpus = parse_gpus(args.gpus)
        if getattr(args, "device", None):
            warnings.warn(f"--device {args.device} is ignored with --gpus {args.gpus}: worker r runs on "
                          "the r-th GPU listed", stacklevel=2)
        threads = _threads_per_worker(len(gpus))
        workers = [Worker(r, len(gpus), r, f"cuda:{g}", "nccl", timeout, caffe_semantics, threads=threads)
                   for r, g in enumerate(gpus)]
    else:
        n = args.cpu_workers
        if n is None or n < 1:
            raise CaffeError(f"--cpu-workers {n}: expected a positive number of workers")
        threads = _threads_per_worker(n)
        workers = [Worker(r, n, r, "cpu", "gloo", timeout, caffe_semantics, threads=threads) for r in range(n)]
    return launch(train_fn, args, workers)


def _threads_per_worker(n):
    """The cores shared out between n workers (so they do not oversubscribe the machine), unless
    the user chose with OMP_NUM_THREADS."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, (os.cpu_count() or 1) // n)


def _run_torchrun(args, train_fn, env, timeout, caffe_semantics):
    local = env["LOCAL_RANK"]
    wants_cpu = str(getattr(args, "device", None) or "").startswith("cpu")
    if torch.cuda.is_available() and not wants_cpu:
        device = local_cuda_device(local, env["RANK"])
        worker = Worker(env["RANK"], env["WORLD_SIZE"], local, device, "nccl", timeout, caffe_semantics)
    else:
        worker = Worker(env["RANK"], env["WORLD_SIZE"], local, "cpu", "gloo", timeout, caffe_semantics)
    return _work(worker, "env://", train_fn, args)


def local_cuda_device(local_rank, rank=None):
    """The GPU of a torchrun worker: cuda:LOCAL_RANK, or cuda:0 when the launcher gave each task
    one GPU (LOCAL_RANK beyond the visible GPUs and exactly one visible, as Slurm's per-task
    binding does, which sets CUDA_VISIBLE_DEVICES per task); a CaffeError otherwise, instead of
    CUDA's "invalid device ordinal" or NCCL's duplicate-GPU failure."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if 0 <= local_rank < count:
        return f"cuda:{local_rank}"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    # One GPU each: the launcher set CUDA_VISIBLE_DEVICES per task. Without it, every local
    # worker sees the same GPU, and NCCL refuses two ranks on one device.
    if count == 1 and visible is not None:
        return "cuda:0"
    shown = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else " (CUDA_VISIBLE_DEVICES unset)"
    who = f"rank {rank}: " if rank is not None else ""
    raise CaffeError(f"{who}LOCAL_RANK={local_rank} but this process sees {count} GPU(s){shown}: start at "
                     f"most {count} worker(s) per node (torchrun --nproc-per-node {count}), or give each "
                     "worker exactly one GPU")


def sigterm_snapshots(world_size):
    """Whether SIGTERM should act as SIGINT (snapshot and stop) in this training process: alone,
    or as a torchrun worker (clusters preempt with SIGTERM, which torchrun passes on). Workers
    this launcher spawned get SIGINT for the user's SIGTERM, and SIGTERM only to stop now."""
    return world_size == 1 or torchrun_environment() is not None


def launch(train_fn, args, workers, poll=0.05, grace=5.0):
    """Start one process per Worker, wait for all; on the first failure stop the rest and raise.

    Rendezvous is a FileStore in a private temporary directory (no port to pick or collide on).
    Each worker leaves a small JSON status file saying how it ended, so the report can tell
    the worker that failed first from those that failed because they lost it.
    Signals: the workers run in their own process group, so a terminal's Ctrl-C reaches only
    this launcher, which passes SIGINT (and SIGTERM, as SIGINT) and SIGHUP on to every worker
    once: the solver's --sigint-effect / --sighup-effect then apply to the whole job (all ranks
    agree on the request at the next iteration). A second SIGINT or SIGTERM stops the workers at once.
    """
    ctx = torch.multiprocessing.get_context("spawn")
    rundir = tempfile.mkdtemp(prefix="vgg_caffe_dist_")
    init_method = "file://" + os.path.join(rundir, "store")
    procs = []
    progress = _progress_store()
    restore = _forward_signals(procs)
    try:
        for w in workers:
            if progress is not None:
                w.progress_addr = ("127.0.0.1", progress.port)
            p = ctx.Process(target=_spawned, args=(w, init_method, train_fn, args, rundir, os.getpid()),
                            name=f"vgg_caffe-rank{w.rank}", daemon=False)
            p.start()
            procs.append(p)
        failed_at = None
        while True:
            codes = [p.exitcode for p in procs]
            if all(c == 0 for c in codes):
                return 0
            if any(c not in (None, 0) for c in codes):
                failed_at = failed_at or time.monotonic()
                # Give the others a moment to notice and report; then stop them.
                if all(c is not None for c in codes) or time.monotonic() - failed_at > grace:
                    break
            time.sleep(poll)
        counts = _counts(progress, len(workers))
        stopped = {workers[i].rank for i in _stop(procs)}
        raise CaffeError(_failure_report(workers, procs, stopped, rundir, counts))
    except BaseException:
        _stop(procs)
        raise
    finally:
        restore()
        shutil.rmtree(rundir, ignore_errors=True)


def _progress_store():
    """A TCPStore on a free loopback port where the workers record the collectives they enter
    (collective.CollectiveCounts); None where one cannot be opened (the report then says less)."""
    try:
        return dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False,
                             timeout=datetime.timedelta(seconds=30))
    except (RuntimeError, ValueError, dist.DistError):
        return None


def _counts(store, world_size):
    if store is None:
        return None
    try:
        return read_counts(store, world_size)
    except (RuntimeError, dist.DistError):
        return None


