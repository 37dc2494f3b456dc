"""The signer's compiled fast path (``_entry_reader.c``: read_action, is_canonical_json,
entry_preimage, encode_entry) against the reference path it stands in for.

Oracles, none of them the code under test: the rfc8785 package decides canonical JSON,
``records.validate_action`` decides validity, fastavro (``codec``) decodes and encodes, and
``records.entry_hash_input`` writes the preimage. The compiled path may decline anything
(the reference path then runs); what it takes must be exactly what the reference would do,
and the records our producers write must be taken (else the fast path is dead code).
"""
from __future__ import annotations

import json
import os
import random
import re
from typing import Any

import pytest
import rfc8785

from ledgerstream.core import merkle, records
from ledgerstream.core.wire import _entry_reader, avro_fast, codec
from ledgerstream.signer_worker import sequencer as sequencer_module
from ledgerstream.signer_worker.sequencer import Sequencer, Source
from ledgerstream.signer_worker.state import LedgerState
from ledgerstream.core.mldsa import PrivateKey
from support.random_records import PRINTABLE, plain_action, random_entry
from support.random_records import json_value as _json_value
from support.random_records import printable_id as _id

pytestmark = pytest.mark.unit

def valid_looking_action(rng: random.Random) -> dict[str, Any]:
    """Half of them plain, the rest with a few ways (10 % each) to be unusual or invalid."""
    if rng.random() < 0.5:
        return plain_action(rng)
    payload = None
    salt = None
    payload_hash = os.urandom(32)
    if rng.random() < 0.85:
        value = _json_value(rng)
        payload = rfc8785.dumps(value) if rng.random() < 0.9 else json.dumps(value).encode()
        salt = os.urandom(32) if rng.random() < 0.95 else os.urandom(rng.choice([0, 31, 33]))
        if len(salt) == 32 and rng.random() < 0.95:
            payload_hash = records.payload_commitment(salt, payload)
    return {
        "event_id": _id(rng), "agent_id": _id(rng), "session_id": rng.choice([None, _id(rng)]),
        "action_type": rng.choice(["tool:search", "llm:call", "a.b-c_d:E9", "tool::x", ":x", "x:", "tool x",
                                   "x" * 257, "é:x", _id(rng, 0)]),
        "payload": payload, "payload_salt": salt,
        "payload_hash": payload_hash if rng.random() < 0.95 else os.urandom(31),
        "occurred_at": rng.choice([0, 1_700_000_000_000_000, 2**53 - 1, 2**53, -1, rng.randint(0, 2**52)]),
        "links": [{"agent_id": _id(rng), "event_id": _id(rng), "relation": rng.choice(["caused_by", "x\"y"])}
                  for _ in range(rng.choice([0, 0, 1, 3]))],
        "policy": rng.choice([None, {"decision": "approved", "rule": rng.choice([None, "r"]),
                                     "reason": rng.choice([None, "because \"so\""])}]),
        "approvals": [] if rng.random() < 0.9 else [{
            "request_id": _id(rng), "approver_id": _id(rng), "key_id": "k", "decision": "approve",
            "approved_at": 5, "signature": b"\x01\x02"}],
        "trace": rng.choice([None, {"trace_id": "t", "span_id": "s", "parent_span_id": rng.choice([None, "p"])}]),
        "producer": {"library": "ledgerstream", "version": "0.2", "host": rng.choice(["h", "hé", "h\"q"]),
                     "pid": rng.randint(0, 2**31 - 1), "adapter": rng.choice([None, "langchain"])},
        "offline": rng.random() < 0.2,
    }


def _valid(action: dict[str, Any]) -> bool:
    try:
        records.validate_action(action)
    except (ValueError, TypeError, KeyError):
        return False
    return True


