"""The tamper matrix: every fault injected for real into the real topics, caught as exactly
its kind by the pure checker (reading Kafka), by ``ledgerstream verify``, and by two running
faust verifier workers (v1, v2), with no false positive anywhere else.

One ledger holds every fault, each in its own segment: the fault, then honest entries, a
checkpoint and its timestamp anchor after it (re-synchronisation). It starts with a long
clean stretch (2,000 entries, cross-agent links, checkpoints, anchors) and contains an
aborted transaction of forged records (invisible to read_committed readers). Every finding
is attributed to a segment by the offset of its record (or its seq), and each segment must
yield exactly its expected kinds (docs/alerts.md lists the consequential ones; the faults
below are built so that none applies).
"""
from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from ledgerstream.core import records
from ledgerstream.core.wire import codec
from ledgerstream.core.config import Topics
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.core.verify import CHECKPOINTS, ENTRIES
from ledgerstream.stack.topics import ensure_topics
from ledgerstream.tools.ledger_reader import read_topic
from ledgerstream.verifier_worker.oneshot import verify_ledger
from ledgerstream.core.verify import checker_config
from support.ledger_builder import (LedgerBuilder, LedgerWriter, RogueProducer, enc, entry_bytes, flip_inside,
                                    other_entry, random_bytes, seal, timestamp_token)
from test_verifier_worker import WorkerProcess, verifier_home, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = PrivateKey.from_seed(bytes(range(32)))
ROGUE = PrivateKey.from_seed(bytes(range(1, 33)))
GRACE = ["--link-grace-seconds", "0", "--link-grace-entries", "20"]
CLEAN_ENTRIES = 2000


@dataclass
class Segment:
    name: str
    expected: list[str]
    first_seq: int
    last_seq: int = -1
    places: set[tuple[str, int]] = field(default_factory=set)


class TamperedLedger:
    """Writes the honest ledger (transactions, like the signer) and the rogue records."""

    def __init__(self, bootstrap: str, topics: Topics, tsa_url: str) -> None:
        self.topics, self.tsa_url = topics, tsa_url
        self.b = LedgerBuilder(KEY)
        self.writer = LedgerWriter(bootstrap, topics)
        self.rogue = RogueProducer(bootstrap)
        self.segments: list[Segment] = []

    @contextlib.contextmanager
    def segment(self, name: str, expected: list[str]) -> Iterator[None]:
        self.segments.append(Segment(name, expected, self.b.seq))
        yield
        self.honest(5)
        self.segments[-1].last_seq = self.b.seq - 1

    def _landed(self, places: list[tuple[str, int]]) -> None:
        role = {self.topics.entries: ENTRIES, self.topics.checkpoints: CHECKPOINTS}
        self.segments[-1].places.update((role[t], o) for t, o in places)

    def commit(self, entries: list[dict[str, Any]] = (), checkpoints: list[bytes] = ()) -> None:
        self._landed(self.writer.commit([entry_bytes(e) for e in entries], checkpoints))

    def inject(self, role: str, raw: bytes) -> None:
        self._landed([self.rogue.send(getattr(self.topics, role), raw)])

    def checkpoint(self, **kw: Any) -> dict[str, Any]:
        cp = self.b.checkpoint(**kw)
        self.commit(checkpoints=[enc("Checkpoint", cp)])
        return cp

    def anchor(self, cp: dict[str, Any], token: bytes | None = None) -> None:
        token = timestamp_token(self.tsa_url, cp["body"]) if token is None else token
        self.commit(checkpoints=[enc("TimestampAnchor", self.b.anchor(cp, token))])

    def honest(self, n: int) -> None:
        self.commit(self.b.many(n))
        self.anchor(self.checkpoint())

    def attribute(self, kind: str, seq: int | None, evidence: dict[str, str]) -> str:
        place = (evidence.get("topic"), int(evidence["offset"])) if "offset" in evidence else None
        for s in self.segments:
            if place in s.places or (place is None and seq is not None and s.first_seq <= seq <= s.last_seq):
                return s.name
        raise AssertionError(f"{kind} at {place or seq} belongs to no segment")

    def expected(self) -> dict[str, Counter]:
        return {s.name: Counter(s.expected) for s in self.segments}


