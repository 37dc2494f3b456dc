"""The signer's fast paths against their references, on varied, corrupted and vector records.

* ``avro_fast.read_action`` / ``encode_ledger_entry`` against codec (fastavro): the signer
  reads actions with the first and writes entries with the second, which splices the
  action's original body bytes. Both must be byte-for-byte what codec does, and
  ``read_action`` must take only canonical bodies (those ``codec.encode`` writes back
  identically), leaving everything else to ``codec.decode``.
* ``records.entry_hash_typed`` against ``records.entry_hash`` (the hashed bytes must not
  change by a single bit) and against the spec vectors.
"""
from __future__ import annotations

import json
import random
from typing import Any

import pytest

from pathlib import Path

from ledgerstream.core import records
from ledgerstream.core.wire import avro_fast, codec
from ledgerstream.core.errors import DecodeError
from support.random_records import minimal_action, random_action, random_entry

pytestmark = pytest.mark.unit

def test_the_shipped_schemas_are_the_implemented_ones() -> None:
    reg = codec.registry()
    assert reg.schema("ActionEvent").fingerprint == avro_fast.ACTION_EVENT_FINGERPRINT
    assert reg.schema("LedgerEntry").fingerprint == avro_fast.LEDGER_ENTRY_FINGERPRINT
    assert avro_fast.active()


@pytest.mark.parametrize("n", [-(2**63), -(2**31) - 1, -8193, -65, -64, -1, 0, 1, 63, 64, 8191, 8192, 2**21,
                               2**31, 2**53 - 1, 2**63 - 1])
def test_write_long_is_the_avro_varint(n: int) -> None:
    from fastavro import schemaless_reader, schemaless_writer
    import io

    buf = io.BytesIO()
    schemaless_writer(buf, "long", n)
    assert avro_fast.write_long(n) == buf.getvalue()
    assert schemaless_reader(io.BytesIO(avro_fast.write_long(n)), "long", None) == n


def test_write_long_refuses_what_a_long_cannot_hold() -> None:
    for n in (2**63, -(2**63) - 1):
        with pytest.raises(ValueError):
            avro_fast.write_long(n)


def test_read_action_equals_codec_and_re_encodes_to_the_same_bytes() -> None:
    rng = random.Random(1)
    for _ in range(400):
        data = codec.encode("ActionEvent", random_action(rng))
        fast = avro_fast.read_action(data)
        assert fast is not None
        assert fast == codec.decode(data, expect="ActionEvent")[1]
        assert codec.encode("ActionEvent", fast) == data  # canonical: its body may be spliced


def test_encode_ledger_entry_is_byte_identical_to_codec() -> None:
    rng = random.Random(2)
    for _ in range(400):
        data = codec.encode("ActionEvent", random_action(rng))
        action = avro_fast.read_action(data)
        entry = random_entry(rng, action)
        spliced = avro_fast.encode_ledger_entry(entry, data[codec.HEADER_LEN:])
        assert spliced == codec.encode("LedgerEntry", entry)
        assert codec.decode(spliced, expect="LedgerEntry")[1] == entry
        # without a body it simply is codec
        assert avro_fast.encode_ledger_entry(entry) == spliced


def test_corrupted_bodies_are_left_to_codec() -> None:
    """Random damage: whatever read_action still takes decodes as codec decodes it and is
    canonical; whatever codec rejects, read_action rejects too."""
    rng = random.Random(3)
    taken = refused = 0
    for _ in range(3000):
        data = bytearray(codec.encode("ActionEvent", random_action(rng)))
        for _ in range(rng.randint(1, 3)):
            kind = rng.random()
            pos = rng.randrange(codec.HEADER_LEN, len(data))
            if kind < 0.5:
                data[pos] = rng.randrange(256)
            elif kind < 0.7:
                del data[pos:]
            elif kind < 0.85:
                data.insert(pos, rng.randrange(256))
            else:
                data += bytes([rng.randrange(256)])
        data = bytes(data)
        fast = avro_fast.read_action(data)
        try:
            reference = codec.decode(data, expect="ActionEvent")[1]
        except DecodeError:
            assert fast is None
            refused += 1
            continue
        if fast is not None:
            assert fast == reference
            assert codec.encode("ActionEvent", fast) == data
            taken += 1
    assert taken > 100 and refused > 100  # the test exercised both sides


def _body_parts(action: dict[str, Any]) -> bytes:
    return codec.encode("ActionEvent", action)


