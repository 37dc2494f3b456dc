"""signer_worker.snapshots: what a snapshot holds, when one is adopted and why one is not.

Pure: the ledger is built by the real Sequencer, "the entries topic" is a list indexed by
offset, and adoption is judged against the state a full replay of the same entries gives
(state.recover, the path that existed before snapshots)."""
from __future__ import annotations

import hashlib
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import mldsa as pyca_mldsa

from ledgerstream.core.config import Topics
from ledgerstream.core.wire import codec
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.signer_worker.loop import producer_config
from ledgerstream.signer_worker.settings import SignerSettings
from ledgerstream.signer_worker import snapshots
from ledgerstream.signer_worker.sequencer import Sequencer, Source
from ledgerstream.signer_worker.dedup import Columns
from ledgerstream.signer_worker.state import Known, LedgerState
from support.actions import make_action

pytestmark = pytest.mark.unit
ORIGIN = "ledgerstream/dev"


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate()


def _ledger(key: PrivateKey, n: int, horizon: int = 1000) -> tuple[LedgerState, list[bytes]]:
    st = LedgerState(horizon)
    seq = Sequencer(st, key)
    raws = []
    for i in range(n):
        out = seq.process(codec.encode("ActionEvent", make_action(agent_id=f"agent-{i % 4}", payload={"i": i})),
                          Source("t.actions", 0, i))
        raws.append(Sequencer.encode(out))
    return st, raws


def _snapshot(st: LedgerState, key: PrivateKey, writer: snapshots.SnapshotWriter | None = None,
              entries_offset: int | None = None) -> tuple[snapshots.Candidate, dict[str, bytes]]:
    writer = writer or snapshots.SnapshotWriter(100, 30.0, st.horizon)
    pending = writer.capture(st, ORIGIN, key.public_key().key_id, dict(st.unanchored))
    out = writer.finish(pending, st.next_seq - 1 if entries_offset is None else entries_offset, 0, key, 1)
    assert out is not None
    writer.committed(pending)
    store = snapshots.read_store((i, k, v) for i, (k, v) in enumerate(pending.chunk_records() + out))
    return store.candidates[0], store.chunks


def _view(st: LedgerState) -> tuple:
    return (st.next_seq, st.head, dict(st.agents), st.tree.size, st.tree.root(), st.events.knowns(),
            st.checkpoint_size)


def _entry_at(raws: list[bytes]):
    return lambda offset: raws[offset] if 0 <= offset < len(raws) else None


def test_adopting_a_snapshot_gives_the_state_of_a_full_replay(key):
    st, raws = _ledger(key, 37)
    cand, chunks = _snapshot(st, key)
    events = snapshots.check(cand, chunks, key.public_key(), ORIGIN, _entry_at(raws))
    adopted = LedgerState(1000)
    adopted.adopt(cand.record, events)
    replayed = LedgerState(1000)
    replayed.recover(enumerate(raws), [], key.public_key())
    assert _view(adopted) == _view(replayed)


def test_tail_after_a_snapshot_continues_to_the_same_state(key):
    st, raws = _ledger(key, 60)
    head_st = LedgerState(1000)
    head_st.recover(enumerate(raws[:41]), [], key.public_key())
    cand, chunks = _snapshot(head_st, key)
    adopted = LedgerState(1000)
    adopted.adopt(cand.record, snapshots.check(cand, chunks, key.public_key(), ORIGIN, _entry_at(raws)))
    adopted.recover(((i, raws[i]) for i in range(41, 60)), [], key.public_key())
    assert _view(adopted) == _view(st) and adopted.skipped_on_recovery == 0


def test_the_signature_is_over_the_spec_message(key):
    """docs/spec.md section 11: domain line || the record encoded with an empty signature,
    checked with pyca's ML-DSA-65 (not our wrapper)."""
    st, _ = _ledger(key, 5)
    cand, _ = _snapshot(st, key)
    rec = cand.record
    message = b"ledgerstream/signer-snapshot/v1\n" + codec.encode("SignerSnapshot", {**rec, "signature": b""})
    pyca_mldsa.MLDSA65PublicKey.from_public_bytes(key.public_key().raw).verify(bytes(rec["signature"]), message)


def _resign(rec: dict[str, Any], key: PrivateKey, **changes: Any) -> snapshots.Candidate:
    changed = dict(rec, **changes)
    changed["signature"] = key.sign(snapshots.signing_message(changed))
    return snapshots.Candidate("snapshot/0", 9, b"", changed)