def build(t: TamperedLedger) -> None:
    b = t.b
    with t.segment("clean_ledger", []):
        for block in range(8):
            batch = []
            for i in range(CLEAN_ENTRIES // 8):
                links = []
                if b.seq > 5 and i % 5 == 0:  # resolved links to recent events of other agents
                    target = b.entries[-3]["action"]
                    links = [(target["agent_id"], target["event_id"])]
                batch.append(b.entry(f"agent-{i % 7}", links=links, payload={"n": b.seq}))
            late = f"late-{block}"  # a pending link, resolved three entries later
            batch.append(b.entry("agent-a", links=[("agent-late", late)]))
            batch += b.many(2) + [b.entry("agent-late", event_id=late)]
            t.commit(batch)
            t.anchor(t.checkpoint())
    with t.segment("aborted_transaction", []):
        t.writer.abort([random_bytes(300, seed=1), entry_bytes(other_entry(b.entries[3], KEY))])
    with t.segment("replayed_record", ["duplicate"]):
        t.inject("entries", entry_bytes(b.entries[100]))
    with t.segment("flipped_bit", ["hash_mismatch"]):
        t.inject("entries", flip_inside(entry_bytes(b.entries[200]), bytes(b.entries[200]["entry_hash"])))
    with t.segment("random_300_bytes", ["undecodable"]):
        t.inject("entries", random_bytes(300, seed=2))
    with t.segment("forged_with_other_key", ["unknown_key"]):
        forged = dict(b.entries[-1], seq=b.seq, prev_hash=b.head)
        t.inject("entries", entry_bytes(seal(forged, ROGUE)))
    with t.segment("fork", ["fork"]):
        t.inject("entries", entry_bytes(other_entry(b.entries[300], KEY)))
    with t.segment("skipped_seq", ["gap"]):
        b.skip()
    with t.segment("wrong_prev_hash", ["chain_break"]):  # a holder of the key builds on it
        t.inject("entries", entry_bytes(b.entry("agent-b", mutate=lambda e: e.update(prev_hash=records.sha256(b"x")))))
    with t.segment("wrong_agent_chain", ["agent_chain_break"]):
        t.inject("entries", entry_bytes(b.entry("agent-c", mutate=lambda e: e.update(agent_seq=999))))
    with t.segment("checkpoint_wrong_root", ["checkpoint_root_mismatch"]):
        t.commit(b.many(2))
        t.inject("checkpoints", enc("Checkpoint", b.checkpoint(root=records.sha256(b"not the root"))))
    with t.segment("checkpoint_other_key", ["checkpoint_bad_signature"]):
        t.inject("checkpoints", enc("Checkpoint", b.checkpoint(key=ROGUE)))
    with t.segment("checkpoint_inconsistent", ["checkpoint_inconsistent"]):
        t.inject("checkpoints", enc("Checkpoint", b.checkpoint(size=b.seq - 3, root=records.sha256(b"rewritten"))))
    with t.segment("timestamp_other_data", ["timestamp_invalid"]):
        t.commit(b.many(2))
        cp = t.checkpoint()
        t.anchor(cp, timestamp_token(t.tsa_url, b"some other bytes"))
    with t.segment("timestamp_older_than_previous", ["timestamp_out_of_order"]):
        t.commit(b.many(2))
        first = t.checkpoint()
        t.commit(b.many(2))
        second = t.checkpoint()
        older = timestamp_token(t.tsa_url, second["body"])  # the later checkpoint is stamped first
        time.sleep(1.1)  # the dev TSA's genTime has one-second resolution
        t.anchor(first)
        t.anchor(second, older)
    with t.segment("dangling_link", ["link_dangling"]):
        t.commit([b.entry("agent-a", links=[("agent-z", "never-recorded")])] + b.many(25))
    with t.segment("mismatched_link", ["link_mismatch"]):
        target = b.entries[50]["action"]

        def lie(e: dict[str, Any]) -> None:
            e["resolved_links"][0]["entry_hash"] = records.sha256(b"another entry")

        t.commit([b.entry("agent-b", links=[(target["agent_id"], target["event_id"])], mutate=lie)])


@pytest.fixture(scope="module")
def tampered(bootstrap: str, dev_tsa: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """The tampered ledger, written while two verifier workers (v1, v2) run against it."""
    topics = Topics.with_prefix(f"tm{uuid.uuid4().hex[:8]}.")
    ensure_topics(bootstrap, topics)
    home = verifier_home(tmp_path_factory.mktemp("tamper-home"), KEY, dev_tsa.ca_cert)
    workers = [WorkerProcess(home, vid, bootstrap, topics, *GRACE, "--stall-seconds", "3600").start()
               for vid in ("v1", "v2")]
    try:
        ledger = TamperedLedger(bootstrap, topics, dev_tsa.url)
        build(ledger)
        yield ledger, home, workers
    finally:
        for w in workers:
            w.stop()


def by_segment(ledger: TamperedLedger, findings: list[tuple[str, int | None, dict[str, str]]]) -> dict[str, Counter]:
    out = {s.name: Counter() for s in ledger.segments}
    for kind, seq, evidence in findings:
        out[ledger.attribute(kind, seq, evidence)][kind] += 1
    return out


def test_pure_checker_reading_kafka_finds_each_fault_and_nothing_else(tampered: tuple, bootstrap: str) -> None:
    ledger, home, _ = tampered
    cfg = checker_config(home, link_grace_seconds=0, link_grace_entries=20)
    report = verify_ledger(bootstrap, ledger.topics, cfg)
    got = by_segment(ledger, [(f.kind.value, f.seq_from, dict(f.evidence)) for f in report.findings])
    assert got == ledger.expected()
    st = report.checker.stats
    assert report.checker.position == ledger.b.seq and st.timestamps_verified >= 20 and st.checkpoints_verified >= 20


def test_verify_cli_reports_every_fault(tampered: tuple, bootstrap: str) -> None:
    import json

    from ledgerstream.cli.main import cli

    ledger, home, _ = tampered
    prefix = ledger.topics.entries[: -len("entries")]
    result = CliRunner().invoke(cli, ["verify", "--json", "--home", str(home), "--bootstrap", bootstrap,
                                      "--link-grace-seconds", "0", "--link-grace-entries", "20"],
                                env={"LEDGERSTREAM_TOPIC_PREFIX": prefix})
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["entries"] == ledger.b.seq and doc["timestamps"] >= 20
    rows = doc["errors"] + doc["warnings"]
    assert {"kind", "seq", "detail"} <= set(rows[0])
    assert by_segment(ledger, [(r["kind"], r["seq"], r["evidence"]) for r in rows]) == ledger.expected()


@pytest.mark.parametrize("vid", ["v1", "v2"])
def test_running_verifier_workers_alert_each_fault_and_nothing_else(tampered: tuple, bootstrap: str, vid: str) -> None:
    ledger, _, workers = tampered
    worker = next(w for w in workers if w.vid == vid)
    worker.wait_position(ledger.b.seq, timeout=120)
    want = sum(len(s.expected) for s in ledger.segments)

    def published() -> dict[str, dict[str, Any]] | None:
        alerts = {}
        for rec in read_topic(bootstrap, ledger.topics.alerts):
            _, a = codec.decode(rec.value, expect="Alert")
            if a["verifier_id"] == vid:
                alerts[a["alert_id"]] = a
        return alerts if len(alerts) >= want else None

    alerts = wait_until(published, 60, f"{want} alerts from {vid}", worker.log)
    got = by_segment(ledger, [(a["kind"], a["seq_from"], a["evidence"]) for a in alerts.values()])
    assert got == ledger.expected()
    status = worker.status()
    assert sum(status["alerts"].values()) == want and status["healthy"] is True
