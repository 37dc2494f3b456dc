"""What Linux says about a process (``/proc``): its resident memory and when it started, for
``dev status`` and the benchmarks. Elsewhere (no ``/proc``) both answer None."""
from __future__ import annotations

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
