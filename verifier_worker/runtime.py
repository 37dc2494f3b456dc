"""Everything one verifier does besides moving records: check, persist, assess, report.

It lives in the verifier's checker process (``checker_process.py``), which runs one call
at a time, so the checker is never touched concurrently. The worker process usually sends
the verdicts on a batch's signatures with the batch (``app.py``); signatures it could not
check run on a small thread pool here (``core.verify.SignaturePool``: liboqs checks a chunk
of signatures without the GIL) while this process's main thread decodes, re-hashes and
chains the next entries.
"""
from __future__ import annotations

import itertools
import logging
import os
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Sequence

from ledgerstream.core.verify import (CHECKPOINTS, ENTRIES, Checker, Finding, LivenessSample, SignaturePool,
                                      StallMonitor)
from ledgerstream.verifier_worker.liveness import Observation
from ledgerstream.verifier_worker.metrics import Metrics
from ledgerstream.verifier_worker.settings import VerifierSettings
from ledgerstream.verifier_worker.store import StateStore, write_json_atomic

log = logging.getLogger("ledgerstream.verifier")

SAVE_INTERVAL = 1.0        # seconds between state saves while batches keep coming
PROGRESS_GRACE = 30.0      # seconds without progress while behind before "unhealthy"


class VerifierRuntime:
    def __init__(self, settings: VerifierSettings, checker: Checker, store: StateStore, metrics: Metrics,
                 worker_state: dict[str, Any], worker_pid: int) -> None:
        self.s = settings
        self.worker_pid = worker_pid
        self.checker = checker
        self.store = store
        self.metrics = metrics
        self.alerts: Counter[str] = Counter(worker_state.get("alerts", {}))
        self.stall = StallMonitor(settings.stall_seconds, settings.checkpoint_overdue_seconds)
        self.pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="sigcheck")
        self.signatures = SignaturePool(self.pool, settings.threads)
        self.started_at = time.time()
        self.last: Observation | None = None
        self.kafka_ok = False
        self.lag: int | None = None
        self._progress = (checker.position, time.monotonic())
        self._graph_edges = -1
        self._unpublished = 0
        self._dirty = False
        self._saved_at = 0.0
        self._durable = self._view()
        # (monotonic time, checkpoints offset handed to the checker by then), oldest first: a
        # checkpoint is overdue only if it was read checkpoint_wait_seconds before an
        # observation began that found every committed entry fed; one read later may have
        # been read before its entries (the topics are read independently), and waits
        self._checkpoints_read: deque[tuple[float, int]] = deque([(time.monotonic(), checker.next_offset[CHECKPOINTS])])
        for kind, count in self.alerts.items():
            metrics.alert(kind, count)

    def process(self, batch: Sequence[tuple[str, int, bytes]], verdicts: Mapping[int, bool] | None = None
                ) -> list[Finding]:
        """Feed one batch (records of both topics, each topic in order; ``verdicts`` on the
        signatures of its entries, by offset, from the worker process); saves the state at
        once unless findings still wait to be published."""
        findings: list[Finding] = []
        for role, records in itertools.groupby(batch, key=lambda record: record[0]):
            run = [(offset, raw) for _, offset, raw in records]
            if role == ENTRIES:
                findings += self.checker.feed_entries(run, self.signatures, verdicts)
            elif role == CHECKPOINTS:
                findings += self.checker.feed_checkpoints(run)
            else:  # PEERS: another copy's checkpoints (--peer-prefix)
                findings += self.checker.feed_peer_checkpoints(run, self.s.peer_checkpoints or "peer")
        if self.checker.next_offset[CHECKPOINTS] != self._checkpoints_read[-1][1]:
            self._checkpoints_read.append((time.monotonic(), self.checker.next_offset[CHECKPOINTS]))
        self._hold(findings)
        return findings

    def _hold(self, findings: Sequence[Finding]) -> None:
        """The state may be saved only when every finding so far is published (at-least-once),
        and is saved at most every SAVE_INTERVAL while clean batches stream in: each save
        fsyncs twice, which cost more than checking a whole batch. A crash re-reads at most
        that much from Kafka; ``write_status`` saves what is left when batches stop."""
        self._dirty = True
        if findings:
            self._unpublished += 1
        elif not self._unpublished and time.monotonic() - self._saved_at >= SAVE_INTERVAL:
            self.persist()

    def persist(self) -> None:
        """Save the state; from now on status.json reports what was saved (what a restart resumes)."""
        self.store.save(self.checker, {"alerts": dict(self.alerts)})
        self._dirty, self._saved_at = False, time.monotonic()
        self._durable = self._view()
        if self.checker.graph.total_edges != self._graph_edges:  # graph.json: the newest edges the history keeps
            self._graph_edges = self.checker.graph.total_edges
            write_json_atomic(self.s.state_dir / "graph.json",
                              {**self.checker.graph.to_dict(), "updated_at": time.time()})

    def _view(self) -> dict[str, Any]:
        ch = self.checker
        return {"position": ch.position, "last_checkpoint": ch.last_checkpoint,
                "head": {"seq": ch.position - 1 if ch.position else None, "entry_hash": ch.head_hash.hex()},
                "next_offset": {ENTRIES: ch.next_offset[ENTRIES], CHECKPOINTS: ch.next_offset[CHECKPOINTS]},
                "pending_links": ch.pending_links, "witnessed_size": ch.witnessed_size, "stats": ch.stats.to_dict()}

    def published(self, findings: Sequence[Finding]) -> None:
        """The alerts of one earlier ``process`` / ``assess`` are delivered."""
        for f in findings:
            self.alerts[f.kind.value] += 1
            self.metrics.alert(f.kind.value)
            log.warning("ALERT %s %s: %s", f.severity.value, f.kind.value, f.detail)
        self._unpublished -= 1
        if not self._unpublished:
            self.persist()

    def assess(self, obs: Observation | None, now: float) -> list[Finding]:
        """Lag, health, ``stalled`` and checkpoints that claim entries the ledger lacks."""
        self.kafka_ok = obs is not None
        if obs is None:
            return []
        self.last = obs
        position = self._durable["position"]
        if obs.newest_seq is not None:
            self.lag = max(0, obs.newest_seq + 1 - position)
        else:
            self.lag = 0 if obs.entries_end == 0 else None
        findings = self.stall.observe(LivenessSample(
            now=now, actions_end=obs.actions_end, signer_committed=obs.signer_committed,
            entries_end=obs.entries_end, verified=position,
            checkpoint_size=(self._durable["last_checkpoint"] or {}).get("tree_size", 0)))
        if self.lag == 0:  # every entry committed when the observation began has been fed
            findings += self.checker.expire_checkpoints(
                self._read_before(obs.taken_at - self.s.checkpoint_wait_seconds))
        if findings:
            self._unpublished += 1
        return findings

    def _read_before(self, moment: float) -> int:
        """The checkpoints offset the checker had been handed before ``moment``."""
        marks = self._checkpoints_read
        while len(marks) > 1 and marks[1][0] < moment:
            marks.popleft()
        return marks[0][1] if marks[0][0] < moment else 0

    # --- reporting ------------------------------------------------------------------------------------
    def _healthy(self) -> bool:
        """Kafka reachable, and caught up or still making progress."""
        position, since = self._progress
        if self._durable["position"] != position:
            self._progress = (self._durable["position"], time.monotonic())
            return self.kafka_ok
        keeping_up = self.lag == 0 or time.monotonic() - since < PROGRESS_GRACE
        return self.kafka_ok and keeping_up

    def status(self) -> dict[str, Any]:
        """status.json: the saved state (``position`` = next seq expected) plus live lag and health."""
        return {
            "id": self.s.id, "pid": self.worker_pid, "checker_pid": os.getpid(), **self._durable, "lag": self.lag, "healthy": self._healthy(),
            "alerts": dict(sorted(self.alerts.items())), "updated_at": time.time(),
            "metrics_url": self.metrics.url, "started_at": self.started_at, "group": self.s.group,
            "entries_end": self.last.entries_end if self.last else None,
        }

    def write_status(self) -> None:
        if self._dirty and not self._unpublished:
            self.persist()
        status = self.status()
        self.metrics.update(position=status["position"], lag=status["lag"], healthy=status["healthy"],
                            checkpoint_size=(status["last_checkpoint"] or {}).get("tree_size", 0))
        write_json_atomic(self.s.state_dir / "status.json", status)

    def close(self) -> None:
        self.pool.shutdown(wait=False)
