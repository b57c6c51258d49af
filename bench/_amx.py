"""Whether this core's AMX unit was ours while a bf16 pass ran: a probe around each timed call.

On this machine (a 2-vCPU slice of a shared Xeon) a bfloat16 matmul runs at two speeds that flip
every few seconds: about 1,000 GFLOP/s, and about 400 while another tenant uses the AMX unit its
core shares with ours. Memory bandwidth and float32 matmuls do not follow it
(bench/results/precision.json records a series of the three readings). A bf16 VGG step then
takes 0.6 s or 1.4 s from one repeat to the next, and a median over repeats says how often the
neighbour was busy, not what the code costs. So every timed call is bracketed by a short probe
(8 bf16 1024x1024 matmuls, ~16 ms at full speed, from cache) and the call is counted as
uncontended when both probes ran at >= CONTENDED_BELOW of the fastest probe of the run.
"""
import statistics
import time

import torch

N = 1024
CONTENDED_BELOW = 0.7
_MATRIX = {}


def _gflops(m, times):
    """GFLOP/s of `times` products m @ m (m: N x N)."""
    t0 = time.perf_counter()
    for _ in range(times):
        m @ m
    return times * 2 * N ** 3 / (time.perf_counter() - t0) / 1e9


def probe():
    """bf16 matmul GFLOP/s right now."""
    m = _MATRIX.get("m")
    if m is None:
        m = _MATRIX["m"] = torch.randn(N, N, generator=torch.Generator().manual_seed(0)).bfloat16()
        m @ m
    return _gflops(m, 8)


def probed(fns, log):
    """`fns` ({name: call returning seconds}) with each call bracketed by probes; log[name] gets
    (seconds, the slower probe's GFLOP/s) per call."""
    def wrap(name, fn):
        def run():
            before = probe()
            seconds = fn()
            log.setdefault(name, []).append((seconds, min(before, probe())))
            return seconds
        return run
    return {name: wrap(name, fn) for name, fn in fns.items()}


def series(count, pause_s=0.5):
    """`count` readings of (bf16 GFLOP/s, float32 GFLOP/s, copy GB/s), `pause_s` apart: which of
    the machine's resources swing."""
    a, b = torch.ones(32 << 20), torch.zeros(32 << 20)     # 128 MB each: out of cache; pages touched
    f = torch.randn(N, N, generator=torch.Generator().manual_seed(1))
    f @ f
    b.copy_(a)
    out = []
    for _ in range(count):
        fp32 = _gflops(f, 4)
        t0 = time.perf_counter()
        b.copy_(a)
        copy = 2 * a.numel() * 4 / (time.perf_counter() - t0) / 1e9
        out.append({"bf16_gflops": round(probe()), "fp32_gflops": round(fp32), "copy_gb_s": round(copy, 1)})
        time.sleep(pause_s)
    return out


def peak(*logs, readings=()):
    """The fastest probe of the run: over the logs of probed() and the readings of series()."""
    seen = [p for log in logs for calls in log.values() for _, p in calls] + [r["bf16_gflops"] for r in readings]
    return max(seen)


def split(log, peak):
    """{name: {"uncontended": {"median_s", "n", "all_s"}, "contended": {...}}} and the threshold
    used (CONTENDED_BELOW of `peak`). Each name's first call (interleaved's warm-up) is left out."""
    log = {name: calls[1:] for name, calls in log.items()}
    threshold = CONTENDED_BELOW * peak

    def summary(times):
        return {"median_s": statistics.median(times) if times else None, "n": len(times), "all_s": times}

    out = {}
    for name, calls in log.items():
        out[name] = {"uncontended": summary([t for t, p in calls if p >= threshold]),
                     "contended": summary([t for t, p in calls if p < threshold])}
    return out, {"peak_gflops": peak, "threshold_gflops": threshold}
