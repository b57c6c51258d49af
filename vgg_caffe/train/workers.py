"""Worker processes of a parallel run: spawning them, forwarding signals, watching for a dead or
hung peer and reporting it by rank, and the test hooks that make a worker die or hang on purpose.
"""
import datetime
import json
import os
import signal
import sys
import time

import torch
import torch.distributed as dist

from ..errors import CaffeError, first_line
from .collective import (
    PeerLost,
    CollectiveCounts,
    agreed_seed,
    init_process_group,
    laggards,
    make_allreduce,
)

# Test hooks (read in the worker): make rank VGG_CAFFE_TEST_RANK (default 1) exit with status 3,
# or sleep forever, just before its Nth all-reduce (0-based) in this run: the solver makes one per
# iteration (gradients and statistics together), plus one per test pass.
DIE_ENV, HANG_ENV, RANK_ENV = "VGG_CAFFE_TEST_DIE_AT_ITER", "VGG_CAFFE_TEST_HANG_AT_ITER", "VGG_CAFFE_TEST_RANK"
# And: a rank that loses its peers aborts (SIGABRT, no status) as NCCL's watchdog makes it do.
ABORT_ENV = "VGG_CAFFE_TEST_ABORT_ON_PEER_LOSS"
_DIE_STATUS = 3


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


def _failure_report(workers, procs, stopped, rundir, counts=None):
    """The launcher's message: who failed first, who only lost its peers. `counts` ({rank: phases
    entered}, from the CollectiveCounts store) names the ranks that never reached the collective the
    others waited in; a rank killed by SIGABRT while ahead of them is a healthy one that NCCL's
    watchdog aborted after the timeout, not a culprit."""
    behind, phase = laggards(counts or {})
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
            if code == -signal.SIGABRT and behind and w.rank not in behind:
                secondary.append(f"rank {w.rank} lost its peers: aborted (signal 6, NCCL's watchdog) waiting "
                                 f"in collective #{phase}")
            elif code != 0:
                primary.append(f"rank {w.rank} died ({how}) without reporting an error")
        elif st.get("peer_lost"):
            secondary.append(f"rank {w.rank} lost its peers: {st['error']}")
        elif code != 0:
            primary.append(f"rank {w.rank} failed ({how}): {st.get('error', '?')}")
    if not primary:  # only peer losses: the culprit is a worker that hung and had to be stopped
        hung = behind or [w.rank for w, p in zip(workers, procs) if w.rank in stopped]
        where = f"did not reach collective #{phase}; " if behind else ""
        if hung:
            primary.append("rank(s) " + ", ".join(map(str, hung)) + " stopped responding "
                           f"({where}no progress within --worker-timeout {workers[0].timeout:g}s)")
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
        if os.environ.get(ABORT_ENV):   # test hook: die as NCCL's watchdog kills a waiting rank
            os.abort()
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
        _write_status(status_path, f"{type(e).__name__}: {first_line(e)}")
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
    from ..fileio import atomic_write

    try:
        atomic_write(path, json.dumps({"error": error, "peer_lost": peer_lost, "time": time.time()}))
    except CaffeError:  # the launcher then reports the exit status alone
        pass


def _work(worker, init_method, train_fn, args):
    """Join the group, agree on the seed, run the training function, leave the group."""
    init_process_group(worker, init_method)
    try:
        worker.seed = _job_seed(args, worker)
        allreduce = make_allreduce(before=_test_hook(worker.rank), progress=_progress(worker))
        result = train_fn(args, **worker.solver_kwargs(allreduce))
        return result
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _progress(worker):
    """The CollectiveCounts record of this worker: in the launcher's store, or under torchrun in the
    group's own store (a TCPStore: a value set per collective overwrites in memory)."""
    try:
        if worker.progress_addr is not None:
            host, port = worker.progress_addr
            store = dist.TCPStore(host, port, is_master=False, timeout=datetime.timedelta(seconds=60))
            store.set_timeout(datetime.timedelta(seconds=10))
        else:   # the group's store keeps its own timeout: CollectiveCounts reads only keys that exist
            from torch.distributed import distributed_c10d
            store = distributed_c10d._get_default_store()
            if isinstance(store, dist.FileStore):   # would grow by a record per collective
                return None
        return CollectiveCounts(store, worker.rank, worker.world_size)
    except (RuntimeError, ValueError, AttributeError, dist.DistError):
        return None   # no store: the report then says less, training is unaffected


def _job_seed(args, worker):
    """The random_seed of the solver named by args.solver, agreed by all workers when it is -1
    (random); None when there is no solver file to read (the caller's own seeding applies)."""
    path = getattr(args, "solver", None)
    if not isinstance(path, (str, os.PathLike)):
        return None
    from ..proto import read_solver
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
            signal.signal(signal.SIGTERM, signal.SIG_DFL)   # a launcher's SIGTERM ends the hung rank
            while True:
                time.sleep(3600)
    return hook