def test_non_canonical_encodings_that_fastavro_accepts_are_not_taken() -> None:
    """Valid Avro that codec.encode would not write back identically: spliced, it would change bytes."""
    plain = _body_parts(minimal_action())
    header, body = plain[:codec.HEADER_LEN], plain[codec.HEADER_LEN:]
    assert body[:2] == b"\x02e"  # event_id: length 1 (zig-zag 2), "e"
    variants = {
        "non-minimal string length": header + b"\x82\x00e" + body[2:],
        "boolean 2 for true": plain[:-1] + b"\x02",
    }
    links = minimal_action() | {"links": [{"agent_id": "b", "event_id": "f", "relation": "r"},
                                           {"agent_id": "c", "event_id": "g", "relation": "r"}]}
    one_block = _body_parts(links)
    link_b, link_c = b"\x02b\x02f\x02r", b"\x02c\x02g\x02r"
    assert b"\x04" + link_b + link_c + b"\x00" in one_block
    variants["array in two blocks"] = one_block.replace(b"\x04" + link_b + link_c + b"\x00",
                                                        b"\x02" + link_b + b"\x02" + link_c + b"\x00")
    variants["array block with byte size"] = one_block.replace(
        b"\x04" + link_b + link_c + b"\x00", b"\x03" + bytes([2 * 2 * len(link_b)]) + link_b + link_c + b"\x00")
    for name, data in variants.items():
        decoded = codec.decode(data, expect="ActionEvent")[1]  # fastavro takes them ...
        assert codec.encode("ActionEvent", decoded) != data, name  # ... but would not write them back
        assert avro_fast.read_action(data) is None, name


def test_other_writer_schemas_are_not_taken() -> None:
    from tests.unit.test_codec import ACTION_EVENT_V0

    reg = codec.SchemaRegistry.from_package()
    old = reg.add_writer_schema(json.dumps(ACTION_EVENT_V0))
    data = codec.encode_with(old, {"event_id": "e", "agent_id": "a", "session_id": None, "action_type": "t:x",
                                   "payload": None, "payload_salt": None, "payload_hash": bytes(32),
                                   "occurred_at": 5, "links": [], "policy": None,
                                   "producer": {"version": "1", "host": "h", "pid": 1}})
    assert avro_fast.read_action(data) is None
    assert avro_fast.read_action(codec.encode("LedgerEntry", random_entry(random.Random(4), minimal_action()))) is None
    assert avro_fast.read_action(b"") is None and avro_fast.read_action(b"\xc3\x01") is None
    plain = codec.encode("ActionEvent", minimal_action())
    assert avro_fast.read_action(bytearray(plain)) is None  # only bytes (as confluent-kafka hands out)


def test_after_a_schema_change_both_paths_step_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = random_entry(random.Random(5), minimal_action())
    data = codec.encode("ActionEvent", minimal_action())
    monkeypatch.setattr(avro_fast, "_active", False)
    assert avro_fast.read_action(data) is None
    calls = []
    real = codec.encode
    monkeypatch.setattr(codec, "encode", lambda name, rec, **kw: calls.append(name) or real(name, rec, **kw))
    assert avro_fast.encode_ledger_entry(entry, data[codec.HEADER_LEN:]) == real("LedgerEntry", entry)
    assert calls == ["LedgerEntry"]


# --- the entry hash, written directly --------------------------------------------------------

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "records" / "ledger_v1.json").read_text())


def test_entry_hash_typed_equals_entry_hash_on_random_entries() -> None:
    rng = random.Random(6)
    for _ in range(3000):
        entry = random_entry(rng, avro_fast.read_action(codec.encode("ActionEvent", random_action(rng))))
        assert records.entry_hash_typed(entry) == records.entry_hash(entry)


@pytest.mark.parametrize("case", VECTORS["entries"], ids=lambda c: c["desc"])
def test_fast_paths_on_the_spec_vectors(case: dict) -> None:
    """Each vector entry: its hash by the typed writer, and its bytes when its action is read
    by read_action and the entry written by splicing, are the vector's."""
    data = bytes.fromhex(case["avro_single_object"])
    entry = codec.decode(data, expect="LedgerEntry")[1]
    assert records.entry_hash_typed(entry).hex() == case["entry_hash"]
    action_bytes = codec.encode("ActionEvent", entry["action"])
    action = avro_fast.read_action(action_bytes)
    assert action == entry["action"]
    assert avro_fast.encode_ledger_entry(dict(entry, action=action), action_bytes[codec.HEADER_LEN:]) == data


def test_the_sequencer_hashes_with_the_typed_writer_and_checks_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from ledgerstream.core.mldsa import PrivateKey
    from ledgerstream.signer_worker import sequencer as sequencer_module
    from ledgerstream.signer_worker.sequencer import Sequencer, Source
    from ledgerstream.signer_worker.state import LedgerState
    from support.actions import make_action

    key = PrivateKey.generate()
    raw = codec.encode("ActionEvent", make_action())
    assert sequencer_module.typed_hash_agrees()
    real = records.entry_hash
    with monkeypatch.context() as m:  # the fast path does not call the view-based hash
        m.setattr(records, "entry_hash", lambda e: pytest.fail("records.entry_hash used"))
        out = Sequencer(LedgerState(), key).process(raw, Source("t", 0, 0))
    assert out.entry["entry_hash"] == real(out.entry)
    # a typed writer that disagrees (say, a view change not mirrored) is noticed and not used
    sequencer_module.typed_hash_agrees.cache_clear()
    monkeypatch.setattr(records, "entry_hash_typed", lambda e: bytes(32))
    try:
        seq = Sequencer(LedgerState(), key)
        assert not seq.typed_hash
        out = seq.process(raw, Source("t", 0, 1))
        assert out.entry["entry_hash"] == real(out.entry)
    finally:
        sequencer_module.typed_hash_agrees.cache_clear()