@pytest.mark.parametrize("spoil,reason", [
    (lambda rec, key: snapshots.Candidate("snapshot/0", 9, b"\xc3\x01", None, "truncated"), "undecodable"),
    (lambda rec, key: snapshots.Candidate("snapshot/0", 9, b"", dict(rec, next_seq=rec["next_seq"] + 1)), "bad_signature"),
    (lambda rec, key: _resign(rec, PrivateKey.generate()), "bad_signature"),
    (lambda rec, key: snapshots.Candidate("snapshot/0", 9, b"", dict(rec, key_id="00" * 32)), "unknown_key"),
    (lambda rec, key: _resign(rec, key, origin="other/log"), "other_origin"),
    (lambda rec, key: _resign(rec, key, checkpoint_size=rec["next_seq"] + 1), "invalid"),
    (lambda rec, key: _resign(rec, key, tree_hashes=rec["tree_hashes"][:-1]), "invalid"),
    (lambda rec, key: _resign(rec, key, entries_offset=rec["entries_offset"] - 1), "head_mismatch"),
    (lambda rec, key: _resign(rec, key, entries_offset=10_000), "head_missing"),
    (lambda rec, key: _resign(rec, key, head=b"\x00" * 32), "head_mismatch"),
    (lambda rec, key: _resign(rec, key, agents=[dict(a, next_agent_seq=a["next_agent_seq"] + 1) for a in rec["agents"]]),
     "head_mismatch"),
    (lambda rec, key: _resign(rec, key, agents=[]), "head_mismatch"),
    (lambda rec, key: _resign(rec, key, dedup_chunks=[dict(rec["dedup_chunks"][0], key="dedup/gone")]), "chunk_missing"),
    (lambda rec, key: _resign(rec, key, dedup_chunks=[dict(rec["dedup_chunks"][0], sha256=b"\x00" * 32)]),
     "chunk_altered"),
    (lambda rec, key: _resign(rec, key, dedup_chunks=[dict(rec["dedup_chunks"][0], count=rec["dedup_chunks"][0]["count"] - 1)]),
     "chunk_invalid"),
])
def test_a_snapshot_is_refused_for_each_reason(key, spoil, reason):
    st, raws = _ledger(key, 23)
    cand, chunks = _snapshot(st, key)
    with pytest.raises(snapshots.SnapshotError) as exc:
        snapshots.check(spoil(cand.record, key), chunks, key.public_key(), ORIGIN, _entry_at(raws))
    assert exc.value.reason == reason


def test_a_head_entry_not_signed_by_us_is_refused(key):
    """Entries of another key at the snapshot's offset (a forged tail) are not its head."""
    other = PrivateKey.generate()
    st, raws = _ledger(other, 12)
    mine, _ = _ledger(key, 12)
    cand, chunks = _snapshot(mine, key)
    with pytest.raises(snapshots.SnapshotError) as exc:
        snapshots.check(cand, chunks, key.public_key(), ORIGIN, _entry_at(raws))
    assert exc.value.reason == "head_mismatch"


def _columns(events: list[tuple[str, Known]]) -> Columns:
    first = events[0][1].seq if events else 0
    return Columns.of(first, [e for e, _ in events], [k.agent_id for _, k in events], [k.action_type for _, k in events],
                      b"".join(k.entry_hash for _, k in events), b"".join(k.payload_hash for _, k in events))


