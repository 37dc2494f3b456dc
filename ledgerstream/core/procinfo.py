"""What Linux says about a process (``/proc``): its resident memory and when it started, for
``dev status`` and the benchmarks. Elsewhere (no ``/proc``) both answer None. And two
requests to the C library about freed heap memory: give it back (:func:`release_free_memory`),
and serve large blocks so that freeing returns them at once (:func:`fix_mmap_threshold`)."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from pathlib import Path


def rss_mb(pid: int) -> float | None:
    """Resident set size in MiB (``VmRSS``), or None if the process is gone or unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def started_at(pid: int) -> float | None:
    """The process's start as a Unix time, to 1/100 s: now minus its age, which is the
    system's uptime (``/proc/uptime``) less its ``starttime`` in clock ticks since boot
    (proc(5), field 22 of ``/proc/<pid>/stat``); None if it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2:].split()[19])  # the fields after "(comm)" start at 3
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


#: glibc's ``mallopt`` parameter number for the mmap threshold (malloc.h)
M_MMAP_THRESHOLD = -3
#: glibc's initial threshold, which it otherwise raises to the largest block freed so far
MMAP_THRESHOLD = 128 * 1024


def _libc_function(name: str) -> object | None:
    """A function of the C library if it is glibc's (has ``name``), else None."""
    lib = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(lib), name) if lib else None
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Return the heap's free pages to the system (glibc ``malloc_trim(0)``); False where
    there is no glibc. After a large transient load (a recovery's records and a snapshot's
    dedup chunks, freed once the window is built) glibc keeps freed blocks below the last one
    in use mapped, so the RSS would stay at the peak."""
    trim = _libc_function("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Serve blocks of ``threshold`` bytes and more with their own mappings, returned to the
    system when freed (glibc ``mallopt(M_MMAP_THRESHOLD)``); False where there is no glibc.
    By default glibc raises the threshold to the largest block freed so far, so after a
    recovery's large transient blocks (dedup chunks of ~1 MB) later ones come from the heap
    and what stays resident depends on the ledger's history: measured at 100k / 1M entries,
    213 / 215-234 MB after a restart against 191 / 193 MB with the threshold fixed
    (docs/benchmarks.md, "Signer recovery")."""
    mallopt = _libc_function("mallopt")
    return bool(mallopt is not None and mallopt(M_MMAP_THRESHOLD, threshold))
