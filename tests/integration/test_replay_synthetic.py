"""Replay index, selection and checks on synthetic ledgers built with the signer's own
sequencer (pure, fast), plus the replay rate benchmark on Kafka (docs/benchmarks-replay.md).

The synthetic ledger is the real ``Sequencer`` (hashing, chaining, link resolution,
signing) without Kafka, with checkpoints made as the signer makes them.
"""
from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

import pytest

from ledgerstream.core import mldsa, records
from ledgerstream.core.wire import codec
from ledgerstream.core.verify import TrustedKeys
from ledgerstream.signer_worker.sequencer import Sequencer, Source
from ledgerstream.signer_worker.state import LedgerState
from ledgerstream.tools import replay as rp
from support.actions import make_action

ORIGIN = "ledgerstream/test"


class SyntheticLedger:
    """Entries and checkpoints as the signer writes them, kept as (offset, bytes) lists."""

    def __init__(self, key: mldsa.PrivateKey, signing_mode: str = "entry") -> None:
        self.key = key
        self.state = LedgerState()
        self.seq = Sequencer(self.state, key, signing_mode=signing_mode)
        self.entries: list[tuple[int, bytes]] = []
        self.checkpoints: list[tuple[int, bytes]] = []

    def add(self, action: dict[str, Any]) -> dict[str, Any]:
        out = self.seq.process(codec.encode("ActionEvent", action), Source("t.actions", 0, len(self.entries)))
        assert out.entry is not None, out
        self.entries.append((len(self.entries), codec.encode("LedgerEntry", out.entry)))
        return out.entry

    def checkpoint(self, *, key: mldsa.PrivateKey | None = None, token: bytes | None = None) -> bytes:
        st, signer = self.state, key or self.key
        size, created = st.tree.size, time.time_ns() // 1000
        body = records.checkpoint_body(ORIGIN, size, st.tree.root(), st.head, created)
        self.checkpoints.append((len(self.checkpoints), codec.encode("Checkpoint", {
            "spec_version": 1, "origin": ORIGIN, "tree_size": size, "root_hash": st.tree.root(),
            "chain_head": st.head, "created_at": created, "body": body,
            "key_id": signer.public_key().key_id, "signature": signer.sign(body)})))
        if token is not None:
            self.checkpoints.append((len(self.checkpoints), codec.encode("TimestampAnchor", {
                "tree_size": size, "body_hash": records.sha256(body),
                "timestamp": {"tsa": "test", "token": token}, "created_at": created})))
        return body


@pytest.fixture(scope="module")
def key() -> mldsa.PrivateKey:
    return mldsa.PrivateKey.generate()


@pytest.fixture(scope="module")
def keys(key: mldsa.PrivateKey) -> TrustedKeys:
    trusted = TrustedKeys()
    trusted.by_id[key.public_key().key_id] = key.public_key()
    trusted.sources[key.public_key().key_id] = "test"
    return trusted


def three_agent_ledger(key: mldsa.PrivateKey) -> tuple[SyntheticLedger, dict[str, str]]:
    """planner -> researcher -> writer calls (linked), plus unrelated noise, in two checkpoints."""
    led = SyntheticLedger(key)
    ids: dict[str, str] = {}
    led.add(make_action("noise", "tool:ping", session_id="s0"))
    ids["plan"] = led.add(make_action("planner", "llm:plan", session_id="s1"))["action"]["event_id"]
    ids["search"] = led.add(make_action("researcher", "tool:search", session_id="s1", links=[
        {"agent_id": "planner", "event_id": ids["plan"], "relation": "caused_by"}]))["action"]["event_id"]
    led.checkpoint()
    ids["write"] = led.add(make_action("writer", "data:write:report", session_id="s1", links=[
        {"agent_id": "researcher", "event_id": ids["search"], "relation": "caused_by"}]))["action"]["event_id"]
    ids["delete"] = led.add(make_action("writer", "data:delete:users", session_id="s2"))["action"]["event_id"]
    led.add(make_action("noise", "tool:ping", session_id="s0"))
    led.checkpoint()
    led.add(make_action("noise", "tool:ping", session_id="s0"))  # not yet in a checkpoint
    return led, ids


