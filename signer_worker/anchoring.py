"""RFC 3161 anchoring off the signing path.

Checkpoints are published at once; their tokens are fetched here, in a background
thread, with retries and exponential backoff, so a TSA outage never stops signing.
Tokens that arrive are handed back to the loop, which publishes them as
``TimestampAnchor`` records in its next transaction. The backlog is visible in status.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from ledgerstream.core.errors import TimestampError
from ledgerstream.core.timestamp import request_timestamp

log = logging.getLogger("ledgerstream.signer.anchoring")


@dataclass(frozen=True)
class Token:
    tree_size: int
    body: bytes
    tsa: str
    token: bytes


class Anchorer:
    """Requests one token per checkpoint body from the configured TSAs.

    ``policy="first"``: TSAs are tried in order until one answers; ``"all"``: every TSA
    is asked (independent witnesses), each retried until it answers.
    """

    def __init__(self, urls: tuple[str, ...], policy: str = "first", *, max_backoff: float = 30.0,
                 timeout: float = 10.0) -> None:
        self.urls = urls
        self.policy = policy
        self.max_backoff = max_backoff
        self.timeout = timeout
        self._pending: dict[tuple[int, str], bytes] = {}  # (tree_size, tsa or "*") -> body
        self._lock = threading.Lock()
        self._done: "queue.Queue[Token]" = queue.Queue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="anchorer", daemon=True)
        self.failures = 0
        self.last_error: str | None = None

    def start(self) -> None:
        if self.urls:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def submit(self, tree_size: int, body: bytes) -> None:
        if not self.urls:
            return
        with self._lock:
            targets = self.urls if self.policy == "all" else ("*",)
            for tsa in targets:
                self._pending[(tree_size, tsa)] = body
        self._wake.set()

    def ready(self) -> list[Token]:
        """Tokens obtained since the last call (the loop publishes them)."""
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    @property
    def backlog(self) -> int:
        with self._lock:
            return len(self._pending)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            with self._lock:
                work = sorted(self._pending.items())
            if not work:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            progress = False
            for (size, target), body in work:
                if self._stop.is_set():
                    return
                token = self._request(body, target)
                if token is not None:
                    with self._lock:
                        self._pending.pop((size, target), None)
                    self._done.put(Token(size, body, token[0], token[1]))
                    progress = True
            if progress:
                backoff = 0.5
            else:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    def _request(self, body: bytes, target: str) -> tuple[str, bytes] | None:
        urls = self.urls if target == "*" else (target,)
        for url in urls:
            try:
                return url, request_timestamp(url, body, timeout=self.timeout)
            except TimestampError as exc:
                self.failures += 1
                self.last_error = f"{url}: {exc}"
                log.warning("TSA request failed (%s); will retry", self.last_error)
        return None

    def stamp_now(self, data: bytes) -> tuple[str, bytes] | None:
        """One synchronous attempt (per-entry timestamp mode); None if no TSA answers."""
        return self._request(data, "*")
