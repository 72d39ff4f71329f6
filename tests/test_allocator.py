"""The training loops' allocator setting: freed large blocks are reused, not faulted in again.

Each case runs in a fresh interpreter: the setting is process-wide and cannot be undone."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc malloc only")

# Allocate and touch 96 MB (above glibc's largest mmap threshold), free it, do it again: the
# second round's minor page faults say whether the pages were kept.
SCRIPT = """
import ctypes, ctypes.util, resource, sys
from vdwstack.core.allocator import malloc_name, retain_freed_memory
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
applied = retain_freed_memory() if sys.argv[1] == "retain" else False
size = 96 << 20
for _ in range(2):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)  # malloc itself: numpy would ask for huge pages
    ctypes.memset(block, 1, size)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    libc.free(block)
print(applied, malloc_name(), faults)
"""


def _run(mode: str, env: dict | None = None) -> tuple[str, str, int]:
    res = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True, env=env)
    applied, name, faults = res.stdout.split()
    return applied, name, int(faults)


def test_retained_pages_are_reused_by_the_next_iteration():
    applied, name, faults_default = _run("default")
    assert (applied, name) == ("False", "libc")
    assert faults_default > 40  # glibc gave the block back: ≥ 48 pages even if they were 2 MB ones
    applied, name, faults_retained = _run("retain")
    assert (applied, name) == ("True", "glibc-retain")
    assert faults_retained * 20 < faults_default


def test_the_environment_can_keep_glibcs_defaults():
    import os

    applied, name, faults = _run("retain", env={**os.environ, "VDWSTACK_KEEP_FREED_MEMORY": "0"})
    assert (applied, name) == ("False", "libc")
    assert faults > 40


def test_a_preloaded_allocator_is_left_alone():
    lib = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    if not lib.exists():
        pytest.skip("jemalloc not installed")
    import os

    applied, name, _ = _run("retain", env={**os.environ, "LD_PRELOAD": str(lib)})
    assert (applied, name) == ("False", "jemalloc")


TRAINER = """
import torch
from vdwstack.core.allocator import malloc_name
from vdwstack.drit.networks import DritArchitecture
from vdwstack.drit.training import DritConfig, DritTrainer
before = malloc_name()
DritTrainer(DritConfig(crop_px=32, batch_size=1, architecture=DritArchitecture(nf=4, nz=2, n_res=1, disc_scales=1,
            disc_layers=2)), 0.1, torch.device("cpu"))
print(before, malloc_name())
"""


def test_the_drit_trainer_asks_for_it_on_the_cpu():
    res = subprocess.run([sys.executable, "-c", TRAINER], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["libc", "glibc-retain"]
