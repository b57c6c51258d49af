"""What a run may ask of the machine, checked before it is asked: memory, prototxt size, a device.

Caffe allocates a blob when it is first touched and dies in the allocator ("Check failed: error ==
cudaSuccess (2 vs. 0) out of memory", or std::bad_alloc) with no word of which layer asked. Here
every learnable blob (Layer.add_blob) and every top blob (Layer.__init__, from the shapes Reshape
gives) is compared with the memory the machine has available *before* anything is allocated, and a
blob that cannot fit is refused naming the layer, the blob, its shape and the bytes it needs.
Parameters are checked one at a time against what is still available, and torch writes the zeros
of each parameter as it creates it, so the machine's available memory falls as they are made: the
sum of the parameters is bounded too. Nothing is checked on torch's "meta" device (vgg_caffe.info
builds there; it allocates nothing).

"Available" is the kernel's MemAvailable (/proc/meminfo), capped by the cgroup's memory.max when a
container sets one, elsewhere sysconf's available physical pages, plus what malloc holds freed for
this process (vgg_caffe.hostmem keeps freed blocks for reuse). Unknown means unchecked.

A --device naming CUDA on a machine without it is refused by name at start-up (torch_device),
before any data is built or any net is moved.

Prototxt text is bounded by size: protobuf's text parser keeps about 25 bytes per byte of text and
building one layer costs about 13 KB, so a 50 MB file of tiny layers needed ~10 GB and minutes
before failing. Net definitions are a few KB (VGG-16's is 6 KB; the largest published nets a few
hundred KB), so text over MAX_TEXT_MB (16 MB; the environment variable VGG_CAFFE_MAX_PROTOTXT_MB
overrides it) is refused at once, before it is read. Weights belong in a binary .caffemodel.
"""
import math
import os

from . import hostmem
from .errors import CaffeError

MAX_TEXT_MB = 16


def available_bytes():
    """Bytes of memory this process can still get, or None when the machine does not say."""
    found = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    limit = _cgroup_room()
    found = min(found, limit) if limit is not None else found
    # Memory this process freed and malloc keeps for it (vgg_caffe.hostmem) is not in
    # MemAvailable, but the next blob gets it first.
    return found + hostmem.free_bytes()


def _cgroup_room():
    """memory.max - memory.current of this process's cgroup (v2), when it sets a limit."""
    try:
        with open("/proc/self/cgroup") as f:
            rel = next((line.split(":", 2)[2].strip() for line in f if line.startswith("0::")), None)
        if rel is None:
            return None
        base = os.path.join("/sys/fs/cgroup", rel.lstrip("/"))
        with open(os.path.join(base, "memory.max")) as f:
            text = f.read().strip()
        if text == "max":
            return None
        with open(os.path.join(base, "memory.current")) as f:
            used = int(f.read().strip())
        return max(int(text) - used, 0)
    except (OSError, ValueError, StopIteration):
        return None


def human(nbytes):
    """1536 -> '1.5 KB' (powers of 1024, as `free -h`)."""
    value = float(nbytes)
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if value < 1024 or unit == "PB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PB"  # pragma: no cover


def check_fits(shape, itemsize, what, error):
    """Raise error(message) when a blob of `shape` would need more memory than is available.
    `what` names the blob ("top 'fc6'", "learnable blob 0"); error is a Layer's error()."""
    count = math.prod(int(d) for d in shape)
    need = count * itemsize
    if need < 1 << 26:       # under 64 MB: not worth a read of /proc
        return
    room = available_bytes()
    if room is not None and need > room:
        raise error(f"{what} of shape {tuple(int(d) for d in shape)} would need {human(need)} "
                    f"({count:,} values of {itemsize} bytes), more than the {human(room)} of memory "
                    "available here; nothing was allocated")


def max_text_bytes():
    text = os.environ.get("VGG_CAFFE_MAX_PROTOTXT_MB")
    try:
        mb = float(text) if text else MAX_TEXT_MB
    except ValueError:
        raise CaffeError(f"VGG_CAFFE_MAX_PROTOTXT_MB={text!r}: expected a number of megabytes") from None
    return int(mb * (1 << 20))


def check_text_size(path):
    """Refuse a prototxt (text) file larger than the limit before reading it."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return  # the reader names a missing file
    limit = max_text_bytes()
    if size > limit:
        raise CaffeError(
            f"{path}: {human(size)} of prototxt text, more than the {human(limit)} a net definition may have "
            "(they are a few KB; protobuf's text parser would need ~25x the file in memory and minutes). "
            "If the file holds weights, store them in a binary .caffemodel "
            "(tools/upgrade_net_proto.py IN.prototxt OUT.caffemodel); to raise the limit set "
            "VGG_CAFFE_MAX_PROTOTXT_MB")


def torch_device(text, flag="--device"):
    """torch.device(text) for a command-line flag: "cpu", "cuda" or "cuda:N", refused clearly
    when malformed, when CUDA is not available, or when GPU N does not exist."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        raise CaffeError(f"{flag} {text!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CaffeError(f"{flag} {text}: no CUDA device is available on this machine (use {flag} cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CaffeError(f"{flag} {text}: CUDA sees {torch.cuda.device_count()} GPU(s) "
                             f"(0..{torch.cuda.device_count() - 1})")
    elif device.type != "cpu":
        raise CaffeError(f"{flag} {text!r}: expected cpu, cuda or cuda:N")
    return device