def test_chunks_round_trip_and_refuse_inconsistent_columns():
    events = [(f"évt-{i}", Known(f"agent/{i % 3}", 100 + i, bytes([i]) * 32, bytes([255 - i]) * 32, "tool:x"))
              for i in range(5)]
    raw = snapshots.pack_chunk(_columns(events))
    # the record the schema describes (schemas/SignerDedupChunk.avsc), written field by field
    assert raw == codec.encode("SignerDedupChunk", {
        "first_seq": 100, "seqs": b"".join(struct.pack(">Q", 100 + i) for i in range(5)),
        "event_ids": "\n".join(e for e, _ in events).encode(),
        "agent_ids": "\n".join(k.agent_id for _, k in events).encode(),
        "action_types": b"tool:x\ntool:x\ntool:x\ntool:x\ntool:x",
        "entry_hashes": b"".join(k.entry_hash for _, k in events),
        "payload_hashes": b"".join(k.payload_hash for _, k in events)})
    assert snapshots.unpack_chunk(raw, 5).events() == events
    _, rec = codec.decode(raw)
    gap = dict(rec, seqs=rec["seqs"][:32] + struct.pack(">Q", 105))  # seq 104 missing
    with pytest.raises(snapshots.SnapshotError, match="consecutive"):
        snapshots.unpack_chunk(codec.encode("SignerDedupChunk", gap), 5)
    for count in (4, 6, -1, snapshots.CHUNK_MAX + 1):
        with pytest.raises(snapshots.SnapshotError):
            snapshots.unpack_chunk(raw, count)
    _, rec = codec.decode(raw)
    for column, value in [("event_ids", b"\xff\xfe"), ("agent_ids", b"a\nb"), ("entry_hashes", b"\x00" * 31)]:
        with pytest.raises(snapshots.SnapshotError):
            snapshots.unpack_chunk(codec.encode("SignerDedupChunk", dict(rec, **{column: value})), 5)
    with pytest.raises(snapshots.SnapshotError):
        snapshots.unpack_chunk(b"\xc3\x01garbage", 1)
    assert snapshots.unpack_chunk(snapshots.pack_chunk(_columns([])), 0).events() == []


def test_read_store_keeps_the_latest_value_per_key_like_compaction(key):
    st, _ = _ledger(key, 3)
    cand, _ = _snapshot(st, key)
    newer_st, _ = _ledger(key, 6)
    newer, _ = _snapshot(newer_st, key)
    store = snapshots.read_store([
        (0, b"dedup/a", b"one"), (1, b"snapshot/0", cand.raw or codec.encode("SignerSnapshot", cand.record)),
        (2, b"dedup/a", b"two"), (3, b"dedup/b", b"x"), (4, b"dedup/b", None),
        (5, b"snapshot/1", codec.encode("SignerSnapshot", newer.record)), (6, b"snapshot/2", b"\xc3\x01junk"),
        (7, b"other", b"ignored"),
    ])
    assert store.chunks == {"dedup/a": b"two"}
    assert [(c.key, c.record is None) for c in store.candidates] == [
        ("snapshot/2", True), ("snapshot/1", False), ("snapshot/0", False)]


def test_writer_chunks_the_window_and_drops_what_leaves_the_horizon(key, monkeypatch):
    monkeypatch.setattr(snapshots, "CHUNK_WRITE", 4)
    st, raws = _ledger(key, 10, horizon=8)
    writer = snapshots.SnapshotWriter(5, 30.0, 8)
    first, chunks = _snapshot(st, key, writer)
    # after a replay, the whole window (the last 8 events) in chunks of at most 4
    assert [(c["first_seq"], c["count"]) for c in first.record["dedup_chunks"]] == [(2, 4), (6, 4)]
    seq = Sequencer(st, key)
    for i in range(10, 17):
        raws.append(Sequencer.encode(seq.process(codec.encode("ActionEvent", make_action(payload={"i": i})),
                                                 Source("t.actions", 0, i))))
    pending = writer.capture(st, ORIGIN, key.public_key().key_id, {})
    assert [(r.first_seq, r.count) for r in pending.dropped] == [(2, 4)]  # seqs 2..5 < 17 - 8
    assert [(c["first_seq"], c["count"]) for c in pending.record["dedup_chunks"]] == [(6, 4), (10, 4), (14, 3)]
    out = writer.finish(pending, 16, 0, key, 2)
    assert out == [(b"dedup/00000000000000000002", None), (b"snapshot/1", out[-1][1])]
    out = pending.chunk_records() + out
    store = snapshots.read_store((i, k, v) for i, (k, v) in enumerate(
        [(k.encode(), v) for k, v in chunks.items()] + out))
    window = snapshots.check(store.candidates[0], store.chunks, key.public_key(), ORIGIN, _entry_at(raws))
    events = [e for run in window for e in run.events()]
    adopted = LedgerState(8)
    adopted.adopt(store.candidates[0].record, window)
    assert adopted.events.knowns() == st.events.knowns() and len(adopted.events) == 8
    assert all(adopted.events.get(e) == st.events.get(e) == k for e, k in events[-8:])


