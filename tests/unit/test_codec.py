"""Avro single-object encoding: round trips, schema evolution, and bad bytes."""
from __future__ import annotations

import json
import os

import pytest

from ledgerstream.core.wire import codec
from ledgerstream.core.errors import DecodeError
from tests.support.actions import make_action

pytestmark = pytest.mark.unit

# ActionEvent as an early producer wrote it: no trace, no approvals, no producer.adapter, no offline.
ACTION_EVENT_V0 = {
    "type": "record", "name": "ActionEvent", "namespace": "ledgerstream",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "agent_id", "type": "string"},
        {"name": "session_id", "type": ["null", "string"], "default": None},
        {"name": "action_type", "type": "string"},
        {"name": "payload", "type": ["null", "bytes"], "default": None},
        {"name": "payload_salt", "type": ["null", "bytes"], "default": None},
        {"name": "payload_hash", "type": "bytes"},
        {"name": "occurred_at", "type": "long"},
        {"name": "links", "default": [], "type": {"type": "array", "items": {
            "type": "record", "name": "Link", "fields": [
                {"name": "agent_id", "type": "string"}, {"name": "event_id", "type": "string"}]}}},
        {"name": "policy", "default": None, "type": ["null", {
            "type": "record", "name": "PolicyDecision", "fields": [{"name": "decision", "type": "string"}]}]},
        {"name": "producer", "type": {"type": "record", "name": "ProducerMeta", "fields": [
            {"name": "version", "type": "string"}, {"name": "host", "type": "string"}, {"name": "pid", "type": "int"}]}},
    ],
}


def test_single_object_header() -> None:
    data = codec.encode("ActionEvent", make_action())
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == codec.registry().schema("ActionEvent").fingerprint


@pytest.mark.parametrize("name", ["ActionEvent", "Alert", "DeadLetter", "TimestampAnchor"])
def test_round_trip(name: str) -> None:
    samples = {
        "ActionEvent": make_action(links=[{"agent_id": "b", "event_id": "e1", "relation": "caused_by"}]),
        "Alert": {"alert_id": "a1", "kind": "gap", "severity": "critical", "seq_from": 3, "seq_to": 5,
                  "agent_id": None, "detail": "missing 3..5", "evidence": {"expected": "3"},
                  "verifier_id": "v1", "time": 1},
        "DeadLetter": {"reason": "undecodable", "detail": "bad magic", "original": b"\x00\x01",
                       "original_key": None, "source": {"topic": "t", "partition": 0, "offset": 7}, "received_at": 2},
        "TimestampAnchor": {"tree_size": 10, "body_hash": bytes(32), "timestamp": {"tsa": "http://x", "token": b"t"},
                            "created_at": 3},
    }
    record = samples[name]
    got_name, got = codec.decode(codec.encode(name, record))
    assert got_name == name
    for key, value in record.items():
        assert got[key] == value


def test_reads_a_record_written_with_an_older_schema() -> None:
    reg = codec.SchemaRegistry.from_package()
    old = reg.add_writer_schema(json.dumps(ACTION_EVENT_V0))
    assert old.fingerprint != reg.schema("ActionEvent").fingerprint
    record = {"event_id": "e", "agent_id": "a", "session_id": None, "action_type": "tool:x", "payload": None,
              "payload_salt": None, "payload_hash": bytes(32), "occurred_at": 5,
              "links": [{"agent_id": "b", "event_id": "f"}], "policy": {"decision": "allow"},
              "producer": {"version": "0.0.1", "host": "h", "pid": 1}}
    name, got = codec.decode(codec.encode_with(old, record), reg=reg)
    assert name == "ActionEvent"
    assert got["links"] == [{"agent_id": "b", "event_id": "f", "relation": "caused_by"}]  # reader default
    assert got["policy"] == {"decision": "allow", "rule": None, "reason": None}
    assert got["approvals"] == [] and got["trace"] is None and got["offline"] is False
    assert got["producer"]["library"] == "ledgerstream" and got["producer"]["adapter"] is None


