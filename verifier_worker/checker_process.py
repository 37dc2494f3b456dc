"""The verifier's checking runs in its own process, beside the faust process.

Decoding, re-hashing and chain checks are CPU-bound Python: on the event loop's process
they would compete with faust's per-record work for one GIL (measured: the two together
reach about half of what each does alone). So one child process (``spawn``, started before
faust opens any socket) owns the checker, its state files, the status files and the
metrics endpoint; the faust process sends it batches and gets findings back. The pool has
one worker, so calls run one at a time and in order. The records of a batch travel through
shared memory (``batch_ring.py``) when they can, the rest of the call through the pool's pipe.
"""
from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Mapping, Sequence

from ledgerstream.core import interpreter
from ledgerstream.core.verify import CHECKPOINTS, SWITCH_INTERVAL, Finding
from ledgerstream.verifier_worker.batch_ring import BatchRing, RingBatch, RingReader
from ledgerstream.verifier_worker.liveness import Observation

PR_SET_PDEATHSIG = 1
_runtime: Any = None  # the VerifierRuntime of this (child) process
_ring: RingReader | None = None  # the batch ring, once attached


def _start(argv: list[str], worker_pid: int) -> dict[str, Any]:
    """In the child: restore the state and serve metrics; returns what the parent needs."""
    global _runtime
    import logging

    from ledgerstream.verifier_worker.__main__ import parse_args, settings_from_args
    from ledgerstream.verifier_worker.metrics import Metrics
    from ledgerstream.verifier_worker.runtime import VerifierRuntime
    from ledgerstream.verifier_worker.store import StateStore

    _die_with(worker_pid)
    interpreter.tune(SWITCH_INTERVAL)  # the signature pool's thread gets the GIL back quickly
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = settings_from_args(parse_args(argv))
    store = StateStore(settings.state_dir)
    if settings.reverify:
        store.reset()
    checker, worker_state = store.load(settings.checker)
    metrics = Metrics(settings.id)
    metrics.serve(settings.metrics_port)
    _runtime = VerifierRuntime(settings, checker, store, metrics, worker_state, worker_pid)
    _runtime.write_status()
    return {"position": checker.position, "next_offset": dict(checker.next_offset), "metrics_url": metrics.url}


def _die_with(worker_pid: int) -> None:
    """Linux: get SIGKILL when the worker process dies (even by kill -9), never outlive it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != worker_pid:  # the worker died before prctl took effect
        os._exit(1)


def _attach_ring(owner_pid: int, fd: int, size: int, slot_bytes: int) -> str | None:
    """Open the parent's batch ring; None on success, else why not (the pipe is used then)."""
    global _ring
    try:
        _ring = RingReader(owner_pid, fd, size, slot_bytes)
    except (OSError, ValueError) as exc:
        return str(exc)
    return None


def _process(batch: Sequence[tuple[str, int, bytes]] | RingBatch, verdicts: Mapping[int, bool] | None
             ) -> tuple[list[Finding], int]:
    """The batch's findings, and how many checkpoint-topic records then wait for entries."""
    if isinstance(batch, RingBatch):
        assert _ring is not None
        batch = _ring.read(batch)
    return _runtime.process(batch, verdicts), _runtime.checker.queued_checkpoints


def _published(findings: Sequence[Finding]) -> None:
    _runtime.published(findings)


def _assess(obs: Observation | None, now: float) -> list[Finding]:
    return _runtime.assess(obs, now)


def _write_status() -> None:
    _runtime.write_status()


class CheckerProcess:
    """The parent's handle: blocking ``start`` before faust runs, async calls afterwards."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self._ring: BatchRing | None = None
        self._waiting = 0   # checkpoint-topic records waiting in the checker after its newest batch
        self._in_flight = 0  # checkpoint-topic records in batches submitted and not finished

    def start(self, argv: list[str]) -> dict[str, Any]:
        """Restore the verifier in the child; raises what the child raised (e.g. ConfigError).
        ``batch_ring`` in the result: whether batches travel through shared memory, or why not."""
        info = self._pool.submit(_start, argv, os.getpid()).result()
        try:
            ring = BatchRing()
        except (OSError, AttributeError) as exc:  # no memfd_create (not Linux) or no memory
            info["batch_ring"] = f"unavailable: {exc}"
            return info
        problem = self._pool.submit(_attach_ring, os.getpid(), ring.fd, ring.size, ring.slot_bytes).result()
        if problem is None:
            self._ring = ring
            info["batch_ring"] = "shared memory"
        else:
            ring.close()
            info["batch_ring"] = f"unavailable: {problem}"
        return info

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @property
    def waiting_checkpoints(self) -> int:
        """At most this many checkpoint-topic records wait in the checker for entries once
        every batch submitted so far is checked (the reader's read-ahead, D48)."""
        return self._waiting + self._in_flight

    def process(self, batch: Sequence[tuple[str, int, bytes]], verdicts: Mapping[int, bool] | None = None
                ) -> "asyncio.Future[list[Finding]]":
        """Submit now (calls run in submission order); the child saves the state after the
        batch unless findings wait to be published (then after ``published``)."""
        ref = self._ring.put(batch) if self._ring is not None else None
        checkpoints = sum(1 for role, _, _ in batch if role == CHECKPOINTS)
        self._in_flight += checkpoints
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self._pool, _process, ref or batch, verdicts)
        findings: "asyncio.Future[list[Finding]]" = loop.create_future()

        def finished(future: "asyncio.Future[tuple[list[Finding], int]]") -> None:
            if ref is not None:
                assert self._ring is not None
                self._ring.release(ref)
            self._in_flight -= checkpoints
            if future.cancelled():
                findings.cancel()
            elif future.exception() is not None:
                findings.set_exception(future.exception())  # type: ignore[arg-type]
            else:
                found, self._waiting = future.result()
                findings.set_result(found)

        done.add_done_callback(finished)
        return findings

    async def published(self, findings: Sequence[Finding]) -> None:
        await self._call(_published, findings)

    async def assess(self, obs: Observation | None, now: float) -> list[Finding]:
        return await self._call(_assess, obs, now)

    async def write_status(self) -> None:
        await self._call(_write_status)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._ring is not None:
            self._ring.close()

