"""Batches from a per-sample function, computed in-process or by prefetching worker processes.

Caffe's data layers prefetch batches on a background thread (BasePrefetchingDataLayer). Here a
sampler object says how to compute sample j of the global batch at an iteration (`sample`) and how
to stack samples into tensors (`collate`); a BatchLoader runs `sample` either inline or in a pool of
worker processes that work ahead on the next `prefetch` iterations. Since every sample is a pure
function of (seed, iteration, j), the batches are identical with and without workers, and for any
slice [start, stop) of the batch.

Workers come from a fork server (not forked from the parent: it may be a training process with
live thread pools); the server imports this package once, so each worker starts in milliseconds
instead of re-importing torch. Workers use one OpenCV thread each and and are terminated by close(), by garbage collection of the
loader, or at interpreter exit.
"""
import multiprocessing
import weakref

_SAMPLER = None


def _init_worker(sampler):
    global _SAMPLER
    import cv2
    cv2.setNumThreads(1)
    _SAMPLER = sampler


def _run_chunk(args):
    iteration, js = args
    return [_SAMPLER.sample(iteration, j) for j in js]


def _chunks(start, stop, parts):
    n = stop - start
    parts = max(1, min(parts, n))
    bounds = [start + n * i // parts for i in range(parts + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i] < bounds[i + 1]]


class BatchLoader:
    def __init__(self, sampler, batch_size, workers=0, prefetch=2):
        self.sampler, self.batch_size = sampler, int(batch_size)
        self.workers, self.prefetch = int(workers), max(0, int(prefetch))
        self.pool = None
        self.pending = {}
        self._finalizer = None

    def _start(self):
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([type(self.sampler).__module__])
        self.pool = ctx.Pool(self.workers, _init_worker, (self.sampler,))
        self._finalizer = weakref.finalize(self, _shutdown, self.pool)

    def _submit(self, iteration, start, stop):
        tasks = [(iteration, list(js)) for js in _chunks(start, stop, self.workers * 2)]
        return self.pool.map_async(_run_chunk, tasks)

    def samples(self, iteration, start=0, stop=None):
        """The per-sample payloads of samples [start, stop) at `iteration`."""
        stop = self.batch_size if stop is None else stop
        if not 0 <= start <= stop <= self.batch_size:
            raise ValueError(f"batch slice [{start}, {stop}) outside [0, {self.batch_size})")
        if self.workers <= 0:
            return [self.sampler.sample(iteration, j) for j in range(start, stop)]
        if self.pool is None:
            self._start()
        key = (iteration, start, stop)
        result = self.pending.pop(key, None) or self._submit(*key)
        # Work ahead on the next iterations of the same slice; forget stale ones.
        for old in [k for k in self.pending if k[0] < iteration or k[1:] != (start, stop)]:
            del self.pending[old]
        for ahead in range(iteration + 1, iteration + 1 + self.prefetch):
            k = (ahead, start, stop)
            if k not in self.pending:
                self.pending[k] = self._submit(*k)
        return [s for chunk in result.get() for s in chunk]

    def batch(self, iteration, start=0, stop=None):
        return self.sampler.collate(self.samples(iteration, start, stop))

    def close(self):
        self.pending.clear()
        if self._finalizer is not None:
            self._finalizer()
        self.pool = None


def _shutdown(pool):
    pool.terminate()
    pool.join()
