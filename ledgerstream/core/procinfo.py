"""What Linux says about a process (``/proc``): its resident memory and when it started, for
``dev status`` and the benchmarks. Elsewhere (no ``/proc``) both answer None. And one
request to the C library: give freed heap memory back (:func:`release_free_memory`)."""
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


def release_free_memory() -> bool:
    """Return the heap's free pages to the system (glibc ``malloc_trim(0)``); False where
    there is no glibc. After a large transient load (a snapshot's dedup chunks: ~250 MB of
    records and strings per million events, freed once the window is built) glibc keeps the
    freed blocks mapped, so the RSS would stay at the peak."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return False
    if trim is None:
        return False
    trim(0)
    return True
