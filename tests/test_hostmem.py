"""vgg_caffe.hostmem: once a Net is built, freed tensor memory is reused by the next allocation
without page faults (counted by the kernel: getrusage's minor faults), unless
VGG_CAFFE_MALLOC=system; and the memory checks count what malloc holds freed."""
import json
import os
import platform
import subprocess
import sys

import pytest

from vgg_caffe import hostmem, machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = r"""
import json, resource, torch
from vgg_caffe import hostmem
from vgg_caffe.net import Net
Net('layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 1 } } }')
faults = []
for _ in range(8):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.ones(16 << 20)          # 64 MB, every page written
    del t
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(json.dumps({"faults": faults, "applied": hostmem.applied(), "free": hostmem.free_bytes()}))
"""

glibc = pytest.mark.skipif(platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc",
                           reason="malloc's thresholds are glibc's")


def probe(env_extra):
    env = {**os.environ, **env_extra, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_freed_memory_is_reused_without_page_faults():
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    tuned = probe({})
    assert tuned["applied"] == {"mmap_threshold": 1 << 30, "trim_threshold": (1 << 31) - 1} or \
        tuned["applied"]["mmap_threshold"] == 32 << 20
    # After a pass or two (the heap settles around its first blocks) each 64 MB reuses freed pages.
    assert max(tuned["faults"][-4:]) < pages // 20
    assert tuned["free"] >= 64 << 20                     # held for this process, and counted
    system = probe({"VGG_CAFFE_MALLOC": "system"})
    assert system["applied"] is None
    assert min(system["faults"]) > pages // 2            # glibc's default: fresh pages every time


def test_available_memory_counts_what_malloc_holds(monkeypatch):
    if machine.available_bytes() is None:
        pytest.skip("the machine does not say how much memory is available")
    monkeypatch.setattr(hostmem, "free_bytes", lambda: 0)
    base = machine.available_bytes()
    monkeypatch.setattr(hostmem, "free_bytes", lambda: 1 << 50)
    assert machine.available_bytes() >= (1 << 50) + base // 2     # MemAvailable moves a little between reads
