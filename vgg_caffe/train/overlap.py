"""Gradient all-reduce overlapped with the backward pass, in buckets launched from gradient hooks
(what torch's DistributedDataParallel reducer does), keeping Caffe's update exact.

Caffe's multi-GPU solver sums the diffs after each backward and divides by the number of solvers;
done after backward, VGG-16's 553 MB of gradients would cross the wire while the GPUs wait. Here
the gradients of the blobs the solver updates live in a few flat buffers, one per (device, dtype),
each blob's .grad a view into its buffer, laid out in reverse net order (the order backward
produces them) and cut into buckets of about `bucket_bytes` (the first one small, so the wire is
busy early). Autograd accumulates straight into the views (Caffe's summed diffs over iter_size
sub-batches). A post-accumulate-grad hook counts each bucket's blobs as they finish; on the last
sub-batch of an iteration only (armed), a complete bucket is all-reduced (SUM, asynchronously)
while backward goes on with the layers below. Buckets are launched strictly in order, so every
rank issues the same collectives in the same sequence. finish() launches what is left (blobs the
loss did not reach hold zeros), waits, and divides by the world size: the same sums, then /W, as
one all-reduce after backward, so 1 process and W processes still train the same trajectory.

DDP itself is not used: it all-reduces on every backward unless told no_sync(), its buckets are
rebuilt from the first iteration's order, and it wraps the module; this is the part the solver
needs, with iter_size and the solver's own update.
"""
import torch

DEFAULT_BUCKET_BYTES = 25 << 20   # DDP's default: large enough for full wire speed
FIRST_BUCKET_BYTES = 1 << 20      # small: the first all-reduce starts as soon as the top layer is done


class GradientReducer:
    """Bucketed, hook-launched gradient averaging over `params` (the updated blobs, net order).

    launch(flat) starts an all-reduce (SUM) of a 1-d tensor and returns an object with wait();
    world_size divides the sums. on_launch(bucket_index, in_backward) observes each launch (tests,
    the overlap measurement of bench/gpu_scaling.py).
    """

    def __init__(self, params, world_size, launch, bucket_bytes=DEFAULT_BUCKET_BYTES,
                 first_bucket_bytes=FIRST_BUCKET_BYTES, on_launch=None):
        self.params = list(params)
        self.world_size, self.launch_fn, self.on_launch = world_size, launch, on_launch
        self.flats, self.buckets, self.slot = [], [], {}
        self._layout(bucket_bytes, first_bucket_bytes)
        self.armed = False
        self.in_backward = False
        self._reset()
        self.handles = [p.register_post_accumulate_grad_hook(self._ready) for p in self.params]

    def _layout(self, bucket_bytes, first_bucket_bytes):
        groups = {}
        for p in reversed(self.params):
            groups.setdefault((p.device, p.dtype), []).append(p)
        for (device, dtype), members in groups.items():
            flat = torch.zeros(sum(p.numel() for p in members), device=device, dtype=dtype)
            f = len(self.flats)
            self.flats.append(flat)
            limit, start, size, offset, current = first_bucket_bytes, 0, 0, 0, []
            for p in members:
                nbytes = p.numel() * p.element_size()
                if current and size + nbytes > limit:
                    self._add_bucket(f, start, offset, current)
                    limit, start, size, current = bucket_bytes, offset, 0, []
                self.slot[p] = (f, offset, len(self.buckets))
                current.append(p)
                size += nbytes
                offset += p.numel()
            if current:
                self._add_bucket(f, start, offset, current)

    def _add_bucket(self, f, start, stop, members):
        for p in members:
            self.slot[p] = self.slot[p][:2] + (len(self.buckets),)
        self.buckets.append({"flat": f, "range": (start, stop), "size": len(members)})

    def _reset(self):
        self.waiting = [b["size"] for b in self.buckets]
        self.works = [None] * len(self.buckets)
        self.next = 0

    def view(self, p):
        """p's gradient inside its bucket, in p's memory layout (channels-last convolution weights
        get channels-last gradients, so autograd accumulates without reordering)."""
        f, offset, _ = self.slot[p]
        flat = self.flats[f]
        if _dense(p):
            return flat.as_strided(p.shape, p.stride(), flat.storage_offset() + offset)
        return flat[offset:offset + p.numel()].view(p.shape)

    def prepare(self):
        """Before the first sub-batch of an iteration: zero the buffers and point every .grad at
        its view, so backward accumulates into them."""
        for flat in self.flats:
            flat.zero_()
        for p in self.params:
            p.grad = self.view(p)
        self._reset()
        self.armed = False

    def arm(self, last):
        """Whether the next backward is the iteration's last sub-batch (the one that reduces)."""
        self.armed = bool(last)

    def _ready(self, p):
        f, offset, b = self.slot[p]
        grad = p.grad
        if grad is None or grad.data_ptr() != self.flats[f][offset:].data_ptr() or grad.stride() != p.stride():
            # Autograd replaced the view (a caller cleared .grad), or p changed its layout since
            # prepare(): put the values back in place, in p's layout (a copy first: they may overlap).
            values = grad.detach().clone() if grad is not None else torch.zeros_like(p)
            view = self.view(p)
            view.copy_(values)
            p.grad = view
        if not self.armed:
            return
        self.waiting[b] -= 1
        while self.next < len(self.buckets) and self.waiting[self.next] == 0:
            self._launch(self.next, in_backward=True)

    def _launch(self, b, in_backward):
        bucket = self.buckets[b]
        start, stop = bucket["range"]
        self.works[b] = self.launch_fn(self.flats[bucket["flat"]][start:stop])
        self.waiting[b] = -1
        self.next = b + 1
        if self.on_launch is not None:
            self.on_launch(b, in_backward)

    def finish(self):
        """After the last backward: launch the buckets left, wait for all, divide by the world
        size. Returns the averaged grads of `params`, in order."""
        while self.next < len(self.buckets):
            self._launch(self.next, in_backward=False)
        for work in self.works:
            work.wait()
        for flat in self.flats:
            flat.div_(self.world_size)
        self.armed = False
        return [p.grad for p in self.params]

    @property
    def bucket_sizes(self):
        """Bytes per bucket, in launch order."""
        return [(b["range"][1] - b["range"][0]) * self.flats[b["flat"]].element_size() for b in self.buckets]

    def close(self):
        for h in self.handles:
            h.remove()
        self.handles = []


def _dense(t):
    """Whether t's strides lay its elements out densely in some dimension order (contiguous,
    channels-last, ...): then a gradient of the same strides fits in numel() elements."""
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda d: (d[1], d[0])):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True
