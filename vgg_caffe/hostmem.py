"""Host memory that later passes reuse, as Caffe's blobs reuse theirs.

Caffe allocates each blob's memory once (SyncedMemory, on first use) and every later pass writes
into the same bytes. A torch graph asks for fresh tensors on every pass, and glibc's malloc serves
each request above its mmap threshold (dynamic, at most 32 MB) with a fresh mmap() that it unmaps
again on free(): every pass of a large net then faults in new, zero-filled pages. A VGG-16 bf16
training step at batch 8 took ~300,000 minor page faults (1.2 GB of zeroed pages), 20-30 % of the
step on two cores (~180,000 since its fc layers train in float32, vgg_caffe.islands); a
hand-written torch model in the same process pays the same.

reuse_freed_memory() raises malloc's mmap threshold (M_MMAP_THRESHOLD, 1 GiB) and its trim
threshold (M_TRIM_THRESHOLD, 2 GiB), so freed blocks stay in the heap and the next pass reuses
them: no page faults in steady state, the effect of a caching allocator (CUDA's caching
allocator does the same on GPUs; jemalloc or tcmalloc preloaded would too). It is applied once per
process when the first Net is built; VGG_CAFFE_MALLOC=system leaves malloc as it is. Only glibc has
these knobs (elsewhere nothing happens). The setting is process-wide -- every large allocation of
the process benefits, a torch model's next to ours as well -- and memory a pass freed is kept for
the next instead of going back to the system: free_bytes() says how much, and the memory checks
(vgg_caffe.machine) count it as available to this process.
"""
import ctypes
import ctypes.util
import functools
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
# Tried in order: older glibc (before 2.35) refuses an mmap threshold above HEAP_MAX_SIZE / 2.
MMAP_THRESHOLDS = (1 << 30, 32 << 20)
TRIM_THRESHOLD = (1 << 31) - 1     # mallopt takes an int

_STATE = {"applied": None}


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@functools.lru_cache(maxsize=1)
def _libc():
    """glibc, or None. Looked up once: find_library runs ldconfig, and free_bytes is called by
    every memory check."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version")):
        return None
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _MallInfo2
    return libc


def reuse_freed_memory():
    """Apply the thresholds once (unless VGG_CAFFE_MALLOC=system); returns what was set,
    {"mmap_threshold": bytes, "trim_threshold": bytes}, or None where nothing was changed."""
    if _STATE["applied"] is not None:
        return _STATE["applied"] or None
    _STATE["applied"] = {}
    if os.environ.get("VGG_CAFFE_MALLOC", "").strip().lower() == "system":
        return None
    libc = _libc()
    if libc is None:
        return None
    for value in MMAP_THRESHOLDS:
        if libc.mallopt(M_MMAP_THRESHOLD, value) == 1:
            break
    else:
        return None
    libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    _STATE["applied"] = {"mmap_threshold": value, "trim_threshold": TRIM_THRESHOLD}
    return _STATE["applied"]


def applied():
    """What reuse_freed_memory set in this process, or None."""
    return _STATE["applied"] or None


def free_bytes():
    """Bytes malloc holds freed, ready for this process's next allocations (glibc's mallinfo2
    fordblks, all arenas); 0 where unknown."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return 0
    try:
        return int(libc.mallinfo2().fordblks)
    except (OSError, ValueError):
        return 0