def replay(led: SyntheticLedger, keys: TrustedKeys, selection: rp.Selection,
           entries: list[tuple[int, bytes]] | None = None) -> tuple[rp.Ledger, list[rp.EntryReport]]:
    stream = entries if entries is not None else led.entries
    ledger = rp.build_ledger(stream, led.checkpoints, selection, keys)
    rows = rp.select(ledger, selection)
    rp.ensure_raw(ledger, rows, lambda offsets: {o: dict(stream)[o] for o in offsets})
    checker = rp.EntryChecker(ledger, keys, None)
    return ledger, [checker.check(r) for r in rows]


pytestmark = pytest.mark.unit


def test_everything_verifies_and_unpublished_is_pending(key, keys):
    led, _ = three_agent_ledger(key)
    ledger, reports = replay(led, keys, rp.Selection())
    assert [r.row.seq for r in reports] == list(range(7))
    assert all(r.ok for r in reports), [(r.row.seq, r.failed) for r in reports]
    assert [r.checks["inclusion"].status for r in reports] == ["ok"] * 6 + ["skip"]
    assert {r.checkpoint_size for r in reports[:6]} == {6}
    assert all(r.checks[c].status == "ok" for r in reports for c in ("entry_hash", "signature", "payload", "chain"))
    assert ledger.findings == []


@pytest.mark.parametrize("selection, want", [
    (rp.Selection(agents=("writer",)), ["data:write:report", "data:delete:users"]),
    (rp.Selection(sessions=("s1",)), ["llm:plan", "tool:search", "data:write:report"]),
    (rp.Selection(action_types=("data:*",)), ["data:write:report", "data:delete:users"]),
    (rp.Selection(action_types=("data:delete:*", "llm:*")), ["llm:plan", "data:delete:users"]),
    (rp.Selection(seq_from=1, seq_to=2), ["llm:plan", "tool:search"]),
    (rp.Selection(agents=("writer",), sessions=("s2",)), ["data:delete:users"]),
    (rp.Selection(agents=("nobody",)), []),
])
def test_filters(key, keys, selection, want):
    led, _ = three_agent_ledger(key)
    _, reports = replay(led, keys, selection)
    assert [r.row.action_type for r in reports] == want


def test_time_filters_use_received_at(key, keys):
    led, _ = three_agent_ledger(key)
    ledger = rp.build_ledger(led.entries, led.checkpoints, rp.Selection(), keys)
    cut = ledger.rows[3].received_at
    assert [r.seq for r in rp.select(ledger, rp.Selection(since_us=cut))] == [3, 4, 5, 6]
    assert [r.seq for r in rp.select(ledger, rp.Selection(until_us=cut))] == [0, 1, 2]


def test_follow_links_closure_across_three_agents(key, keys):
    led, ids = three_agent_ledger(key)
    # from the middle of the chain: both the caller (planner) and the callee (writer) come in
    _, reports = replay(led, keys, rp.Selection(agents=("researcher",), follow_links=True))
    assert [r.row.event_id for r in reports] == [ids["plan"], ids["search"], ids["write"]]
    assert all(r.ok for r in reports)
    # from the end of the chain, transitively back to the planner; unrelated writer event stays out
    _, reports = replay(led, keys, rp.Selection(action_types=("data:write:*",), follow_links=True))
    assert {r.row.agent_id for r in reports} == {"planner", "researcher", "writer"}
    assert ids["delete"] not in {r.row.event_id for r in reports}


def test_tampered_entry_is_shown_failed(key, keys):
    led, ids = three_agent_ledger(key)
    offset, raw = led.entries[2]
    _, entry = codec.decode(raw)
    entry["action"]["action_type"] = "tool:harmless"  # rewrite history, keep hash and signature
    entries = list(led.entries)
    entries[2] = (offset, codec.encode("LedgerEntry", entry))
    _, reports = replay(led, keys, rp.Selection(), entries)
    bad = reports[2]
    assert not bad.ok and bad.row.action_type == "tool:harmless" and not bad.row.on_chain
    # the core does not adopt it as entry 2 (hash_mismatch), so it is on no chain and in no checkpoint
    assert set(bad.failed) == {"entry_hash", "signature", "inclusion", "chain"}
    assert "hash_mismatch" in bad.checks["chain"].detail
    assert "recomputes" in bad.checks["entry_hash"].detail or "hashes to" in bad.checks["entry_hash"].detail
    # entry 3 links to the event the tampered record carried: seq 2 is missing from the ledger
    # (the finding), and the link names the hash entry 3's own prev_hash names for seq 2, so the
    # core finds the link consistent (docs/bundle-format.md step 12, D28 "Later")
    assert reports[3].checks["links"].status == "ok"
    assert all(r.ok for i, r in enumerate(reports) if i != 2)


