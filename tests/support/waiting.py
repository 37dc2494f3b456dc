"""Polling helper for tests that wait on real processes and brokers."""
from __future__ import annotations

import time
from typing import Any, Callable


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, on_timeout: Callable[[], str] = str,
               poll: float = 0.1) -> Any:
    """The first truthy value of ``predicate()``; AssertionError naming ``what`` (and
    ``on_timeout()``, e.g. a log tail) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{on_timeout()}")
