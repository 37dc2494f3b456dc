"""UUIDv7 event ids (RFC 9562): time-ordered, so ids sort like the events they name.

Method 1 of RFC 9562 section 6.2: a 48-bit Unix millisecond timestamp, a 12-bit counter in
``rand_a`` that keeps ids strictly increasing within this process even when the clock
stalls or steps back, and 62 random bits in ``rand_b`` for uniqueness across processes.
"""
from __future__ import annotations

import threading
import time

from ledgerstream.producers.entropy import random_bytes

_lock = threading.Lock()
_last = 0  # (unix_ms << 12) | counter of the last id handed out


def uuid7() -> str:
    """A new UUIDv7 as the canonical 36-character lowercase string."""
    global _last
    now = (time.time_ns() // 1_000_000) << 12
    with _lock:
        _last = now if now > _last else _last + 1  # counter overflow borrows from the next ms
        stamp = _last
    # 48-bit ms + version 7 + 12-bit counter, then variant 0b10 + 62 random bits, as hex
    head = f"{stamp >> 12:012x}7{stamp & 0xFFF:03x}"
    rand = random_bytes(8)
    tail = f"{(rand[0] & 0x3F) | 0x80:02x}{rand[1:].hex()}"
    return f"{head[:8]}-{head[8:12]}-{head[12:]}-{tail[:4]}-{tail[4:]}"


def uuid7_unix_ms(value: str) -> int:
    """The millisecond timestamp inside a UUIDv7 string (ValueError if it is not one)."""
    h = value.replace("-", "")
    if len(h) != 32 or h[12] != "7" or h[16] not in "89ab":
        raise ValueError(f"not a UUIDv7: {value!r}")
    return int(h[:12], 16)