def test_a_written_chunk_fits_one_producer_batch():
    """CHUNK_WRITE events with UUID ids and 40-character agent ids and action types make a
    chunk below the signer producer's batch.size, so no chunk needs a request of its own."""
    n = snapshots.CHUNK_WRITE
    events = Columns.of(7, [str(uuid.uuid4()) for _ in range(n)], ["a" * 40] * n, ["tool:" + "x" * 35] * n,
                        bytes(32 * n), bytes(32 * n))
    assert len(snapshots.pack_chunk(events)) < producer_config(SignerSettings(
        bootstrap="127.0.0.1:9", topics=Topics.with_prefix("t."), key_path=Path("k")))["batch.size"]
    assert snapshots.CHUNK_WRITE <= snapshots.CHUNK_MAX  # what is written, a reader accepts


def test_when_a_snapshot_is_due(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(snapshots.time, "monotonic", lambda: now[0])
    w = snapshots.SnapshotWriter(100, 30.0, 1000)
    assert not w.due(99) and w.due(100)
    now[0] += 30
    assert w.due(1) and not w.due(0)
    assert not snapshots.SnapshotWriter(0, 30.0, 1000).due(10**6)  # 0: never
    w.restart_from(None)  # after a full replay: the first transaction with entries writes one
    assert w.due(1)


def test_a_too_large_snapshot_is_not_written(key, monkeypatch):
    monkeypatch.setattr(snapshots, "MAX_SNAPSHOT_BYTES", 1000)
    st, _ = _ledger(key, 3)
    writer = snapshots.SnapshotWriter(1, 30.0, 1000)
    pending = writer.capture(st, ORIGIN, key.public_key().key_id, {})
    assert writer.finish(pending, 2, 0, key, 1) is None and writer.skipped_too_large == 1


def test_chunk_hash_covers_the_bytes_as_written(key):
    st, _ = _ledger(key, 4)
    cand, chunks = _snapshot(st, key)
    ref = cand.record["dedup_chunks"][0]
    assert bytes(ref["sha256"]) == hashlib.sha256(chunks[ref["key"]]).digest()


def test_chunks_of_a_snapshot_never_finished_break_nothing(key, monkeypatch):
    """The loop produces a capture's chunks before it knows whether the snapshot will be
    written (a flush that times out, a snapshot too large). Committed without it, those
    chunks must leave the last written snapshot adoptable, and the next capture rewrites
    the same keys."""
    monkeypatch.setattr(snapshots, "CHUNK_WRITE", 4)
    st, raws = _ledger(key, 10, horizon=8)
    writer = snapshots.SnapshotWriter(5, 30.0, 8)
    first, chunks = _snapshot(st, key, writer)
    seq = Sequencer(st, key)

    def more(n: int) -> None:
        for _ in range(n):
            i = len(raws)
            raws.append(Sequencer.encode(seq.process(codec.encode("ActionEvent", make_action(payload={"i": i})),
                                                     Source("t.actions", 0, i))))

    more(5)
    skipped = writer.capture(st, ORIGIN, key.public_key().key_id, {})
    writer.postpone(skipped)  # what the loop does when the snapshot is not written
    live = {c["key"].encode() for c in first.record["dedup_chunks"]}
    assert skipped.chunk_records() and not live & {k for k, _ in skipped.chunk_records()}
    on_topic = [(k.encode(), v) for k, v in chunks.items()] + [(b"snapshot/0", first.raw)] + skipped.chunk_records()
    store = snapshots.read_store((i, k, v) for i, (k, v) in enumerate(on_topic))
    assert [c.raw for c in store.candidates] == [first.raw]
    window = snapshots.check(store.candidates[0], store.chunks, key.public_key(), ORIGIN, _entry_at(raws))
    assert sum(len(c) for c in window) == 8

    more(3)
    pending = writer.capture(st, ORIGIN, key.public_key().key_id, {})
    assert {k for k, _ in skipped.chunk_records()} <= {k for k, _ in pending.chunk_records()}
    out = writer.finish(pending, len(raws) - 1, 0, key, 2)
    assert out is not None
    store = snapshots.read_store((i, k, v) for i, (k, v) in enumerate(on_topic + pending.chunk_records() + out))
    newest = store.candidates[0]
    assert newest.record["next_seq"] == 18
    adopted = LedgerState(8)
    adopted.adopt(newest.record, snapshots.check(newest, store.chunks, key.public_key(), ORIGIN, _entry_at(raws)))
    assert adopted.events.knowns() == st.events.knowns()
