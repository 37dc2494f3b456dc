"""Verify the whole ledger in Kafka once, from the first record to the current end.

What ``ledgerstream verify`` runs: the same checker as the workers, fed every committed
record of ``checkpoints`` (read first, so every checkpoint's entries are read after it)
and then of ``entries`` in batches, with signature checks spread over a thread pool.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from ledgerstream.core import interpreter, note
from ledgerstream.core.config import Topics
from ledgerstream.core.verify import SWITCH_INTERVAL, Checker, CheckerConfig, Finding, Severity, SignaturePool
from ledgerstream.tools import ledger_reader

BATCH = 500
Progress = Callable[[int], None]  # called with the offsets consumed since the last call


@dataclass
class Report:
    """The outcome of one full verification (JSON shape documented in docs/verifiers.md)."""

    checker: Checker
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity != Severity.LOW]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == Severity.LOW]

    @property
    def ok(self) -> bool:
        return not self.errors and self.checker.stats.timestamps_unverified == 0

    def to_json(self) -> dict[str, Any]:
        ch, st = self.checker, self.checker.stats

        def row(f: Finding) -> dict[str, Any]:
            return {"kind": f.kind.value, "seq": f.seq_from, **f.to_dict()}

        return {
            "ok": self.ok,
            "entries": ch.position,
            "checkpoints": st.checkpoints_verified,
            "timestamps": st.timestamps_verified,
            "errors": [row(f) for f in self.errors],
            "warnings": [row(f) for f in self.warnings],
            "head": {"seq": ch.position - 1 if ch.position else None, "entry_hash": ch.head_hash.hex()},
            "last_checkpoint": ch.last_checkpoint,
            "pending_links": ch.pending_links,
            "witnesses": {"quorum": ch.config.witness_quorum, "witnessed_size": ch.witnessed_size,
                          "cosigned": [{"witness": v.name, "key_type": note.KEY_TYPES[v.kind], "tree_size": st.witnesses.get(v.name, 0)}
                                       for v in ch.config.witnesses]},
            "stats": st.to_dict(),
        }


def batched(records: Iterable[tuple[int, bytes]], size: int) -> Iterator[list[tuple[int, bytes]]]:
    batch: list[tuple[int, bytes]] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def verify_records(config: CheckerConfig, checkpoints: Iterable[tuple[int, bytes]],
                   entries: Iterable[tuple[int, bytes]], *, progress: Progress | None = None,
                   threads: int | None = None,
                   peers: Iterable[tuple[str, Iterable[tuple[int, bytes]]]] = ()) -> Report:
    """Verify the given records (any source); ``progress`` gets offsets consumed. ``peers``:
    (source, checkpoints records) seen elsewhere, compared with the ledger at the end (split view)."""
    checker = Checker(config)
    report = Report(checker)
    seen = 0

    def advance(offset: int) -> None:
        nonlocal seen
        if progress is not None:
            progress(offset + 1 - seen)
        seen = offset + 1

    for batch in batched(checkpoints, BATCH):
        report.findings += checker.feed_checkpoints(batch)
        advance(batch[-1][0])
    seen = 0
    threads = threads or max(1, (os.cpu_count() or 1) - 1)  # leave a core to the Kafka client
    # the signature pool's threads get the GIL back quickly; a library call: the caller's
    # interpreter settings come back afterwards
    with interpreter.tuned(SWITCH_INTERVAL), ThreadPoolExecutor(threads) as pool:
        signatures = SignaturePool(pool, threads)
        for batch in batched(entries, BATCH):
            report.findings += checker.feed_entries(batch, signatures)
            advance(batch[-1][0])
    report.findings += checker.finish()
    for source, records in peers:
        for record in records:
            report.findings += checker.check_peer_checkpoint(record, source)
    return report


def verify_ledger(bootstrap: str, topics: Topics, config: CheckerConfig, *,
                  progress: Progress | None = None, peer_topics: Iterable[Topics] = ()) -> Report:
    """Every committed record of the ledger in Kafka, checkpoints first; then the checkpoints
    topics of ``peer_topics`` (other copies that claim to be this ledger) for a split view."""
    peers = [(t.checkpoints, ledger_reader.read_checkpoints(bootstrap, t)) for t in peer_topics]
    return verify_records(config, ledger_reader.read_checkpoints(bootstrap, topics),
                          ledger_reader.read_entries(bootstrap, topics), progress=progress, peers=peers)
