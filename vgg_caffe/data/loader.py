"""Batches from a per-sample function, computed in-process or by prefetching worker processes.

Caffe's data layers prefetch batches on a background thread (BasePrefetchingDataLayer), into
pinned host memory when the solver runs on a GPU. Here a sampler object says how to compute sample
j of the global batch at an iteration (`sample`, or optionally `samples` for several j at once,
which a sampler may do faster: vgg_layer.VGGSampler) and how to stack samples into tensors
(`collate`); a BatchLoader runs them either inline or in a pool of worker processes that work
ahead on the next `prefetch` iterations (each worker task is a chunk of samples). With workers, a background thread also collates the
batches ahead (and pins them when `pin_memory`), so the training process only takes a finished
batch. Since every sample is a pure function of (seed, iteration, j), the batches are identical
with and without workers, and for any slice [start, stop) of the batch.

`workers` may be "auto" (None): 0 until the solver configures the loader for its device
(vgg_caffe.train.devices: on a GPU, the cores shared among the ranks). `cycle`: the iterations
come round in a cycle of that many (a test net runs batches 0..test_iter-1 at every test pass),
so the work ahead after the last batch is batch 0 of the next pass.

Workers come from a fork server (not forked from the parent: it may be a training process with
live thread pools); the server imports this package once, so each worker starts in milliseconds
instead of re-importing torch. Workers use one OpenCV thread each and are terminated by close(), by
garbage collection of the loader, or at interpreter exit. The pool is concurrent.futures'
ProcessPoolExecutor, not multiprocessing.Pool: Pool's worker-handler thread also waits on the
result pipe, so while a chunk of crops (megabytes) is being read it wakes without end, and took
three to four times the workers' own CPU time in the training process (bench_data_layer); a
worker that dies also fails the batch (BrokenProcessPool) instead of leaving it waiting.
"""
import concurrent.futures
import concurrent.futures.process
import multiprocessing
import weakref

from ..errors import CaffeError

_SAMPLER = None


def _init_worker(sampler):
    global _SAMPLER
    import cv2
    cv2.setNumThreads(1)
    _SAMPLER = sampler


def _run_chunk(args):
    iteration, js = args
    return _samples(_SAMPLER, iteration, js)


def _samples(sampler, iteration, js):
    """sampler.samples(iteration, js) where the sampler batches the work of several samples, else
    one sample() each (the same payloads either way)."""
    many = getattr(sampler, "samples", None)
    return many(iteration, js) if many else [sampler.sample(iteration, j) for j in js]


def _chunks(start, stop, parts):
    n = stop - start
    parts = max(1, min(parts, n))
    bounds = [start + n * i // parts for i in range(parts + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i] < bounds[i + 1]]


def _pids(pool):
    # ProcessPoolExecutor keeps its processes in a private dict (Python 3.14 adds
    # terminate_workers); without it there is nothing more to stop than shutdown() stops.
    return dict(getattr(pool, "_processes", None) or {})


def _pinned(tensors):
    return [t.pin_memory() if hasattr(t, "pin_memory") else t for t in tensors]


class _Pending:
    """A batch being computed: the pool's chunks, collated (and pinned) by the loader's thread."""

    def __init__(self, future):
        self.future = future

    def result(self):
        return self.future.result()

    def wait(self):
        concurrent.futures.wait([self.future])


class BatchLoader:
    def __init__(self, sampler, batch_size, workers=0, prefetch=2, pin_memory=False, cycle=None):
        self.sampler, self.batch_size = sampler, int(batch_size)
        self.auto = workers is None or workers == "auto"
        self.workers = 0 if self.auto else int(workers)
        self.prefetch = max(0, int(prefetch))
        self.pin_memory, self.cycle = bool(pin_memory), cycle
        self.pool = None
        self.thread = None
        self.pending = {}
        self._finalizer = None
        self._closed = [False]   # shared with the collating thread: stop waiting on a closed pool

    def configure(self, workers=None, pin_memory=None, cycle=None):
        """The solver's settings for its device: `workers` replaces an "auto" count (an explicit
        count stays), `pin_memory` and `cycle` (see the module docstring) apply as given."""
        if self.pool is not None:
            return
        if self.auto and workers is not None:
            self.workers = int(workers)
        if pin_memory is not None:
            self.pin_memory = bool(pin_memory)
        if cycle:
            self.cycle = int(cycle)

    def _start(self):
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([type(self.sampler).__module__])
        self.pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                                           initargs=(self.sampler,))
        # One thread collates (and pins) the batches the pool computes, ahead of their use.
        self.thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="batch-collate")
        self._closed = [False]
        self._finalizer = weakref.finalize(self, _shutdown, self.pool, self.thread, self._closed)

    def _submit(self, iteration, start, stop):
        chunks = [self.pool.submit(_run_chunk, (iteration, list(js))) for js in _chunks(start, stop, self.workers * 2)]
        return _Pending(self.thread.submit(_finish, chunks, self.sampler.collate, self.pin_memory, self._closed))

    def _ahead(self, iteration):
        """The iterations to work on after `iteration`."""
        if self.cycle:   # each other batch of the cycle at most once
            return [(iteration + d) % self.cycle for d in range(1, 1 + min(self.prefetch, self.cycle - 1))]
        return [iteration + d for d in range(1, 1 + self.prefetch)]

    def batch(self, iteration, start=0, stop=None):
        """The collated tensors of samples [start, stop) at `iteration`."""
        stop = self.batch_size if stop is None else stop
        if not 0 <= start <= stop <= self.batch_size:
            raise ValueError(f"batch slice [{start}, {stop}) outside [0, {self.batch_size})")
        if self.workers <= 0:
            batch = self.sampler.collate(_samples(self.sampler, iteration, range(start, stop)))
            return _pinned(batch) if self.pin_memory else batch
        if self.pool is None:
            self._start()
        key = (iteration, start, stop)
        result = self.pending.pop(key, None) or self._submit(*key)
        ahead = [(k, start, stop) for k in self._ahead(iteration)]
        # Forget work that will not be asked for (another slice, or iterations left behind).
        for old in [k for k in self.pending if k not in ahead]:
            del self.pending[old]
        for k in ahead:
            if k not in self.pending:
                self.pending[k] = self._submit(*k)
        return result.result()

    def samples(self, iteration, start=0, stop=None):
        """The per-sample payloads of samples [start, stop) at `iteration`, computed inline."""
        stop = self.batch_size if stop is None else stop
        return _samples(self.sampler, iteration, range(start, stop))

    def worker_pids(self):
        """The process ids of the worker processes running now (none before the first batch)."""
        return sorted(_pids(self.pool)) if self.pool is not None else []

    def close(self):
        self.pending.clear()
        if self._finalizer is not None:
            self._finalizer()
        self.pool = self.thread = None


def _finish(chunks, collate, pin, closed):
    samples = []
    for chunk in chunks:
        while True:   # a terminated pool may never complete: look at `closed` meanwhile
            if closed[0]:
                raise RuntimeError("the batch loader was closed")
            try:
                samples += chunk.result(timeout=0.05)
                break
            except concurrent.futures.TimeoutError:
                continue
            except concurrent.futures.process.BrokenProcessPool:
                raise CaffeError("a data worker process died while making a batch (killed, or out of "
                                 "memory?); with workers 0 the layer decodes in the training process") from None
    batch = collate(samples)
    return _pinned(batch) if pin else batch


def _shutdown(pool, thread, closed):
    closed[0] = True
    thread.shutdown(wait=False, cancel_futures=True)
    processes = _pids(pool).values()
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:   # chunks under way are not waited for
        p.terminate()
    for p in processes:
        p.join()
