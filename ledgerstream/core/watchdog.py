"""A watchdog for our long-running loops: no progress for too long ends the process.

librdkafka calls can block far beyond their own timeouts after a broker crash (issue 20:
a signer sat 10 minutes inside ``send_offsets_to_transaction``). A stuck process is worse
than a dead one: the supervisor restarts a dead process, and Kafka's exactly-once
transactions make the restart safe. So the loop ``beat()``s once per iteration, and when no
beat comes for ``limit`` seconds a daemon thread logs what the loop was doing and calls
``os._exit`` (no Python cleanup can hang then).
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Callable, Iterator

log = logging.getLogger("ledgerstream.watchdog")

EXIT_WATCHDOG = 4   # documented exit status of a process the watchdog ended


class Watchdog:
    """Ends the process when :meth:`beat` is not called for ``limit`` seconds (unless paused)."""

    def __init__(self, limit: float, name: str, *, exit: Callable[[int], None] = os._exit) -> None:
        if limit <= 0:
            raise ValueError("the watchdog limit must be positive")
        self.limit = limit
        self.name = name
        self.doing = "starting"
        self._exit = exit
        self._last = time.monotonic()
        self._paused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"watchdog:{name}", daemon=True)

    def start(self) -> "Watchdog":
        self._last = time.monotonic()
        self._thread.start()
        return self

    def beat(self, doing: str = "looping") -> None:
        """The loop made progress; ``doing`` names the step that follows (for the log line)."""
        self._last = time.monotonic()
        self.doing = doing

    @property
    def silent_for(self) -> float:
        return time.monotonic() - self._last

    @contextlib.contextmanager
    def paused(self, doing: str) -> Iterator[None]:
        """For a step that is bounded by its own means and may take long (e.g. a recovery)."""
        self._paused += 1
        self.doing = doing
        try:
            yield
        finally:
            self._paused -= 1
            self.beat()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        period = min(1.0, self.limit / 4)
        while not self._stop.wait(period):
            if self._paused or self.silent_for <= self.limit:
                continue
            log.critical("%s made no progress for %.0f s (limit %.0f s) while %s; exiting with status %d "
                         "so that its supervisor restarts it", self.name, self.silent_for, self.limit,
                         self.doing, EXIT_WATCHDOG)
            for handler in logging.getLogger().handlers:
                with contextlib.suppress(Exception):
                    handler.flush()
            self._exit(EXIT_WATCHDOG)
            return
