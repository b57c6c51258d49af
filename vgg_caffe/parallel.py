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
A worker that dies or hangs brings the job down with a message naming it: the process group
has a timeout (--worker-timeout), so a collective waiting on a lost peer fails instead of
blocking, and the launcher's watchdog stops the other workers as soon as one exits non-zero.

The solver side of the contract (vgg_caffe.solve / vgg_caffe.solver):
  solve.main parses its flags plus add_arguments(parser); when requested(args) it returns
  run(args, train) where `train` is a module-level function (it must pickle for spawn) called
  in every worker as train(args, **worker_kwargs) with rank, world_size, allreduce, device,
  seed (the random_seed all workers agree on, or None = the solver's) and batch_scale (W under
  --caffe-multi-gpu, else 1). The Solver computes the slice with sample_slice, calls
  allreduce(list of grad tensors) before the update, and only rank 0 logs and snapshots.
"""
import dataclasses
import datetime
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time

import torch
import torch.distributed as dist

from .errors import CaffeError

DEFAULT_WORKER_TIMEOUT = 600.0  # seconds; long enough for rank 0 to write a VGG-16 snapshot
DEFAULT_BUCKET_BYTES = 64 << 20  # all-reduce buffers of ~64 MB: few calls, bounded extra memory
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

# Test hooks (read in the worker): make rank VGG_CAFFE_TEST_RANK (default 1) exit with status 3,
# or sleep forever, just before its Nth all-reduce (0-based) in this run: the solver makes one per
# iteration (gradients and statistics together), plus one per test pass.
DIE_ENV, HANG_ENV, RANK_ENV = "VGG_CAFFE_TEST_DIE_AT_ITER", "VGG_CAFFE_TEST_HANG_AT_ITER", "VGG_CAFFE_TEST_RANK"
_DIE_STATUS = 3


# ----------------------------------------------------------------------------------------------
# Command-line flags (parsed by vgg_caffe.solve, interpreted here)
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# Splitting the batch
# ----------------------------------------------------------------------------------------------

def sample_slice(total, rank, world_size, what="batch_size", even=True):
    """[start, stop) of the global batch of `total` samples that `rank` of `world_size` computes.

    Training needs equal shares (the averaged gradient is then the batch's); `even=False` allows
    shares differing by one sample (test passes, whose outputs the solver weighs by share), so
    the paper's validation batch of 50 still runs on 4 GPUs.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise CaffeError(f"rank {rank} is outside a world of {world_size} worker(s)")
    if even and total % world_size:
        raise CaffeError(f"{what} {total} does not divide over {world_size} workers: use a batch "
                         f"size that is a multiple of {world_size} (e.g. {total - total % world_size or world_size})")
    if total < world_size:
        raise CaffeError(f"{what} {total} is smaller than the {world_size} workers sharing it")
    return rank * total // world_size, (rank + 1) * total // world_size


_BATCH_FIELDS = ("data_param", "hdf5_data_param", "image_data_param")


def scale_batch_size(net_param, factor, phase=None):
    """A copy of `net_param` whose data layers deliver `factor` times their batch (Caffe's
    multi-GPU effective batch). Touches the batch_size of Data/HDF5Data/ImageData, the first dim
    of Input shapes, and a `batch_size` key in a Python layer's param_str; layers excluded from
    `phase` (a pb.Phase value) by a phase rule are left alone."""
    from .proto import pb

    out = pb.NetParameter()
    out.CopyFrom(net_param)
    if factor == 1:
        return out
    for layer in out.layer:
        if phase is not None and len(layer.include) and all(r.HasField("phase") and r.phase != phase
                                                            for r in layer.include):
            continue
        for field in _BATCH_FIELDS:
            if layer.HasField(field) and getattr(layer, field).HasField("batch_size"):
                getattr(layer, field).batch_size *= factor
        if layer.type == "Input":
            for shape in layer.input_param.shape:
                if len(shape.dim):
                    shape.dim[0] *= factor
        if layer.type == "Python" and layer.python_param.param_str:
            layer.python_param.param_str = _scale_param_str(layer, factor)
    return out


def _scale_param_str(layer, factor):
    text = layer.python_param.param_str
    try:  # JSON param_str (the convention of this project's Python layers)
        value = json.loads(text)
        if isinstance(value, dict) and "batch_size" in value:
            value["batch_size"] = int(value["batch_size"]) * factor
            compact = ": " not in text and ", " not in text       # keep the writer's layout
            return json.dumps(value, separators=(",", ":") if compact else None)
        return text
    except (ValueError, TypeError):
        pass
    # key: value / key=value styles
    return re.sub(r"(['\"]?batch_size['\"]?\s*[:=]\s*)(\d+)",
                  lambda m: m.group(1) + str(int(m.group(2)) * factor), text)


# ----------------------------------------------------------------------------------------------
# Averaging gradients
# ----------------------------------------------------------------------------------------------

def make_allreduce(group=None, bucket_bytes=DEFAULT_BUCKET_BYTES, before=None):
    """A function averaging a list of tensors in place across the processes of `group`.

    Tensors are packed into a few flat buffers (one per device and dtype, split at
    `bucket_bytes`), each reduced with one all_reduce (SUM) issued asynchronously so buffers
    overlap on the wire, then divided by the world size and copied back: Caffe's "sum the
    diffs, divide by the number of solvers". `before(call_index)` runs first on each call
    (failure-test hooks). With one process it only runs the hook.
    """
    world = dist.get_world_size(group) if dist.is_initialized() else 1
    calls = [0]

    def allreduce(tensors):
        if before is not None:
            before(calls[0])
        calls[0] += 1
        tensors = [t for t in tensors if t is not None]
        if world == 1 or not tensors:
            return tensors
        buckets = _buckets(tensors, bucket_bytes)
        try:
            pending = []
            for bucket in buckets:
                alone = len(bucket) == 1 and bucket[0].is_contiguous()   # reduce it where it lies
                flat = bucket[0].view(-1) if alone else torch.cat([t.reshape(-1) for t in bucket])
                pending.append((bucket, flat, alone, dist.all_reduce(flat, group=group, async_op=True)))
            for bucket, flat, alone, work in pending:
                work.wait()
                flat.div_(world)
                if not alone:
                    pieces = flat.split([t.numel() for t in bucket])
                    torch._foreach_copy_(bucket, [p.view_as(t) for p, t in zip(pieces, bucket)])
        except (RuntimeError, dist.DistError) as e:  # a lost or hung peer surfaces here
            raise PeerLost(f"rank {dist.get_rank(group)}: all-reduce number {calls[0] - 1} failed; "
                           f"another worker died or stopped responding: {_first_line(e)}") from e
        return tensors

    allreduce.world_size = world
    return allreduce


def _buckets(tensors, bucket_bytes):
    """Group tensors by (device, dtype) keeping their order, cutting a group at bucket_bytes."""
    groups = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    buckets = []
    for same in groups.values():
        current, size = [], 0
        for t in same:
            nbytes = t.numel() * t.element_size()
            if current and size + nbytes > bucket_bytes:
                buckets.append(current)
                current, size = [], 0
            current.append(t)
            size += nbytes
        if current:
            buckets.append(current)
    return buckets


def agreed_seed(seed, device="cpu"):
    """`seed` when >= 0; otherwise a random seed drawn by rank 0 and shared with every process
    (Caffe's random_seed -1 means "random", but the workers must draw the same numbers)."""
    if seed is not None and seed >= 0:
        return int(seed)
    value = torch.tensor([secrets.randbits(62)], dtype=torch.int64, device=device)
    if dist.is_initialized():
        dist.broadcast(value, src=0)
    return int(value.item())


class PeerLost(CaffeError):
    """A collective failed because another worker died, hung, or timed out."""


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ----------------------------------------------------------------------------------------------
# Who am I
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Worker:
    """One process of the job: its place and what it computes on."""
    rank: int
    world_size: int
    local_rank: int
    device: str            # "cpu" or "cuda:N"
    backend: str           # "gloo" or "nccl"
    timeout: float = DEFAULT_WORKER_TIMEOUT
    caffe_multi_gpu: bool = False
    seed: int = None       # the random_seed every worker agrees on (None until agreed)
    threads: int = None    # torch intra-op threads for CPU workers (None: leave torch's choice)

    def solver_kwargs(self, allreduce):
        """Keyword arguments for solve.train(args, **kwargs) (see the module docstring)."""
        return dict(rank=self.rank, world_size=self.world_size, allreduce=allreduce, device=self.device,
                    seed=self.seed, batch_scale=self.world_size if self.caffe_multi_gpu else 1)


def init_process_group(worker, init_method):
    """Join the job's process group, with the timeout that turns a lost peer into an error."""
    if worker.device.startswith("cuda"):
        torch.cuda.set_device(torch.device(worker.device))
    kwargs = dict(backend=worker.backend, init_method=init_method, rank=worker.rank,
                  world_size=worker.world_size, timeout=datetime.timedelta(seconds=worker.timeout))
    if worker.backend == "nccl":
        kwargs["device_id"] = torch.device(worker.device)
    try:
        dist.init_process_group(**kwargs)
    except (RuntimeError, ValueError, dist.DistError) as e:
        raise CaffeError(f"rank {worker.rank}: could not join the process group ({init_method}, "
                         f"{worker.backend}, timeout {worker.timeout:g}s): {_first_line(e)}") from e


# ----------------------------------------------------------------------------------------------
# Running: torchrun, or our own launcher with a watchdog
# ----------------------------------------------------------------------------------------------

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
        worker = Worker(env["RANK"], env["WORLD_SIZE"], local, f"cuda:{local}", "nccl", timeout, caffe_semantics)
    else:
        worker = Worker(env["RANK"], env["WORLD_SIZE"], local, "cpu", "gloo", timeout, caffe_semantics)
    return _work(worker, "env://", train_fn, args)


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
    restore = _forward_signals(procs)
    try:
        for w in workers:
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
        stopped = {workers[i].rank for i in _stop(procs)}
        raise CaffeError(_failure_report(workers, procs, stopped, rundir))
    except BaseException:
        _stop(procs)
        raise
    finally:
        restore()
        shutil.rmtree(rundir, ignore_errors=True)


def _forward_signals(procs):
    """Install the launcher's signal handlers (main thread only); returns a function undoing it."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    interrupts = [0]

    def forward(sig, frame):
        if sig != getattr(signal, "SIGHUP", None):
            interrupts[0] += 1
            if interrupts[0] > 1:   # the user insists: stop everything now
                raise KeyboardInterrupt
            sig = signal.SIGINT
        for p in procs:
            if p.exitcode is None and p.pid is not None:
                try:
                    os.kill(p.pid, sig)
                except OSError:
                    pass

    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {n: signal.signal(getattr(signal, n), forward) for n in names}
    return lambda: [signal.signal(getattr(signal, n), h) for n, h in previous.items()]


def _stop(procs, wait=5.0):
    """Terminate what is still running (SIGTERM, then SIGKILL); return their indices."""
    stopped = [i for i, p in enumerate(procs) if p.exitcode is None and p.pid is not None]
    for i in stopped:
        procs[i].terminate()
    deadline = time.monotonic() + wait
    for i in stopped:
        procs[i].join(max(0.0, deadline - time.monotonic()))
        if procs[i].exitcode is None:
            procs[i].kill()
            procs[i].join(wait)
    return stopped


def _failure_report(workers, procs, stopped, rundir):
    statuses = {}
    for w in workers:
        try:
            with open(os.path.join(rundir, f"rank{w.rank}.json")) as f:
                statuses[w.rank] = json.load(f)
        except (OSError, ValueError):
            pass
    primary, secondary = [], []
    for w, p in zip(workers, procs):
        st = statuses.get(w.rank)
        if w.rank in stopped:
            continue
        code = p.exitcode
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        if st is None:
            if code != 0:
                primary.append(f"rank {w.rank} died ({how}) without reporting an error")
        elif st.get("peer_lost"):
            secondary.append(f"rank {w.rank} lost its peers: {st['error']}")
        elif code != 0:
            primary.append(f"rank {w.rank} failed ({how}): {st.get('error', '?')}")
    if not primary:  # only peer losses: the culprit is a worker that hung and had to be stopped
        hung = [w.rank for w, p in zip(workers, procs) if w.rank in stopped]
        if hung:
            primary.append("rank(s) " + ", ".join(map(str, hung)) + " stopped responding "
                           f"(no progress within --worker-timeout {workers[0].timeout:g}s)")
    elif stopped:
        secondary.append("stopped after the failure: rank(s) " + ", ".join(map(str, sorted(stopped))))
    if len(primary) > 1 and len({p.split(": ", 1)[-1] for p in primary}) == 1 and len(primary) == len(workers):
        primary = [f"every worker failed the same way: {primary[0].split(': ', 1)[-1]}"]
    lines = [f"data-parallel training failed ({len(workers)} workers): " + "; ".join(primary or ["unknown cause"])]
    lines += ["  " + s for s in secondary]
    return "\n".join(lines)


def _spawned(worker, init_method, train_fn, args, rundir, launcher_pid):
    """Entry point of a spawned worker process: run, record how it ended, exit with a status."""
    status_path = os.path.join(rundir, f"rank{worker.rank}.json")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop cleanly when the launcher says so
    os.setpgrp()                      # terminal signals go to the launcher, which forwards them once
    _exit_with_launcher(launcher_pid)
    if worker.threads:
        torch.set_num_threads(worker.threads)
    try:
        _work(worker, init_method, train_fn, args)
    except PeerLost as e:  # the launcher's report carries the message (once, with the others')
        _write_status(status_path, str(e), peer_lost=True)
        sys.exit(2)
    except CaffeError as e:
        _write_status(status_path, str(e))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BaseException as e:
        if isinstance(e, SystemExit) and e.code in (0, None):
            raise
        _write_status(status_path, f"{type(e).__name__}: {_first_line(e)}")
        raise


def _exit_with_launcher(launcher_pid):
    """Do not outlive the launcher (it may be killed outright): the kernel's parent-death signal
    on Linux, else a thread watching for a new parent."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:   # PR_SET_PDEATHSIG
            if os.getppid() != launcher_pid:              # it died before we got here
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass
    import threading

    def watch():
        while os.getppid() == launcher_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


def _write_status(path, error, peer_lost=False):
    from .fileio import atomic_write

    try:
        atomic_write(path, json.dumps({"error": error, "peer_lost": peer_lost, "time": time.time()}))
    except CaffeError:  # the launcher then reports the exit status alone
        pass


def _work(worker, init_method, train_fn, args):
    """Join the group, agree on the seed, run the training function, leave the group."""
    init_process_group(worker, init_method)
    try:
        worker.seed = _job_seed(args, worker)
        allreduce = make_allreduce(before=_test_hook(worker.rank))
        result = train_fn(args, **worker.solver_kwargs(allreduce))
        return result
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _job_seed(args, worker):
    """The random_seed of the solver named by args.solver, agreed by all workers when it is -1
    (random); None when there is no solver file to read (the caller's own seeding applies)."""
    path = getattr(args, "solver", None)
    if not isinstance(path, (str, os.PathLike)):
        return None
    from .proto import read_solver
    return agreed_seed(read_solver(path).random_seed, "cpu" if worker.backend == "gloo" else worker.device)


def _test_hook(rank):
    """The failure-injection hook named by the VGG_CAFFE_TEST_* variables, or None."""
    die, hang = os.environ.get(DIE_ENV), os.environ.get(HANG_ENV)
    if die is None and hang is None:
        return None
    target = int(os.environ.get(RANK_ENV, "1"))
    if rank != target:
        return None

    def hook(call):
        if die is not None and call == int(die):
            print(f"rank {rank}: {DIE_ENV}={die}: exiting with status {_DIE_STATUS}", file=sys.stderr, flush=True)
            os._exit(_DIE_STATUS)
        if hang is not None and call == int(hang):
            print(f"rank {rank}: {HANG_ENV}={hang}: hanging", file=sys.stderr, flush=True)
            while True:
                time.sleep(3600)
    return hook