def test_forged_record_is_a_visible_fork(key, keys):
    led, _ = three_agent_ledger(key)
    forged = make_action("planner", "data:delete:everything")
    attacker = SyntheticLedger(mldsa.PrivateKey.generate())
    fake = attacker.add(forged)  # seq 0 under another key
    entries = led.entries + [(len(led.entries), codec.encode("LedgerEntry", fake))]
    ledger, reports = replay(led, keys, rp.Selection(agents=("planner",)), entries)
    assert [r.ok for r in reports] == [True, False]
    assert {"chain", "signature", "inclusion"} <= set(reports[1].failed)
    assert not reports[1].row.on_chain and "unknown_key" in reports[1].checks["chain"].detail
    assert any(f.startswith("unknown_key:") for f in ledger.findings)
    assert any("1 record(s) on the entries topic are not entries of this ledger" in f for f in ledger.findings)
    assert ledger.size == len(led.entries)  # the genuine ledger, untouched by the forged record


@pytest.mark.parametrize("mode", ["entry", "checkpoint"])
def test_forged_entry_continuing_the_chain_is_never_adopted(key, keys, mode):
    """The attack of issue 17: a record continuing the chain exactly, written before the
    genuine entry of that seq. Replay must keep the genuine ledger, as the core does."""
    genuine = SyntheticLedger(key, signing_mode=mode)
    for i in range(5):
        genuine.add(make_action(f"agent-{i % 2}", "tool:search", session_id="s"))
    genuine.checkpoint()
    # the forger copies genuine entry 3 (same seq, prev_hash, agent chain), rewrites the action
    # and re-hashes it; signed with its own key, or (checkpoint mode) unsigned, naming the signer's key
    _, forged = codec.decode(genuine.entries[3][1])
    forged["action"].update(action_type="data:delete:everything", event_id="forged-1")
    attacker = mldsa.PrivateKey.generate()
    if mode == "entry":
        forged["key_id"] = attacker.public_key().key_id
    else:
        assert forged["signature"] is None and forged["key_id"] == key.public_key().key_id
    forged["entry_hash"] = records.entry_hash(forged)
    if mode == "entry":
        forged["signature"] = attacker.sign(records.entry_signing_message(forged["entry_hash"]))
    entries = genuine.entries[:3] + [(3, codec.encode("LedgerEntry", forged))] + \
        [(o + 1, raw) for o, raw in genuine.entries[3:]]
    ledger, reports = replay(genuine, keys, rp.Selection(), entries)
    on_chain = [r for r in reports if r.row.on_chain]
    assert [r.row.offset for r in on_chain] == [0, 1, 2, 4, 5]  # the genuine records, in seq order
    assert [r.row.entry_hash for r in on_chain] == [codec.decode(raw)[1]["entry_hash"] for _, raw in genuine.entries]
    assert all(r.ok for r in on_chain), [(r.row.seq, r.failed) for r in on_chain]
    assert [r.checks["inclusion"].status for r in on_chain] == ["ok"] * 5
    bad = next(r for r in reports if r.row.offset == 3)
    assert not bad.ok and not bad.row.on_chain and bad.row.action_type == "data:delete:everything"
    assert ("unknown_key" if mode == "entry" else "fork") in bad.checks["chain"].detail


def test_bad_checkpoint_signature_is_a_finding_and_entries_fall_back(key, keys):
    led, _ = three_agent_ledger(key)
    led.add(make_action("noise", "tool:ping"))
    led.checkpoint(key=mldsa.PrivateKey.generate())  # a checkpoint by an untrusted key
    ledger, reports = replay(led, keys, rp.Selection())
    assert any(f.startswith("checkpoint_bad_signature:") and "untrusted key" in f for f in ledger.findings)
    assert [r.checks["inclusion"].status for r in reports] == ["ok"] * 6 + ["skip", "skip"]


