"""Signer snapshots on the real broker: a restart adopts the latest snapshot and replays
only the tail; a tampered, truncated, forged or stale snapshot is refused with a
``snapshot_rejected`` alert and the signer falls back (older snapshot, else full replay)
without forking. The ledger is checked from first principles each time (test_signer_helpers)."""
from __future__ import annotations

import uuid
from typing import Any

import pytest
from confluent_kafka import Producer

from ledgerstream.core import mldsa
from ledgerstream.core.wire import codec
from ledgerstream.signer_worker import snapshots
from support.actions import make_action
from test_signer_helpers import _close_tails  # noqa: F401  (autouse fixture)
from test_signer_helpers import (TopicTail, action_items, check_checkpoints, check_ledger, produce,
                                 split_checkpoints, wait_until)

pytestmark = [pytest.mark.integration]

# recovery on start (a standby's warm takeover is test_signer_standby's)
ARGS = ("--snapshot-every", "100", "--checkpoint-every", "50", "--batch-size", "60", "--no-leader-election")


def _actions(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [make_action(agent_id=f"agent-{i % 3}", action_type="tool:step", payload={"i": i})
            for i in range(start, start + n)]


def _committed(bootstrap: str, topic: str, total: int, signer: Any) -> list[dict[str, Any]]:
    tail = TopicTail(bootstrap, topic)
    wait_until(lambda: tail.poll() >= total, 90, f"{total} entries", on_timeout=signer.log)
    return [rec for _, rec in tail.decoded("LedgerEntry")]


def _snapshot_records(bootstrap: str, topic: str) -> list[tuple[int, bytes, dict[str, Any]]]:
    from ledgerstream.core.topic_reader import read_keyed

    out = []
    for offset, key, value in read_keyed(bootstrap, topic):
        if key and key.startswith(b"snapshot/") and value:
            out.append((offset, key, codec.decode(value, expect="SignerSnapshot")[1]))
    return out


def _write(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    p.produce(topic, value, key=key)
    assert p.flush(30) == 0


def _alerts(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    out = []
    for partition in range(3):  # the alerts topic's layout (config.TOPIC_LAYOUT)
        tail = TopicTail(bootstrap, topic, partition)
        tail.poll(1.0)
        out += [rec for _, rec in tail.decoded("Alert")]
    return out


def _first_ledger(bootstrap: str, topics: Any, start_signer: Any, first: list[dict[str, Any]]):
    signer = start_signer(*ARGS)
    produce(bootstrap, topics.actions, action_items(first))
    entries = _committed(bootstrap, topics.entries, len(first), signer)
    wait_until(lambda: signer.status().get("snapshots", {}).get("last_seq", 0) >= 300, 30, "snapshots written",
               on_timeout=signer.log)
    signer.kill9()
    return entries


def _finish(bootstrap: str, topics: Any, signer: Any, first: list[dict], pub: mldsa.PublicKey) -> list[dict]:
    """Send more actions (a duplicate of an early event, a link to one), check the whole ledger."""
    more = _actions(30, start=len(first))
    more[0]["links"] = [{"agent_id": first[3]["agent_id"], "event_id": first[3]["event_id"], "relation": "caused_by"}]
    produce(bootstrap, topics.actions, action_items([first[5], *more]))  # first[5]: already sequenced
    total = len(first) + len(more)
    entries = _committed(bootstrap, topics.entries, total, signer)
    cp_tail = TopicTail(bootstrap, topics.checkpoints)
    wait_until(lambda: cp_tail.poll() and any(n == "Checkpoint" and r["tree_size"] == total for n, r in cp_tail.decoded()),
               30, "final checkpoint", on_timeout=signer.log)
    assert TopicTail(bootstrap, topics.entries).poll(1.0) == total, "the duplicate was sequenced again"
    check_ledger(entries, pub)
    check_checkpoints(entries, split_checkpoints(cp_tail.decoded())[0], pub)
    assert {e["action"]["event_id"] for e in entries} == {a["event_id"] for a in first + more}
    linked = next(e for e in entries if e["action"]["event_id"] == more[0]["event_id"])["resolved_links"][0]
    target = next(e for e in entries if e["action"]["event_id"] == first[3]["event_id"])
    assert (linked["status"], linked["seq"], linked["entry_hash"]) == ("resolved", target["seq"], target["entry_hash"]), \
        "the dedup window lost an early event"
    assert signer.status()["duplicates"] == 1
    return entries


def test_restart_adopts_the_latest_snapshot(bootstrap, topics, start_signer, signer_key_path):
    pub = mldsa.load_private_key(signer_key_path).public_key()
    first = _actions(450)
    _first_ledger(bootstrap, topics, start_signer, first)
    snaps = _snapshot_records(bootstrap, topics.signer_state)
    assert {key for _, key, _ in snaps} == {b"snapshot/0", b"snapshot/1"}
    latest = max(rec["next_seq"] for _, _, rec in snaps)
    assert latest >= 300
    signer = start_signer(*ARGS)
    signer.wait_role("leader")
    got = signer.status()["recovered_from"]
    assert got == {"snapshot_seq": latest, "tail_entries": 450 - latest, "snapshots_rejected": 0, "warm": False}
    _finish(bootstrap, topics, signer, first, pub)
    assert not _alerts(bootstrap, topics.alerts)


def _tampered(rec: dict, raw: bytes, key: mldsa.PrivateKey) -> bytes:
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x01
    return bytes(flipped)


def _truncated(rec: dict, raw: bytes, key: mldsa.PrivateKey) -> bytes:
    return raw[: len(raw) // 2]


def _forged(rec: dict, raw: bytes, key: mldsa.PrivateKey) -> bytes:
    """A snapshot that moves an agent's chain back, signed by another key but naming ours."""
    forged = dict(rec, agents=[dict(a, next_agent_seq=0) for a in rec["agents"]])
    forged["signature"] = mldsa.PrivateKey.generate().sign(snapshots.signing_message(forged))
    return codec.encode("SignerSnapshot", forged)


def _stale_head(rec: dict, raw: bytes, key: mldsa.PrivateKey) -> bytes:
    """Signed with the real key, but its head is not the entry at its offset (e.g. a lost write)."""
    stale = dict(rec, entries_offset=rec["entries_offset"] - 7)
    stale["signature"] = key.sign(snapshots.signing_message(stale))
    return codec.encode("SignerSnapshot", stale)


# Each way of spoiling the newest snapshot (falls back to the older one); both slots spoiled
# (falls back to a full replay) once: which check refuses a record does not depend on how
# many are refused, and every reason is also checked record by record in
# tests/unit/test_signer_snapshot_checks.py.
@pytest.mark.parametrize("spoil,reason,slots", [
    (_tampered, "bad_signature", "newest"), (_truncated, "undecodable", "newest"),
    (_forged, "bad_signature", "newest"), (_stale_head, "head_mismatch", "newest"),
    (_forged, "bad_signature", "both")])
def test_bad_snapshot_falls_back_with_an_alert(bootstrap, topics, start_signer, signer_key_path, spoil, reason, slots):
    key = mldsa.load_private_key(signer_key_path)
    first = _actions(450)
    _first_ledger(bootstrap, topics, start_signer, first)
    snaps = sorted(_snapshot_records(bootstrap, topics.signer_state), key=lambda s: s[2]["next_seq"])
    by_key = {k: (o, rec) for o, k, rec in snaps}  # the latest record per key, as compaction keeps
    ordered = sorted(by_key.items(), key=lambda kv: kv[1][1]["next_seq"])
    (old_key, (_, old)), (new_key, (_, new)) = ordered[-2], ordered[-1]
    spoiled = [(new_key, new)] + ([(old_key, old)] if slots == "both" else [])
    for k, rec in spoiled:
        _write(bootstrap, topics.signer_state, k, spoil(rec, codec.encode("SignerSnapshot", rec), key))
    signer = start_signer(*ARGS)
    signer.wait_role("leader")
    got = signer.status()["recovered_from"]
    assert got["snapshots_rejected"] == len(spoiled)
    assert got["snapshot_seq"] == (old["next_seq"] if slots == "newest" else None)
    assert got["tail_entries"] == 450 - (old["next_seq"] if slots == "newest" else 0)
    _finish(bootstrap, topics, signer, first, key.public_key())
    alerts = [a for a in _alerts(bootstrap, topics.alerts) if a["kind"] == "snapshot_rejected"]
    assert sorted(a["evidence"]["key"] for a in alerts) == sorted(k.decode() for k, _ in spoiled)
    assert {a["evidence"]["reason"] for a in alerts} == {reason}
    assert all(a["verifier_id"] == "signer" and a["key_id"] == key.public_key().key_id for a in alerts)


def test_missing_dedup_chunk_falls_back(bootstrap, topics, start_signer, signer_key_path):
    """A snapshot whose dedup chunk is gone (deleted by someone) is not adopted: without the
    chunk the window would silently lose events and a duplicate would be sequenced twice."""
    key = mldsa.load_private_key(signer_key_path)
    first = _actions(450)
    _first_ledger(bootstrap, topics, start_signer, first)
    for _, _, rec in _snapshot_records(bootstrap, topics.signer_state):
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        p.produce(topics.signer_state, None, key=rec["dedup_chunks"][0]["key"].encode())  # a tombstone
        assert p.flush(30) == 0
    signer = start_signer(*ARGS)
    signer.wait_role("leader")
    got = signer.status()["recovered_from"]
    assert got["snapshot_seq"] is None and got["snapshots_rejected"] == 2
    _finish(bootstrap, topics, signer, first, key.public_key())
    reasons = {a["evidence"]["reason"] for a in _alerts(bootstrap, topics.alerts)}
    assert reasons == {"chunk_missing"}


def test_without_the_topic_the_signer_replays_everything(bootstrap, start_signer, signer_key_path, tmp_path):
    """An installation from before snapshots (no signer-state topic) keeps working."""
    from ledgerstream.core.config import Topics
    from ledgerstream.stack.topics import ensure_topics

    t = Topics.with_prefix(f"t{uuid.uuid4().hex[:10]}.")
    ensure_topics(bootstrap, Topics(**{**t.as_dict(), "signer_state": ""}))
    from conftest import SignerProcess

    signer = SignerProcess(bootstrap, t, signer_key_path, tmp_path, *ARGS)
    try:
        produce(bootstrap, t.actions, action_items(_actions(120)))
        _committed(bootstrap, t.entries, 120, signer)
        status = signer.status()
        assert status["snapshots"]["off"] == "no signer-state topic" and status["snapshots"]["written"] == 0
    finally:
        signer.stop()
