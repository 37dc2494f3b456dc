"""Random bytes for salts and ids, drawn from the OS CSPRNG in blocks.

``os.urandom`` releases the GIL for its syscall, and every GIL release inside ``emit``
invites the sender thread to run right then, in the middle of the agent's call. Taking
salts from a block of OS randomness keeps ``emit`` free of such hand-overs for all but one
call in a hundred. Bytes are never handed out twice, and a forked child starts a fresh
block (it must not repeat its parent's salts or ids).
"""
from __future__ import annotations

import os
import threading

BLOCK = 4096

_lock = threading.Lock()
_block = b""
_pos = 0


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the OS CSPRNG (``n`` at most BLOCK)."""
    global _block, _pos
    with _lock:
        if _pos + n > len(_block):
            _block, _pos = os.urandom(BLOCK), 0
        out = _block[_pos:_pos + n]
        _pos += n
    return out


def _reset_after_fork() -> None:
    global _block, _pos, _lock
    _lock = threading.Lock()
    _block, _pos = b"", 0


os.register_at_fork(after_in_child=_reset_after_fork)