def _assert_sound(data: bytes) -> bool:
    """What the compiled reader takes is the decoded record, valid by the Python rules (the
    payload commitment aside, which the caller checks), with its JCS text; True if taken."""
    taken = avro_fast.read_valid_action(data)
    if taken is None:
        return False
    action, text = taken
    assert action == codec.decode(data, expect="ActionEvent")[1]
    assert text == records.jcs_without_floats(records.action_hash_view(action))
    committed = action["payload"] is None or records.payload_commitment(
        action["payload_salt"], action["payload"]) == action["payload_hash"]
    if committed:
        assert _valid(action), action
    else:
        with pytest.raises(ValueError, match="payload_hash does not commit"):
            records.validate_action(action)
    return True


def _assert_sealable_sound(data: bytes) -> bool:
    """What read_sealable_action takes is a valid action (its payload commitment included),
    and its fields, JCS text and links are the reference's; True if taken."""
    taken = avro_fast.read_sealable_action(data)
    if taken is None:
        return False
    action = codec.decode(data, expect="ActionEvent")[1]
    assert _valid(action), action
    assert taken == (action["event_id"], action["agent_id"], action["action_type"], action["payload_hash"],
                     records.jcs_without_floats(records.action_hash_view(action)),
                     tuple((link["agent_id"], link["event_id"]) for link in action["links"]))
    return True


def _plain(action: dict[str, Any]) -> bool:
    """Within what the fast path promises to take (docs/signer.md, "The per-entry path")."""
    ids = [action["event_id"], action["agent_id"], action["session_id"]] + [
        x for link in action["links"] for x in (link["agent_id"], link["event_id"])]
    strings = ids + [action["action_type"], action["producer"]["host"]] + [
        v for v in (action["policy"] or {}).values() if v is not None] + [link["relation"] for link in action["links"]]
    payload = action["payload"]
    return (_valid(action) and not action["approvals"]
            and all(s is None or (s.isascii() and '"' not in s and "\\" not in s) for s in strings)
            and (payload is None or (b"." not in payload and b"\\" not in payload and b"e+" not in payload
                                     and not re.search(rb"\d{16}|-\d{15}", payload)  # longer than 15 characters
                                     and not any(b >= 0xEE for b in payload))))


def test_the_fast_path_is_compiled() -> None:
    assert avro_fast.compiled() and avro_fast.active()


def test_what_the_fast_reader_takes_is_what_the_reference_path_decodes_and_accepts() -> None:
    rng = random.Random(41)
    taken = plain = sealable = 0
    for _ in range(3000):
        action = valid_looking_action(rng)
        data = codec.encode("ActionEvent", action)
        got = _assert_sound(data)
        sealed = _assert_sealable_sound(data)
        assert got or not sealed  # the sealed path takes a subset of the fast reader's
        taken += got
        if _plain(action):
            plain += 1
            assert got, action  # what our producers write goes the fast way
            assert sealed, action  # and the sealed way (checkpoint mode)
            sealable += 1
    assert plain > 500 and taken >= plain and sealable == plain  # the generator exercised the fast paths


def test_corrupted_records_never_get_past_the_fast_reader_unchecked() -> None:
    rng = random.Random(42)
    for _ in range(3000):
        data = bytearray(codec.encode("ActionEvent", valid_looking_action(rng)))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(10, len(data))
            if rng.random() < 0.7:
                data[at] = rng.randrange(256)
            elif rng.random() < 0.5:
                del data[at]
            else:
                data.insert(at, rng.randrange(256))
        try:
            codec.decode(bytes(data), expect="ActionEvent")
        except Exception:  # noqa: BLE001 - not decodable: the fast readers must not take it either
            assert avro_fast.read_valid_action(bytes(data)) is None
            assert avro_fast.read_sealable_action(bytes(data)) is None
            continue
        _assert_sound(bytes(data))
        _assert_sealable_sound(bytes(data))


