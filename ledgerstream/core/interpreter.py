"""Interpreter settings for our record-per-iteration hot loops (signer, verifier workers,
``ledgerstream verify``).

Two of CPython's defaults cost these loops measurable CPU:

* The thread switch interval (5 ms). A thread that signs or verifies a chunk without the
  GIL needs it back at the end of every chunk, and waits for the busy loop thread's slice
  to run out each time. Each caller passes the interval it needs (signing.py, verify.py).
* The cyclic garbage collector's thresholds (700, 10, 10). Each record allocates a few
  dozen short-lived containers (decoded dicts and lists, outcomes) that reference counting
  frees at once; almost none form cycles. With the defaults the collector still makes a
  young-generation pass every few dozen records and, as the retained state grows (dedup
  index, Merkle tree, link index), older-generation passes over all of it. Measured: the
  signer spent 14 µs per entry in the collector (of ≈250 µs of CPU per entry, its own and
  the broker's), a verifier worker 11 µs (of ≈125); with :data:`GC_THRESHOLDS`, 1.6 and
  2.4 µs (docs/benchmarks-signer.md, "Round 5"). Cycles are still collected, only later.
"""
from __future__ import annotations

import contextlib
import gc
import sys
from typing import Iterator

#: a young-generation pass every 50,000 net container allocations instead of 700: a few
#: per second at full load; the older generations keep Python's ratios
GC_THRESHOLDS = (50_000, 20, 20)


def tune(switch_interval: float) -> None:
    """For a process of our own (a signer or verifier worker): set both for its lifetime."""
    sys.setswitchinterval(switch_interval)
    gc.set_threshold(*GC_THRESHOLDS)


@contextlib.contextmanager
def tuned(switch_interval: float) -> Iterator[None]:
    """:func:`tune` for the duration of a library call; the caller's settings come back after."""
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    tune(switch_interval)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
