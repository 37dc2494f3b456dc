"""signer_worker.sequencer and state: the ledger rules, pure (no Kafka).

Real ML-DSA-65 keys and signatures throughout; signatures are checked with pyca
directly over records.entry_signing_message, not through the signer's own key object.
"""
from __future__ import annotations

import hashlib
import os
import random
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature as PycaInvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa as pyca_mldsa

from ledgerstream.core import mldsa, records
from ledgerstream.core.wire import codec
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.signer_worker.sequencer import Outcome, Sequencer, Source
from ledgerstream.signer_worker.state import LedgerState
from support.actions import make_action

pytestmark = pytest.mark.unit

SRC = Source("t.actions", 3, 41, b"agent-a")


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate()


def _seq(key: PrivateKey, **kwargs: Any) -> Sequencer:
    return Sequencer(LedgerState(kwargs.pop("dedup_horizon", 1000)), key, **kwargs)


def _src(offset: int, partition: int = 0) -> Source:
    return Source("t.actions", partition, offset, None)


def _feed(seq: Sequencer, actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    entries = []
    for i, action in enumerate(actions):
        out = seq.process(codec.encode("ActionEvent", action), _src(i, i % 4))
        assert out.entry is not None, out
        entries.append(out.entry)
    return entries


def _pyca(key: PrivateKey) -> pyca_mldsa.MLDSA65PublicKey:
    return pyca_mldsa.MLDSA65PublicKey.from_public_bytes(key.public_key().raw)


def _state_view(st: LedgerState) -> tuple:
    return st.next_seq, st.head, dict(st.agents), st.tree.size, st.tree.root(), st.events.knowns()


# --- sequencing ------------------------------------------------------------------------------

def test_seq_is_gapless_and_prev_hash_chains(key: PrivateKey) -> None:
    seq = _seq(key)
    entries = _feed(seq, [make_action(payload={"i": i}) for i in range(25)])
    assert [e["seq"] for e in entries] == list(range(25))
    assert bytes(entries[0]["prev_hash"]) == records.ZERO_HASH
    for before, after in zip(entries, entries[1:]):
        assert after["prev_hash"] == before["entry_hash"]
    assert seq.state.next_seq == 25 and seq.state.head == entries[-1]["entry_hash"]


def test_entry_hash_is_the_records_encoder_and_survives_the_wire(key: PrivateKey) -> None:
    entries = _feed(_seq(key), [make_action(payload={"i": i}) for i in range(5)])
    for e in entries:
        assert e["entry_hash"] == records.entry_hash(e)
        _, decoded = codec.decode(codec.encode("LedgerEntry", e), expect="LedgerEntry")
        assert records.entry_hash(decoded) == e["entry_hash"]
        altered = dict(decoded, received_at=decoded["received_at"] + 1)
        assert records.entry_hash(altered) != e["entry_hash"]


def test_entry_records_source_and_key(key: PrivateKey) -> None:
    out = _seq(key).process(codec.encode("ActionEvent", make_action()), SRC)
    assert out.entry["source"] == {"topic": "t.actions", "partition": 3, "offset": 41}
    assert out.entry["key_id"] == key.public_key().key_id
    assert out.entry["timestamp_token"] is None


def test_agent_chains_across_interleaved_agents(key: PrivateKey) -> None:
    rng = random.Random(7)
    agents = [rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(60)]
    entries = _feed(_seq(key), [make_action(agent_id=a, payload={"n": n}) for n, a in enumerate(agents)])
    last: dict[str, dict] = {}
    for e in entries:
        agent = e["action"]["agent_id"]
        prev = last.get(agent)
        assert e["agent_seq"] == (0 if prev is None else prev["agent_seq"] + 1)
        assert bytes(e["agent_prev_hash"]) == (records.ZERO_HASH if prev is None else prev["entry_hash"])
        last[agent] = e
    assert {a: e["agent_seq"] + 1 for a, e in last.items()} == {a: agents.count(a) for a in set(agents)}


@pytest.mark.parametrize("backend", mldsa.available_backends())
def test_signature_verifies_with_pyca_over_the_entry_signing_message(backend: str) -> None:
    key = PrivateKey.generate(backend)
    verifier = _pyca(key)
    entries = _feed(_seq(key), [make_action(payload={"i": i}) for i in range(4)])
    for e in entries:
        message = records.entry_signing_message(e["entry_hash"])
        assert message == records.TAG_ENTRY_SIGNATURE + e["entry_hash"]
        verifier.verify(e["signature"], message)
    # and the bad ones fail: another entry's message, a flipped bit, another key
    with pytest.raises(PycaInvalidSignature):
        verifier.verify(entries[0]["signature"], records.entry_signing_message(entries[1]["entry_hash"]))
    flipped = bytearray(entries[0]["signature"])
    flipped[100] ^= 1
    with pytest.raises(PycaInvalidSignature):
        verifier.verify(bytes(flipped), records.entry_signing_message(entries[0]["entry_hash"]))
    with pytest.raises(PycaInvalidSignature):
        _pyca(PrivateKey.generate("pyca")).verify(entries[0]["signature"],
                                                  records.entry_signing_message(entries[0]["entry_hash"]))


def test_checkpoint_mode_leaves_the_signature_null(key: PrivateKey) -> None:
    seq = _seq(key, signing_mode="checkpoint")
    entries = _feed(seq, [make_action(payload={"i": i}) for i in range(5)])
    assert all(e["signature"] is None for e in entries)
    assert all(e["entry_hash"] == records.entry_hash(e) for e in entries)
    assert seq.state.tree.size == 5


def test_every_entry_is_integrated_into_the_tree(key: PrivateKey) -> None:
    from support import rfc9162_checker as rfc9162

    seq = _seq(key)
    assert seq.state.tree.root() == rfc9162.mth_from_leaf_hashes([])
    entries = []
    for i in range(13):
        entries += _feed(seq, [make_action(payload={"i": i})])
        leaves = [rfc9162.hash_leaf(records.merkle_leaf_input(e["entry_hash"])) for e in entries]
        assert seq.state.tree.root() == rfc9162.mth_from_leaf_hashes(leaves)


# --- dedup -----------------------------------------------------------------------------------

def test_same_event_same_content_is_a_duplicate(key: PrivateKey) -> None:
    seq = _seq(key)
    raw = codec.encode("ActionEvent", make_action())
    first = seq.process(raw, _src(0))
    before = _state_view(seq.state)
    again = seq.process(raw, _src(1, 2))
    assert again == Outcome(duplicate_of=first.entry["seq"])
    assert _state_view(seq.state) == before and seq.duplicates == 1


def test_same_event_different_content_is_a_conflict(key: PrivateKey) -> None:
    seq = _seq(key)
    original = make_action(event_id="evt-1")
    seq.process(codec.encode("ActionEvent", original), _src(0))
    before = _state_view(seq.state)
    other_payload = make_action(event_id="evt-1", payload={"q": "something else"})
    other_agent = dict(original, agent_id="agent-b")
    other_type = dict(original, action_type="data:delete:users")
    for i, action in enumerate([other_payload, other_agent, other_type]):
        raw = codec.encode("ActionEvent", action)
        out = seq.process(raw, _src(10 + i))
        assert out.entry is None and out.duplicate_of is None
        assert out.dead_letter["reason"] == "duplicate_conflict"
        assert out.dead_letter["original"] == raw
        assert "seq 0" in out.dead_letter["detail"]
    assert _state_view(seq.state) == before


def test_dedup_is_bounded_by_the_horizon(key: PrivateKey) -> None:
    """Documented limit: an event_id older than the horizon is no longer remembered."""
    seq = _seq(key, dedup_horizon=3)
    raws = [codec.encode("ActionEvent", make_action(payload={"i": i})) for i in range(4)]
    for i, raw in enumerate(raws):
        seq.process(raw, _src(i))
    assert seq.process(raws[3], _src(9)).duplicate_of == 3
    assert seq.process(raws[0], _src(10)).entry is not None  # forgotten, so sequenced again


# --- links -----------------------------------------------------------------------------------

def test_links_resolved_and_pending(key: PrivateKey) -> None:
    seq = _seq(key)
    a = seq.process(codec.encode("ActionEvent", make_action(agent_id="planner")), _src(0)).entry
    links = [
        {"agent_id": "planner", "event_id": a["action"]["event_id"], "relation": "caused_by"},
        {"agent_id": "ghost", "event_id": "not-yet-seen", "relation": "caused_by"},
        {"agent_id": "someone-else", "event_id": a["action"]["event_id"], "relation": "caused_by"},
    ]
    b = seq.process(codec.encode("ActionEvent", make_action(agent_id="worker", links=links)), _src(1)).entry
    resolved, pending, wrong_agent = b["resolved_links"]
    assert resolved == {"agent_id": "planner", "event_id": a["action"]["event_id"], "status": "resolved",
                        "seq": 0, "entry_hash": a["entry_hash"]}
    assert pending == {"agent_id": "ghost", "event_id": "not-yet-seen", "status": "pending",
                       "seq": None, "entry_hash": None}
    assert wrong_agent["status"] == "pending" and wrong_agent["seq"] is None
    assert b["entry_hash"] == records.entry_hash(b)  # the resolution is committed by the hash


# --- dead letters ----------------------------------------------------------------------------

def _unknown_fingerprint() -> bytes:
    body = codec.encode("ActionEvent", make_action())[codec.HEADER_LEN:]
    return codec.MAGIC + os.urandom(8) + body


def _bad(**changes: Any) -> bytes:
    return codec.encode("ActionEvent", dict(make_action(), **changes))


def _mismatched_hash() -> bytes:
    action = make_action()
    return codec.encode("ActionEvent", dict(action, payload_hash=records.sha256(b"something else")))


BAD_INPUT = {
    "garbage": (lambda: b"this is not avro at all", "undecodable"),
    "empty": (lambda: b"", "undecodable"),
    "none": (lambda: None, "undecodable"),
    "truncated_body": (lambda: codec.encode("ActionEvent", make_action())[:-7], "undecodable"),
    "trailing_bytes": (lambda: codec.encode("ActionEvent", make_action()) + b"\x00", "undecodable"),
    "unknown_fingerprint": (_unknown_fingerprint, "unknown_schema"),
    "wrong_record_type": (lambda: codec.encode("DeadLetter", {
        "reason": "x", "detail": "y", "original": b"", "original_key": None,
        "source": {"topic": "t", "partition": 0, "offset": 0}, "received_at": 0}), "unexpected_type"),
    "malformed_action_type": (lambda: _bad(action_type="bad type!"), "invalid_field"),
    "empty_action_type": (lambda: _bad(action_type=""), "invalid_field"),
    "payload_hash_mismatch": (_mismatched_hash, "invalid_field"),
    "missing_payload_salt": (lambda: _bad(payload_salt=None), "invalid_field"),
    "short_salt": (lambda: _bad(payload_salt=b"\x01" * 8), "invalid_field"),
    "short_payload_hash": (lambda: _bad(payload=None, payload_salt=None, payload_hash=b"\x01" * 31),
                           "invalid_field"),
    "empty_agent_id": (lambda: _bad(agent_id=""), "invalid_field"),
    "negative_occurred_at": (lambda: _bad(occurred_at=-5), "invalid_field"),
    "occurred_at_beyond_json_integers": (lambda: _bad(occurred_at=2**60), "invalid_field"),
    "link_without_event": (lambda: _bad(links=[{"agent_id": "a", "event_id": "", "relation": "x"}]),
                           "invalid_field"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_dead_lettered_with_reason_bytes_and_source(key: PrivateKey, case: str) -> None:
    make, reason = BAD_INPUT[case]
    seq = _seq(key)
    first = seq.process(codec.encode("ActionEvent", make_action()), _src(0)).entry
    before = _state_view(seq.state)
    raw = make()
    out = seq.process(raw, SRC)
    assert out.entry is None and out.duplicate_of is None
    dl = out.dead_letter
    assert dl["reason"] == reason, dl["detail"]
    assert dl["detail"]
    assert dl["original"] == (raw or b"") and dl["original_key"] == SRC.key
    assert dl["original_size"] == len(raw or b"") and dl["original_sha256"] == hashlib.sha256(raw or b"").digest()
    assert dl["source"] == {"topic": SRC.topic, "partition": SRC.partition, "offset": SRC.offset}
    codec.decode(codec.encode("DeadLetter", dl), expect="DeadLetter")  # it fits the wire schema
    # nothing was sequenced, and the chain continues where it was
    assert _state_view(seq.state) == before
    nxt = seq.process(codec.encode("ActionEvent", make_action()), _src(2)).entry
    assert nxt["seq"] == 1 and nxt["prev_hash"] == first["entry_hash"]


def test_oversized_against_the_limit(key: PrivateKey) -> None:
    raw = codec.encode("ActionEvent", make_action(payload={"blob": "x" * 2000}))
    at_limit = _seq(key, max_record_bytes=len(raw)).process(raw, SRC)
    assert at_limit.entry is not None
    over = _seq(key, max_record_bytes=len(raw) - 1).process(raw, SRC)
    assert over.dead_letter["reason"] == "oversized"
    assert over.dead_letter["original"] == raw
    assert str(len(raw)) in over.dead_letter["detail"]



# --- the LedgerEntry record: spliced action bytes, and the codec fallback ----------------------

def _varied_actions(seq: Sequencer) -> list[dict[str, Any]]:
    """Links (resolved, pending, to another agent), policy, approvals, trace, hash-only."""
    first = seq.process(codec.encode("ActionEvent", make_action(agent_id="planner")), _src(0)).entry
    known = first["action"]["event_id"]
    hash_only = make_action(agent_id="worker")
    hash_only.update(payload=None, payload_salt=None)
    rich = make_action(agent_id="worker", session_id="sess-é", links=[
        {"agent_id": "planner", "event_id": known, "relation": "caused_by"},
        {"agent_id": "ghost", "event_id": "later", "relation": "follows"},
        {"agent_id": "other", "event_id": known, "relation": "caused_by"}])
    rich.update(policy={"decision": "approved", "rule": "r-7", "reason": None},
                approvals=[{"request_id": "req-1", "approver_id": "alice", "key_id": "ab" * 32,
                            "decision": "approve", "approved_at": 1_700_000_000_000_000,
                            "signature": os.urandom(3309)}],
                trace={"trace_id": "t" * 32, "span_id": "s" * 16, "parent_span_id": None}, offline=True)
    rich["producer"]["adapter"] = "langchain"
    return [hash_only, rich, make_action(agent_id="planner", payload={"emoji": "😀", "n": [1, 2.5, None]})]


@pytest.mark.parametrize("mode", ["entry", "checkpoint"])
def test_entries_are_written_by_splicing_byte_identical_to_codec(key: PrivateKey, mode: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seq = _seq(key, signing_mode=mode)
    actions = _varied_actions(seq)
    raws = [codec.encode("ActionEvent", a) for a in actions]
    outs = [seq.process(raw, _src(10 + i)) for i, raw in enumerate(raws)]
    outs[1].entry["timestamp_token"] = os.urandom(1200)  # --timestamp-mode entry
    expected = [codec.encode("LedgerEntry", o.entry) for o in outs]
    # the spliced path is the one taken: codec.encode is not called at all
    monkeypatch.setattr(codec, "encode", lambda *a, **k: pytest.fail("codec.encode used"))
    for raw, out, want in zip(raws, outs, expected):
        assert out.action_body == raw[codec.HEADER_LEN:]
        assert Sequencer.encode(out) == want
        assert (out.entry["signature"] is None) == (mode == "checkpoint")
    assert outs[1].entry["resolved_links"][0]["status"] == "resolved"
    assert outs[1].entry["resolved_links"][1]["status"] == "pending"


def test_an_older_writer_schema_falls_back_to_codec(key: PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from tests.unit.test_codec import ACTION_EVENT_V0

    reg = codec.SchemaRegistry.from_package()
    old = reg.add_writer_schema(json.dumps(ACTION_EVENT_V0))
    monkeypatch.setattr(codec, "_REGISTRY", reg)  # the signer knows the old writer schema
    action = make_action()
    v0 = {k: action[k] for k in ("event_id", "agent_id", "session_id", "action_type", "payload",
                                 "payload_salt", "payload_hash", "occurred_at", "links", "policy")}
    v0["producer"] = {"version": "0.0.1", "host": "h", "pid": 7}
    raw = codec.encode_with(old, v0)
    out = _seq(key).process(raw, SRC)
    assert out.entry is not None and out.action_body is None  # not spliced: the bytes differ
    assert out.entry["action"]["producer"] == {"library": "ledgerstream", "version": "0.0.1", "host": "h",
                                               "pid": 7, "adapter": None}
    encoded = Sequencer.encode(out)
    assert encoded == codec.encode("LedgerEntry", out.entry)
    assert encoded[codec.HEADER_LEN:].find(raw[codec.HEADER_LEN:]) == -1  # re-encoded, current schema
    decoded = codec.decode(encoded, expect="LedgerEntry")[1]
    assert records.entry_hash(decoded) == out.entry["entry_hash"]
    _pyca(key).verify(decoded["signature"], records.entry_signing_message(decoded["entry_hash"]))


def test_a_non_canonical_body_is_re_encoded(key: PrivateKey) -> None:
    """Valid Avro that is not what codec writes (here: a two-byte length for the event id) is
    sequenced as usual but re-encoded, so the entry is still exactly codec's bytes."""
    raw = codec.encode("ActionEvent", make_action(event_id="e"))
    assert raw[codec.HEADER_LEN:codec.HEADER_LEN + 2] == b"\x02e"
    odd = raw[:codec.HEADER_LEN] + b"\x82\x00e" + raw[codec.HEADER_LEN + 2:]
    out = _seq(key).process(odd, SRC)
    assert out.entry is not None and out.action_body is None
    assert Sequencer.encode(out) == codec.encode("LedgerEntry", out.entry)


# --- deferred signing (the signer's signing thread signs; signing.py) --------------------------

def test_deferred_signing_leaves_the_signature_to_the_caller(key: PrivateKey) -> None:
    inline, deferred = _seq(key), _seq(key, defer_signing=True)
    assert not _seq(key, signing_mode="checkpoint", defer_signing=True).defer_signing
    actions = [make_action(payload={"i": i}) for i in range(5)]
    head = records.ZERO_HASH
    for i, action in enumerate(actions):
        raw = codec.encode("ActionEvent", action)
        a, b = inline.process(raw, _src(i)), deferred.process(raw, _src(i))
        assert a.signing_message is None and a.entry["signature"] is not None
        assert b.entry["signature"] is None
        assert b.signing_message == records.entry_signing_message(b.entry["entry_hash"])
        b.entry["signature"] = key.sign_many([b.signing_message])[0]
        _pyca(key).verify(b.entry["signature"], b.signing_message)
        # the state advanced as with inline signing: seq, chain, tree (received_at differs)
        assert b.entry["seq"] == a.entry["seq"] == i and b.entry["prev_hash"] == head
        assert b.entry["entry_hash"] == records.entry_hash(b.entry)
        head = b.entry["entry_hash"]
    assert deferred.state.tree.size == 5 and deferred.state.next_seq == inline.state.next_seq
    assert deferred.state.head == head


@pytest.mark.parametrize("size", [64 * 1024, 64 * 1024 + 1, 8_388_520])
def test_a_dead_letter_keeps_a_bounded_prefix_with_the_length_and_sha256(key: PrivateKey, size: int) -> None:
    """An 8 MB record once made a dead letter too large for the broker: every transaction
    aborted and the ledger stopped. The letter now keeps the first 64 KiB, the full length
    and the SHA-256 (computed here with hashlib), so it always fits."""
    raw = os.urandom(size)
    seq = _seq(key, max_record_bytes=1024 * 1024)
    big_key = b"k" * (100 * 1024)
    dl = seq.process(raw, Source("t.actions", 0, 7, big_key)).dead_letter
    assert dl["reason"] == ("oversized" if size > 1024 * 1024 else "undecodable")
    assert dl["original"] == raw[:65536] and dl["original_key"] == big_key[:65536]
    assert dl["original_size"] == size and dl["original_sha256"] == hashlib.sha256(raw).digest()
    assert len(codec.encode("DeadLetter", dl)) < 140 * 1024


def test_dead_letters_written_before_the_length_and_digest_existed_stay_readable() -> None:
    """Records of the first DeadLetter schema (schemas/history) decode with the defaults."""
    import json
    from importlib import resources

    old_text = (resources.files("ledgerstream.schemas") / "history" / "DeadLetter.v1.avsc").read_text()
    assert {f["name"] for f in json.loads(old_text)["fields"]}.isdisjoint({"original_size", "original_sha256"})
    reg = codec.SchemaRegistry.from_package()
    old = reg.add_writer_schema(old_text, named_like="DeadLetter")
    assert old.fingerprint != reg.schema("DeadLetter").fingerprint
    letter = {"reason": "undecodable", "detail": "bad magic", "original": b"\x00\x01", "original_key": None,
              "source": {"topic": "t", "partition": 0, "offset": 9}, "received_at": 5}
    name, rec = codec.decode(codec.encode_with(old, letter), expect="DeadLetter")  # the shipped registry
    assert name == "DeadLetter" and rec == dict(letter, original_size=-1, original_sha256=None)