@pytest.mark.parametrize("field, value", [
    ("event_id", " lead"), ("event_id", "trail "), ("event_id", "x" * 257), ("agent_id", "tab\tin"),
    ("session_id", ""), ("action_type", "tool::x"), ("action_type", ":x"), ("action_type", "x:"),
    ("action_type", "tool x"), ("action_type", "x" * 257), ("payload_hash", b"\x00" * 31),
    ("occurred_at", 2**53), ("occurred_at", -1), ("payload_salt", None), ("payload_salt", b"\x00" * 31),
    ("payload", b'{"b":1,"a":2}'),
])
def test_each_rule_the_fast_reader_proves_refuses_its_violation(field: str, value: Any) -> None:
    action = valid_looking_action(random.Random(5))
    action.update({"event_id": "e-1", "agent_id": "a", "session_id": None, "action_type": "tool:search",
                   "links": [], "approvals": [], "occurred_at": 1, "policy": None,
                   "producer": {**action["producer"], "host": "h"}})
    action["payload"] = b'{"a":1}'
    action["payload_salt"] = bytes(32)
    action["payload_hash"] = records.payload_commitment(bytes(32), b'{"a":1}')
    for reader in (avro_fast.read_valid_action, avro_fast.read_sealable_action):
        assert reader(codec.encode("ActionEvent", action)) is not None  # the baseline is taken
    action[field] = value
    assert not _valid(action)  # the reference rule refuses it ...
    for reader in (avro_fast.read_valid_action, avro_fast.read_sealable_action):
        assert reader(codec.encode("ActionEvent", action)) is None  # ... so the fast ones must


def test_approvals_and_escaped_strings_are_left_to_the_reference_path() -> None:
    action = valid_looking_action(random.Random(6))
    action.update({"event_id": "e", "agent_id": "a", "action_type": "t", "payload": None, "payload_salt": None,
                   "payload_hash": bytes(32), "occurred_at": 1, "links": [], "approvals": []})
    action["producer"] = {**action["producer"], "host": "h"}
    action["policy"] = {"decision": "approved", "rule": None, "reason": None}
    assert avro_fast.read_valid_action(codec.encode("ActionEvent", action)) is not None
    assert avro_fast.read_sealable_action(codec.encode("ActionEvent", action)) is not None
    for change in ({"approvals": [{"request_id": "r", "approver_id": "p", "key_id": "k", "decision": "approve",
                                   "approved_at": 5, "signature": b"s"}]},
                   {"agent_id": 'a"b'}, {"event_id": "é"}):
        changed = {**action, **change}
        assert _valid(changed)  # valid: only not proven here
        assert avro_fast.read_valid_action(codec.encode("ActionEvent", changed)) is None
        assert avro_fast.read_sealable_action(codec.encode("ActionEvent", changed)) is None


@pytest.mark.parametrize("change", [
    {"links": [{"agent_id": "b", "event_id": "f", "relation": "caused_by"},
               {"agent_id": "b", "event_id": "g", "relation": "causé"}]},
    {"producer": {"library": "l", "version": "v", "host": "hé", "pid": 1, "adapter": None}},
    {"policy": {"decision": "approved", "rule": None, "reason": "\x7f"}},
    {"trace": {"trace_id": "t", "span_id": "s€", "parent_span_id": None}},
])
def test_strings_beyond_printable_ascii_are_left_to_the_dict_path(change: dict[str, Any]) -> None:
    """Valid, and taken by read_valid_action, but not by the sealed path: Sequencer.process decides."""
    action = {**plain_action(random.Random(7)), "links": [], **change}
    data = codec.encode("ActionEvent", action)
    assert _valid(action) and avro_fast.read_valid_action(data) is not None
    assert avro_fast.read_sealable_action(data) is None


def test_a_payload_that_does_not_commit_is_not_sealable() -> None:
    action = {**plain_action(random.Random(8)), "links": []}
    assert avro_fast.read_sealable_action(codec.encode("ActionEvent", action)) is not None
    action["payload_hash"] = bytes(32)
    assert avro_fast.read_valid_action(codec.encode("ActionEvent", action)) is not None  # its caller checks that
    assert avro_fast.read_sealable_action(codec.encode("ActionEvent", action)) is None


# --- canonical JSON -------------------------------------------------------------------------