def test_undecodable_record_is_reported(key, keys):
    led, _ = three_agent_ledger(key)
    entries = led.entries + [(99, b"\xc3\x01garbage")]
    ledger, _ = replay(led, keys, rp.Selection(), entries)
    assert ledger.undecodable and ledger.undecodable[0][0] == 99


def test_parse_time_and_seq_range():
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert rp.parse_time("2h", now) == int(dt.datetime(2026, 1, 1, 10, 0, tzinfo=dt.timezone.utc).timestamp() * 1e6)
    assert rp.parse_time("2026-01-01T10:00:00Z") == rp.parse_time("2026-01-01T10:00:00")
    assert rp.parse_time("2026-01-01T11:00:00+01:00") == rp.parse_time("2026-01-01T10:00:00Z")
    assert rp.parse_seq_range("3..7") == (3, 7)
    assert rp.parse_seq_range("3..") == (3, None)
    assert rp.parse_seq_range("..7") == (None, 7)
    assert rp.parse_seq_range("5") == (5, 5)
    for bad in ("7..3", "x", "..", "1..2..3"):
        with pytest.raises(ValueError):
            rp.parse_seq_range(bad)
    with pytest.raises(ValueError):
        rp.parse_time("yesterday")


# --- benchmark ----------------------------------------------------------------------------------

BENCH_ENTRIES = int(os.environ.get("LEDGERSTREAM_REPLAY_BENCH_ENTRIES", "10000"))
BENCH_MODE = os.environ.get("LEDGERSTREAM_REPLAY_BENCH_MODE", "checkpoint")  # signing mode


@pytest.mark.integration
@pytest.mark.slow
def test_replay_rate_on_kafka(bootstrap, topics, key, keys, capsys):
    """Index + tree over N synthetic entries read from Kafka, then full checks on one agent's
    entries (1 in 50). docs/benchmarks-replay.md gives the commands and figures
    (LEDGERSTREAM_REPLAY_BENCH_ENTRIES, LEDGERSTREAM_REPLAY_BENCH_MODE=entry|checkpoint)."""
    from confluent_kafka import Producer

    led = SyntheticLedger(key, signing_mode=BENCH_MODE)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 50,
                         "batch.size": 1 << 20, "queue.buffering.max.messages": 1_000_000})
    agents = [f"agent-{i}" for i in range(50)]
    template = make_action("agent-0", "tool:search", {"q": "benchmark", "n": 1})
    t0 = time.perf_counter()
    for i in range(BENCH_ENTRIES):
        action = dict(template, event_id=f"ev-{i}", agent_id=agents[i % 50], session_id=f"s{i // 1000}",
                      action_type="data:delete:users" if i % 1000 == 7 else "tool:search")
        entry = led.add(action)
        producer.produce(topics.entries, led.entries[-1][1])
        led.entries.clear()  # keep memory flat: the bytes are in Kafka now
        if (i + 1) % 10_000 == 0:
            led.checkpoint()
            producer.produce(topics.checkpoints, led.checkpoints.pop()[1])
            producer.poll(0)
    led.checkpoint()
    producer.produce(topics.checkpoints, led.checkpoints.pop()[1])
    producer.flush(120)
    write_s = time.perf_counter() - t0
    assert entry["seq"] == BENCH_ENTRIES - 1

    selection = rp.Selection(agents=("agent-7",))
    t0 = time.perf_counter()
    ledger = rp.read_ledger(bootstrap, topics, selection, keys)
    index_s = time.perf_counter() - t0
    rows = rp.select(ledger, selection)
    t0 = time.perf_counter()
    checker = rp.EntryChecker(ledger, keys, None)
    reports = [checker.check(r) for r in rows]
    check_s = time.perf_counter() - t0
    assert ledger.size == BENCH_ENTRIES and not ledger.findings
    assert len(reports) == BENCH_ENTRIES // 50 and all(r.ok for r in reports)
    with capsys.disabled():
        print(f"\nreplay bench ({BENCH_MODE} signing, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}): "
              f"{BENCH_ENTRIES} entries written in {write_s:.1f}s; read + core checks + index + tree "
              f"{index_s:.2f}s = {BENCH_ENTRIES / index_s:,.0f} entries/s"
              f"; full checks on {len(reports)} selected: {check_s:.2f}s = "
              f"{len(reports) / max(check_s, 1e-9):,.0f} entries/s")
