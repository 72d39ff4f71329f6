"""Keep freed memory in the process while a network trains on the CPU (glibc malloc only).

Why by hand: no library exposes glibc's `mallopt`, and the fix has to be made from inside the
process (the `MALLOC_*` environment variables would have to be set before Python starts, which a
Snakemake `script:` rule or a notebook cannot do). glibc serves every block above its mmap threshold
(at most 32 MB) with a fresh `mmap` and returns it with `munmap` when freed, so each training
iteration faults the same activations in again page by page: at `config/paper.yaml`'s DRIT scale
(crop 300, nf 64) 16 M minor page faults and 53 s of kernel time over three bf16 iterations.
Serving every block from the heap and never trimming it makes each iteration reuse the previous
one's pages (`benchmarks/drit.py --config config/paper.yaml --batch-size 2 --profile 2
--mixed-precision --channels-last`: 30.2 → 20.7 s per iteration, 3.2 M page faults, peak memory
11.5 → 13.5 GB; fp32 64.9 → 44.1 s). The price is that the process keeps its peak memory until it
exits, which is why only the training loops ask for it.

Other C libraries (musl, macOS) and preloaded allocators (jemalloc, tcmalloc) are left alone, and
`VDWSTACK_KEEP_FREED_MEMORY=0` in the environment keeps glibc's defaults (less memory, slower).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
from pathlib import Path

log = logging.getLogger(__name__)

# glibc <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4

_NEVER = -1  # mallopt(M_TRIM_THRESHOLD, -1): never give the heap's top back (man mallopt)
_TOP_PAD_BYTES = 256 << 20  # grow the heap in steps of 256 MB (address space; pages come on first touch)

_applied = False


def preloaded_allocator() -> str | None:
    """"jemalloc" / "tcmalloc" when one is preloaded into this process (Linux), else None."""
    maps = Path("/proc/self/maps")
    try:
        text = maps.read_text()
    except OSError:
        return None
    return next((name for name in ("jemalloc", "tcmalloc") if f"lib{name}" in text), None)


def retain_freed_memory() -> bool:
    """Make glibc malloc serve large blocks from the heap and keep freed pages (see module doc).

    Idempotent; returns whether the settings are in force (False on other C libraries, with a
    preloaded allocator, whose own policy the user chose, or with VDWSTACK_KEEP_FREED_MEMORY=0)."""
    global _applied
    if _applied:
        return True
    if os.environ.get("VDWSTACK_KEEP_FREED_MEMORY", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or preloaded_allocator():
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    ok = all(libc.mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER), (_M_TOP_PAD, _TOP_PAD_BYTES)))
    if not ok:
        log.warning("glibc mallopt refused a setting: large training iterations may spend time in page faults")
        return False
    _applied = True
    log.debug("glibc malloc: no mmap for large blocks, heap kept (training on the CPU)")
    return True


def malloc_name() -> str:
    """The allocator in force, for benchmark records: jemalloc / tcmalloc / glibc-retain / libc."""
    return preloaded_allocator() or ("glibc-retain" if _applied else "libc")