@pytest.mark.parametrize("text, canonical", [
    (b'{"a":1,"b":[true,false,null],"c":{"d":"e"}}', True),
    (b'{"b":1,"a":2}', False), (b'{"a":1,"a":1}', False), (b'{"a":1,"ab":2,"b":3}', True),
    (b'{"ab":1,"a":2}', False), (b"-0", False), (b"0", True), (b"-1", True), (b"01", False),
    (b"1.0", False), (b"1e2", False), (b" 1", False), (b"1 ", False), (b"[1, 2]", False),
    (b"123456789012345", True), (b"1234567890123456", False),
    (b'"\\u001f"', True), (b'"\\u000a"', False), (b'"\\n"', True), (b'"\\/"', False), (b'"/"', True),
    (b'"\\u001F"', False), (b'"\\u0041"', False), (b'"\x7f"', True), (b'"\x1f"', False),
    ('"é€\u2028"'.encode(), True), ('"\ue000"'.encode(), False), ('"😀"'.encode(), False),
    (b'"\xc0\x80"', False), (b'"\xed\xa0\x80"', False), (b"", False), (b"tru", False), (b"[", False),
    (b"{}", True), (b"[]", True), (b'{"":1}', True), (b"[" * 130 + b"]" * 130, False), (b"[" * 129 + b"]" * 129, True), (b"[" * 20 + b"]" * 20, True),
])
def test_canonical_json_cases(text: bytes, canonical: bool) -> None:
    assert _entry_reader.is_canonical_json(text) is canonical
    if canonical:  # the oracle agrees with every case said to be canonical
        assert rfc8785.dumps(json.loads(text)) == text


def test_canonical_json_agrees_with_rfc8785_on_random_values_and_their_corruptions() -> None:
    rng = random.Random(43)
    proven = 0
    for _ in range(4000):
        value = _json_value(rng)
        text = rfc8785.dumps(value)
        variants = [text, json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode()]
        corrupted = bytearray(text)
        if corrupted:
            corrupted[rng.randrange(len(corrupted))] = rng.choice(b' ,:{}[]"\\0159-.eE\x00\xc3\xa9\xee')
        variants.append(bytes(corrupted))
        for candidate in variants:
            if _entry_reader.is_canonical_json(candidate):
                proven += 1
                assert rfc8785.dumps(json.loads(candidate)) == candidate, candidate
    assert proven > 4000  # most canonical texts are within the subset: the check is not "always False"


# --- writing the entry ------------------------------------------------------------------------

