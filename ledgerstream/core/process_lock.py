"""One process at a time on a folder: an exclusive ``flock`` on a lock file, held for the
life of the process (the kernel drops it when the process dies, even by kill -9)."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from ledgerstream.core.errors import ConfigError


class ProcessLock:
    """``acquire`` writes our pid into ``path`` under the lock; ConfigError if another
    process (``holder``, for the message: "index follower", "verifier process") holds it."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        self.holder = holder
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise ConfigError(f"another {self.holder} holds {self.path}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
