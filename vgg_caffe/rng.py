"""Randomness keyed by (seed, iteration, sample), not by process.

The paper's multi-GPU scheme splits each batch across workers and must train exactly as one
worker would. So every random draw (scale jitter, crop, flip, colour shift, dropout masks) is a
pure function of the solver's seed, the iteration and the sample's index in the *global* batch:
one process computing samples [0, 256) and four computing [0, 64), [64, 128), ... see the same
numbers. `SampleWindow` says which slice of the global batch this process holds.
"""
import hashlib
from dataclasses import dataclass

import numpy as np
import torch


def key(*parts):
    """A 63-bit integer from any mix of ints and strings (stable across runs and platforms)."""
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") >> 1


def torch_generator(*parts, device="cpu"):
    return torch.Generator(device=device).manual_seed(key(*parts))


def numpy_rng(*parts):
    return np.random.Generator(np.random.PCG64(key(*parts)))


@dataclass
class SampleWindow:
    """This process's share of the global batch at one iteration: samples [start, stop) of total."""
    seed: int = 0
    iteration: int = 0
    start: int = 0
    stop: int = None
    total: int = None