def _fast_entries(seed: int, n: int) -> list[tuple[dict[str, Any], bytes, bytes]]:
    """(entry, action_text, action_body) for entries whose action the fast reader took."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        data = codec.encode("ActionEvent", valid_looking_action(rng))
        taken = avro_fast.read_valid_action(data)
        if taken is None:
            continue
        entry = random_entry(rng, taken[0], PRINTABLE)
        entry["action"] = taken[0]
        out.append((entry, taken[1], data[codec.HEADER_LEN:]))
    return out


def test_the_compiled_preimage_and_record_equal_the_reference_writers() -> None:
    for entry, text, body in _fast_entries(44, 800):
        preimage = avro_fast.entry_hash_input(entry, text)
        if preimage is None:  # only when one of the entry's own strings needs an escape
            assert b"\\" in records.entry_hash_input(entry)
            continue
        assert preimage == records.entry_hash_input(entry)
        assert avro_fast.encode_ledger_entry(entry, body) == codec.encode("LedgerEntry", entry)
        assert avro_fast._encode_ledger_entry(entry, body) == codec.encode("LedgerEntry", entry)


def test_a_string_that_needs_an_escape_leaves_the_preimage_to_python() -> None:
    entry, text, _ = _fast_entries(45, 1)[0]
    assert avro_fast.entry_hash_input(entry, text) is not None
    for key, value in (("key_id", 'k"'), ("key_id", "k\\"), ("source", {**entry["source"], "topic": "t\n"})):
        assert avro_fast.entry_hash_input({**entry, key: value}, text) is None


def _sealable_entries(seed: int, n: int) -> list[tuple[dict[str, Any], bytes, bytes]]:
    """(entry, action_text, action record) for entries that Sequencer.seal writes: no signature,
    no timestamp token; half of the records under the legacy header."""
    out = []
    for i, (entry, text, body) in enumerate(_fast_entries(seed, 3 * n + 20)):
        entry.update(spec_version=records.SPEC_VERSION, signature=None, timestamp_token=None)
        entry["entry_hash"] = records.entry_hash(entry)
        header = avro_fast._ACTION_HEADERS[i % 2]
        out.append((entry, text, header + body))
    assert len(out) >= n
    return out[:n]


def _seal(entry: dict[str, Any], text: bytes, record: bytes) -> tuple[bytes, bytes, bytes] | None:
    src = entry["source"]
    return avro_fast.seal_entry(record, text, entry["seq"], entry["prev_hash"], entry["received_at"], src["topic"],
                                src["partition"], src["offset"], entry["agent_seq"], entry["agent_prev_hash"],
                                entry["resolved_links"] or None, entry["key_id"])


def test_the_sealed_entry_is_the_reference_hash_leaf_and_record() -> None:
    sealed = linked = 0
    for entry, text, record in _sealable_entries(48, 600):
        got = _seal(entry, text, record)
        if got is None:  # only when one of the entry's own strings needs an escape
            assert b"\\" in records.entry_hash_input(entry)
            continue
        h = records.entry_hash(entry)
        assert got == (h, merkle.leaf_hash(records.merkle_leaf_input(h)), codec.encode("LedgerEntry", entry))
        sealed += 1
        linked += bool(entry["resolved_links"])
    assert sealed > 200 and linked > 50


def test_a_string_that_needs_an_escape_is_not_sealed() -> None:
    entry, text, record = _sealable_entries(49, 1)[0]
    assert _seal(entry, text, record) is not None
    for key, value in (("key_id", 'k"'), ("key_id", "k\\"), ("source", {**entry["source"], "topic": "t\n"})):
        assert _seal({**entry, key: value}, text, record) is None


@pytest.mark.parametrize("change", [
    {"seq": "1"}, {"prev_hash": "00"}, {"source": {"topic": 5, "partition": 0, "offset": 1}}, {"key_id": None},
    {"received_at": 2**64}, {"agent_prev_hash": None}, {"source": {"topic": "t", "partition": 2**40, "offset": 1}},
    {"resolved_links": "links"}, {"resolved_links": [{"agent_id": "a"}]}, {"resolved_links": [None]},
])
def test_wrong_types_for_the_sealed_entry_raise_instead_of_crashing(change: dict[str, Any]) -> None:
    entry, text, record = _sealable_entries(50, 1)[0]
    with pytest.raises((TypeError, OverflowError, KeyError)):
        _seal({**entry, **change}, text, record)
    with pytest.raises(TypeError):
        _entry_reader.seal_entry(avro_fast._LEDGER_ENTRY_HEADER, record[:9], text, 1, 0, bytes(32), 0, "t", 0, 0, 0,
                                 bytes(32), None, "k")
    with pytest.raises(TypeError):
        _entry_reader.seal_entry(avro_fast._LEDGER_ENTRY_HEADER, record, text)


_MISSING = object()  # the field is left out


@pytest.mark.parametrize("change", [
    {"seq": "1"}, {"prev_hash": "00"}, {"resolved_links": None}, {"source": None}, {"key_id": 5},
    {"signature": "sig"}, {"resolved_links": [{"agent_id": "a"}]}, {"received_at": 2**64},
    {"seq": _MISSING}, {"agent_seq": _MISSING}, {"source": {"topic": "t", "partition": 0}}, {"key_id": _MISSING},
])
def test_wrong_types_and_missing_fields_raise_instead_of_crashing(change: dict[str, Any]) -> None:
    entry, text, body = _fast_entries(46, 1)[0]
    bad = {k: v for k, v in {**entry, **change}.items() if v is not _MISSING}
    with pytest.raises((TypeError, KeyError, OverflowError)):
        _entry_reader.encode_entry(avro_fast._LEDGER_ENTRY_HEADER, bad, body)
    if "signature" not in change:  # the signature is not part of the preimage
        with pytest.raises((TypeError, KeyError, OverflowError)):
            _entry_reader.entry_preimage(bad, text)


# --- the sequencer, both ways -----------------------------------------------------------------

def test_the_sequencer_gives_the_same_ledger_with_and_without_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(47)
    stream, earlier = [], []
    for i in range(600):
        action = valid_looking_action(rng)
        if earlier and rng.random() < 0.3:  # links to earlier events, some under another agent (pending)
            agent, event = rng.choice(earlier)
            action["links"] = [{"agent_id": agent if rng.random() < 0.8 else agent + "x", "event_id": event,
                                "relation": "caused_by"}] + action["links"]
        earlier.append((action["agent_id"], action["event_id"]))
        stream.append(codec.encode("ActionEvent", action))
        if rng.random() < 0.05:
            stream.append(stream[rng.randrange(len(stream))])  # a redelivery or a conflicting duplicate
    key = PrivateKey.generate()

    def run(sealing: bool = False) -> tuple[list[tuple[Any, ...]], tuple[Any, ...], int]:
        """Each record's (entry record, key, dead letter, duplicate_of), the state after them,
        and how many were sealed; ``sealing``: Sequencer.seal first, as the loop does in checkpoint mode."""
        clock = iter(range(1_700_000_000_000_000, 1_800_000_000_000_000))
        monkeypatch.setattr(sequencer_module, "now_us", lambda: next(clock))
        state = LedgerState(10_000)
        seq = Sequencer(state, key, signing_mode="checkpoint")
        out, sealed = [], 0
        for offset, raw in enumerate(stream):
            done = seq.seal(raw, "actions", 0, offset) if sealing else None
            if done is not None:
                sealed += 1
                out.append((*done, None, None))
                continue
            o = seq.process(raw, Source("actions", 0, offset))
            out.append((Sequencer.encode(o) if o.entry else None, o.entry and o.entry["action"]["agent_id"].encode(),
                        o.dead_letter and (o.dead_letter["reason"], o.dead_letter["detail"]), o.duplicate_of))
        return out, (state.next_seq, state.head, state.agents, state.tree.root(), state.events.knowns()), sealed

    fast, sealed_path = run(), run(sealing=True)
    assert sealed_path[0] == fast[0] and sealed_path[1] == fast[1]  # the same records, keys and state
    assert sealed_path[2] > 200  # the plain actions (about half of the stream) were sealed
    used = []
    real = avro_fast.read_valid_action
    monkeypatch.setattr(avro_fast, "read_valid_action", lambda data: used.append(real(data)) and None)
    reference = run()
    assert fast == reference
    assert sum(x is not None for x in used) > 200  # the fast path was taken for most of them
    assert sum(entry is not None for entry, _, _, _ in fast[0]) > 200 and any(dl for _, _, dl, _ in fast[0])


def test_seal_declines_in_entry_mode_and_leaves_the_state_untouched() -> None:
    raw = codec.encode("ActionEvent", {**plain_action(random.Random(9)), "links": []})
    key = PrivateKey.generate()
    for mode in ("entry", "checkpoint"):
        state = LedgerState(100)
        seq = Sequencer(state, key, signing_mode=mode, max_record_bytes=len(raw) - 1)
        assert seq.seal(raw, "actions", 0, 0) is None  # too large: process() dead-letters it
        assert (state.next_seq, state.events.get(avro_fast.read_action(raw)["event_id"])) == (0, None)
    seq = Sequencer(LedgerState(100), key, signing_mode="entry")
    assert seq.seal(raw, "actions", 0, 0) is None and seq.state.next_seq == 0
    seq = Sequencer(LedgerState(100), key, signing_mode="checkpoint")
    assert seq.seal(raw, "actions", 0, 0) is not None and seq.state.next_seq == 1
    assert seq.seal(raw, "actions", 0, 1) is None and seq.state.next_seq == 1  # a duplicate: process() decides
