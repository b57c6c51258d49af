"""The collective side of data parallelism: which samples a worker computes, gradient averaging
in buckets, the seed all workers agree on, and the process group (vgg_caffe.train.parallel
launches the workers).

The VGG paper splits each batch over the GPUs and averages the gradients, which equals one GPU's
step: worker r of W computes samples [r*B/W, (r+1)*B/W) of the global batch B.
"""
import dataclasses
import datetime
import json
import os
import re
import secrets

import torch
import torch.distributed as dist

from ..errors import CaffeError, first_line

DEFAULT_WORKER_TIMEOUT = 600.0  # seconds; long enough for rank 0 to write a VGG-16 snapshot
DEFAULT_BUCKET_BYTES = 64 << 20  # all-reduce buffers of ~64 MB: few calls, bounded extra memory


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
    from ..proto import pb

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


def make_allreduce(group=None, bucket_bytes=DEFAULT_BUCKET_BYTES, before=None, progress=None):
    """A function averaging a list of tensors in place across the processes of `group`.

    Tensors are packed into a few flat buffers (one per device and dtype, split at
    `bucket_bytes`), each reduced with one all_reduce (SUM) issued asynchronously so buffers
    overlap on the wire, then divided by the world size and copied back: Caffe's "sum the
    diffs, divide by the number of solvers". `before(call_index)` runs first on each call
    (failure-test hooks). With one process it only runs the hook.
    allreduce.overlapped(params, ...) is a GradientReducer (vgg_caffe.train.overlap) over the same
    group: the gradients all-reduced from hooks during backward. `progress` (a CollectiveCounts) records
    each call and each reducer's finish, so a collective that times out names the rank(s) that
    never reached it.
    """
    world = dist.get_world_size(group) if dist.is_initialized() else 1
    calls = [0]

    def lost(e, what):
        behind = progress.behind_text() if progress is not None else ""
        return PeerLost(f"rank {dist.get_rank(group)}: {what} failed; {behind or 'another worker died or stopped responding'}: "
                        f"{first_line(e)}")

    def allreduce(tensors):
        if before is not None:
            before(calls[0])
        if progress is not None and world > 1:
            progress.enter()
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
            raise lost(e, f"all-reduce number {calls[0] - 1}") from e
        return tensors

    def overlapped(params, **options):
        from .overlap import GradientReducer

        class Reducer(GradientReducer):
            def finish(self):
                if progress is not None:
                    progress.enter()
                try:
                    return super().finish()
                except (RuntimeError, dist.DistError) as e:
                    raise lost(e, "the iteration's gradient all-reduce") from e

        def launch(flat):
            try:
                return dist.all_reduce(flat, group=group, async_op=True)
            except (RuntimeError, dist.DistError) as e:
                raise lost(e, "launching a gradient all-reduce") from e

        return Reducer(params, world, launch, **options)

    allreduce.world_size = world
    allreduce.overlapped = overlapped if world > 1 else None
    return allreduce


class CollectiveCounts:
    """How many collective phases each rank has entered, kept in a key-value store that every rank
    (and the launcher) reaches. Ranks enter the same phases in the same order, so when one times
    out the ranks with the lowest count are those that never arrived: the lost ones, rather than
    the healthy ranks that waited for them."""

    PREFIX = "vgg_caffe/entered/"

    def __init__(self, store, rank, world_size):
        self.store, self.rank, self.world_size = store, rank, world_size
        self.count = 0

    def enter(self):
        self.count += 1
        self.store.set(f"{self.PREFIX}{self.rank}", str(self.count))

    def behind(self):
        """(ranks that did not reach the phase the others did, that phase's number), or ([], None)."""
        try:
            counts = read_counts(self.store, self.world_size)
        except (RuntimeError, dist.DistError):  # the store went too: nothing to say
            return [], None
        return laggards(counts)

    def behind_text(self):
        ranks, phase = self.behind()
        if not ranks:
            return ""
        return (f"rank(s) {', '.join(map(str, ranks))} did not reach collective #{phase} "
                "(died or stopped responding)")


def read_counts(store, world_size):
    """{rank: phases entered} from a CollectiveCounts store (0 for a rank that entered none)."""
    counts = {}
    for r in range(world_size):
        key = f"{CollectiveCounts.PREFIX}{r}"
        counts[r] = int(store.get(key)) if store.check([key]) else 0
    return counts


def laggards(counts):
    """The ranks behind the others and the phase they did not reach: ([ranks], phase) or ([], None)."""
    if not counts:
        return [], None
    low, high = min(counts.values()), max(counts.values())
    if low == high:
        return [], None
    return sorted(r for r, c in counts.items() if c == low), low + 1


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
    threads: int = None    # torch intra-op threads (None: leave torch's choice)
    progress_addr: tuple = None   # (host, port) of the launcher's CollectiveCounts store (None: the group's)

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
        # A collective that times out raises in wait() (a PeerLost naming the lost rank) instead of
        # NCCL's watchdog aborting the healthy ranks with SIGABRT; the launcher still reads a
        # signal 6 right when a user turns this off (vgg_caffe.train.workers).
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
    try:
        dist.init_process_group(**kwargs)
    except (RuntimeError, ValueError, dist.DistError) as e:
        raise CaffeError(f"rank {worker.rank}: could not join the process group ({init_method}, "
                         f"{worker.backend}, timeout {worker.timeout:g}s): {first_line(e)}") from e
