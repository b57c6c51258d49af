"""pycaffe's batched passes: Net.forward_all, Net.forward_backward_all and Net._batch.

As pycaffe.py: inputs of any length are cut into batches of the net's batch size (the first
axis of the first blob), the last batch padded with zeros, and the padding dropped from the
results, which are copies (pycaffe's forward_backward_all kept views that later batches
overwrote; here every batch's rows are copied). Without any arrays, forward_all runs one pass.
"""
from itertools import zip_longest

import numpy as np

from ..errors import CaffeError


def batches(net, arrays):
    """Yield {name: rows} of the net's batch size; the last batch is padded with zeros."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    if not arrays:
        return
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise CaffeError(f"batched pass: the arrays have different lengths {lengths}")
    num = next(iter(lengths.values()))
    first = next(iter(net.blobs.values()))
    batch_size = first.shape[0] if first.shape else 1
    for i in range(0, num - num % batch_size, batch_size):
        yield {k: v[i:i + batch_size] for k, v in arrays.items()}
    remainder = num % batch_size
    if remainder:
        yield {k: np.concatenate([v[num - remainder:], np.zeros((batch_size - remainder,) + v.shape[1:], v.dtype)])
               for k, v in arrays.items()}


def _package(collected, rows):
    out = {}
    for name, parts in collected.items():
        value = np.concatenate(parts) if parts and parts[0].ndim else np.asarray(parts)
        out[name] = value[:rows] if rows is not None else value
    return out


def forward_all(net, blobs, inputs):
    names = list(dict.fromkeys(net.outputs + list(blobs or [])))
    if not inputs:
        return {k: v.copy() for k, v in net.forward(blobs=blobs).items()}
    rows = len(next(iter(inputs.values())))
    collected = {n: [] for n in names}
    for batch in batches(net, inputs):
        for name, value in net.forward(blobs=blobs, **batch).items():
            collected.setdefault(name, []).append(value.copy())
    return _package(collected, rows)


def forward_backward_all(net, blobs, diffs, arrays):
    forward_in = {k: arrays[k] for k in net.inputs if k in arrays}
    backward_in = {k: arrays[k] for k in net.outputs if k in arrays}
    unknown = set(arrays) - set(forward_in) - set(backward_in)
    if unknown:
        raise CaffeError(f"forward_backward_all: {sorted(unknown)} are neither inputs {net.inputs} "
                         f"nor outputs {net.outputs} of the net")
    outs = {n: [] for n in dict.fromkeys(net.outputs + list(blobs or []))}
    grads = {n: [] for n in dict.fromkeys(net.inputs + list(diffs or []))}
    for fb, bb in zip_longest(batches(net, forward_in), batches(net, backward_in), fillvalue={}):
        for name, value in net.forward(blobs=blobs, **fb).items():
            outs.setdefault(name, []).append(value.copy())
        for name, value in net.backward(diffs=diffs, **bb).items():
            grads.setdefault(name, []).append(value.copy())
    given = forward_in or backward_in
    rows = len(next(iter(given.values()))) if given else None
    return _package(outs, rows), _package(grads, rows)