def test_unregistered_old_schema_is_unknown() -> None:
    old = codec.SchemaRegistry.from_package().add_writer_schema(ACTION_EVENT_V0)
    data = codec.encode_with(old, {"event_id": "e", "agent_id": "a", "action_type": "t", "payload_hash": b"",
                                   "occurred_at": 1, "producer": {"version": "v", "host": "h", "pid": 1}})
    with pytest.raises(DecodeError) as err:
        codec.decode(data)  # the process-wide registry does not know it
    assert err.value.reason == "unknown_schema"


@pytest.mark.parametrize("data,reason", [
    (b"", "undecodable"),
    (b"\xc3", "undecodable"),
    (b"{\"json\": true}", "undecodable"),
    (b"\xc3\x01" + b"\xff" * 8 + b"body", "unknown_schema"),
])
def test_bad_bytes_raise_decode_error(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        codec.decode(data)
    assert err.value.reason == reason


def test_truncated_and_trailing_bodies() -> None:
    data = codec.encode("ActionEvent", make_action())
    for cut in (11, len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError):
            codec.decode(data[:cut])
    with pytest.raises(DecodeError, match="trailing"):
        codec.decode(data + b"\x00")


def test_random_bytes_never_escape_as_other_errors() -> None:
    header = b"\xc3\x01" + codec.registry().schema("LedgerEntry").fingerprint
    for _ in range(300):
        try:
            codec.decode(header + os.urandom(300))
        except DecodeError:
            pass


def test_expect_restricts_record_types() -> None:
    data = codec.encode("ActionEvent", make_action())
    with pytest.raises(DecodeError) as err:
        codec.decode(data, expect="LedgerEntry")
    assert err.value.reason == "unexpected_type"


def test_encode_rejects_records_that_do_not_match() -> None:
    with pytest.raises(ValueError):
        codec.encode("ActionEvent", {"event_id": "only"})


def _crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO as the Avro specification's "Schema Fingerprints" section writes it in
    Java (EMPTY = 0xc15d213aa4d7a795), transcribed here as an oracle independent of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_crc64_avro_and_the_header_match_apache_avros_own_vectors() -> None:
    """Apache Avro's test data: the CRC-64-AVRO of the schema "int" is 8247732601305521295
    (share/test/data/schema-tests.txt, case 004) and its single-object header is
    c3 01 8f 5c 39 3f 1a d5 75 72 (lang/ruby/test/test_fingerprints.rb,
    test_single_object_encoding_header)."""
    assert _crc64_avro(b"") == 0xC15D213AA4D7A795  # the spec: the fingerprint of no bytes is EMPTY
    assert _crc64_avro(b'"int"') == 8247732601305521295
    assert codec.MAGIC + codec.schema_fingerprint('"int"') == bytes.fromhex("c3018f5c393f1ad57572")


@pytest.mark.parametrize("name", codec.RECORD_TYPES)
def test_fingerprints_cover_the_whole_schema_and_are_written_little_endian(name: str) -> None:
    """Avro spec: the fingerprint is over the Parsing Canonical Form of the complete schema
    (types defined in other files, ActionEvent inside LedgerEntry, are inlined), and the
    single-object header holds it as 8 little-endian bytes."""
    from fastavro.schema import to_parsing_canonical_form

    ws = codec.registry().schema(name)
    canonical = to_parsing_canonical_form(ws.parsed)
    if name == "LedgerEntry":
        assert '{"name":"ledgerstream.ActionEvent","type":"record"' in canonical
    assert _crc64_avro(canonical.encode()).to_bytes(8, "little") == ws.fingerprint


def test_records_with_the_legacy_byte_order_still_decode() -> None:
    """Until D32 the header held the fingerprint byte-reversed; those records stay on the
    topics, so readers take both orders (and writers write only the standard one)."""
    action = make_action()
    data = codec.encode("ActionEvent", action)
    ws = codec.registry().schema("ActionEvent")
    assert data[2:10] == ws.fingerprint
    legacy = data[:2] + ws.fingerprint[::-1] + data[10:]
    assert codec.decode(legacy, expect="ActionEvent") == codec.decode(data, expect="ActionEvent")
    # any other order of the same bytes is unknown
    rotated = data[:2] + ws.fingerprint[1:] + ws.fingerprint[:1] + data[10:]
    with pytest.raises(DecodeError) as err:
        codec.decode(rotated)
    assert err.value.reason == "unknown_schema"
