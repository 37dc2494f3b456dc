"""Entry signatures on a dedicated thread, overlapped with the loop thread's Python work.

In ``entry`` signing mode every entry costs one ML-DSA-65 signature, about as much CPU
as everything else the loop does for it. With liboqs and its ``sign_many`` shim
(:meth:`PrivateKey.sign_many`, ``sign_many_releases_gil``) a whole chunk of messages is
signed in one foreign call that holds no GIL, so this thread signs entry *k* while the
loop thread decodes, hashes, encodes and produces the others. The thread needs the GIL
only between chunks; taking every message queued so far as the next chunk keeps those
hand-overs few (the loop is faster than the signatures, so chunks grow to ``max_chunk``:
1,024 signatures, ~0.1 s of signing per hand-over). Each hand-over costs the thread a few
milliseconds of waiting for the GIL while the loop thread runs Python (measured: 8-12 % of
its time with chunks of 256; with 64 it spent ~7 % between chunks alone).

The loop keeps the order: signatures come back in submission order, and the loop
produces each entry once its signature is in, in seq order, chunk by chunk as they
finish, and all of them before it commits the transaction. Nothing here touches the
ledger state.

The thread can ask the OS for a higher priority (``nice``: the signer's
``--signing-nice``, -10 by default): on a machine the signer shares with the broker or
other workers, the signatures are what limits throughput, and the loop thread has a
queue of work ahead to fill the remaining CPU (docs/signer.md, "The hot path"). Raising
a priority needs CAP_SYS_NICE or a large enough RLIMIT_NICE; without either the thread
keeps the process's priority and ``priority_error`` says why.
"""
from __future__ import annotations

import os
import threading

from ledgerstream.core.mldsa import PrivateKey


class SigningThread:
    """Signs submitted messages in order, in chunks, on one daemon thread."""

    def __init__(self, key: PrivateKey, *, max_chunk: int = 1024, nice: int | None = None) -> None:
        self._sign_many = key.sign_many
        self.max_chunk = max_chunk
        self._nice_wanted = nice
        self.nice: int | None = None  # the thread's nice value once it runs
        self.priority_error: str | None = None  # why the wanted nice value was not set
        self._started = threading.Event()
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)   # signalled: something to sign / close
        self._ready = threading.Condition(self._lock)  # signalled: a chunk is done
        self._todo: list[bytes] = []
        self._done: list[bytes] = []
        self._in_flight = 0
        self._generation = 0  # bumped by reset(): results of older chunks are dropped
        self._chunk_generation = 0  # of the chunk being signed
        self._error: BaseException | None = None
        self._closed = False
        self.chunks = 0  # chunks signed so far (diagnostics)
        self._thread = threading.Thread(target=self._run, name="ledgerstream-entry-signing", daemon=True)
        self._thread.start()
        self._started.wait(10)

    @property
    def native_id(self) -> int | None:
        """The OS thread id of the signing thread."""
        return self._thread.native_id

    # --- loop thread -----------------------------------------------------------------------
    def submit_many(self, messages: list[bytes]) -> None:
        """Queue messages to sign, in order (one lock and at most one wake-up for all)."""
        with self._lock:
            self._todo.extend(messages)
            if not self._in_flight:
                self._work.notify()

    @property
    def pending(self) -> int:
        """Submitted messages (since the last reset) whose signatures have not been taken yet."""
        with self._lock:
            return len(self._todo) + self._current_in_flight() + len(self._done)

    def _current_in_flight(self) -> int:
        return self._in_flight if self._chunk_generation == self._generation else 0

    def take(self, wait: bool = False) -> list[bytes]:
        """The signatures finished since the last call, in submission order. With ``wait``,
        first wait until there is at least one, unless nothing is left to sign. Raises if
        signing failed."""
        with self._lock:
            if wait:
                while not self._done and (self._todo or self._current_in_flight()) and self._error is None:
                    if not self._ready.wait(1.0) and not self._thread.is_alive():
                        raise RuntimeError("the entry-signing thread is gone")
            if self._error is not None:
                raise RuntimeError(f"entry signing failed: {self._error}") from self._error
            done, self._done = self._done, []
            return done

    def reset(self) -> None:
        """Forget everything submitted (the transaction was aborted); a chunk being signed
        finishes on its own and its signatures are dropped."""
        with self._lock:
            self._generation += 1
            self._todo.clear()
            self._done = []
            self._error = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._work.notify()
        self._thread.join(10)

    # --- signing thread ----------------------------------------------------------------------
    def _set_priority(self) -> None:
        tid = threading.get_native_id()
        if self._nice_wanted is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, tid, self._nice_wanted)  # this thread only (Linux)
            except OSError as exc:
                self.priority_error = (f"could not set the signing thread's nice value to "
                                       f"{self._nice_wanted}: {exc.strerror} (needs CAP_SYS_NICE "
                                       f"or RLIMIT_NICE >= {20 - self._nice_wanted})")
        self.nice = os.getpriority(os.PRIO_PROCESS, tid)

    def _run(self) -> None:
        self._set_priority()
        self._started.set()
        while True:
            with self._lock:
                while not self._todo and not self._closed:
                    self._work.wait()
                if self._closed:
                    return
                chunk = self._todo[: self.max_chunk]
                del self._todo[: self.max_chunk]
                self._in_flight = len(chunk)
                self._chunk_generation = generation = self._generation
            signatures: list[bytes] | None = None
            error: BaseException | None = None
            try:
                signatures = self._sign_many(chunk)  # no GIL held while liboqs signs the chunk
            except BaseException as exc:  # noqa: BLE001  (handed to the loop thread)
                error = exc
            with self._lock:
                self._in_flight = 0
                self.chunks += 1
                if generation == self._generation:
                    if error is not None:
                        self._error = error
                    else:
                        self._done.extend(signatures or ())
                self._ready.notify_all()
