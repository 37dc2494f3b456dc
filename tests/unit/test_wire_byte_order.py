"""The single-object header's byte order: ledgerstream writes the CRC-64-AVRO fingerprint
little-endian, as the Avro specification does, and every reader (codec, the hand-written
fast paths, the raw signature reader, bundles) also takes the byte-reversed order that
ledgerstream v0.1 wrote (until D32), because those records stay on the topics (D2: no hash or
signature covers Avro bytes, so the header may differ between two copies of an entry).

The standard order itself is checked against Apache Avro's vectors in test_codec.py and
against Apache Avro's Java decoder in tests/integration/test_avro_java_interop.py."""
from __future__ import annotations

import pytest

from ledgerstream.core.wire import avro_fast, codec
from ledgerstream.core.errors import DecodeError
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.core.verify import CheckerConfig, precheck_entry, raw_signature_check
from ledgerstream.tools import bundle_format as bf
from ledgerstream.core.wire.action_writer import ActionEventWriter
from support.ledger_builder import LedgerBuilder, entry_bytes

pytestmark = pytest.mark.unit

KEY = PrivateKey.from_seed(bytes(range(32)))


def legacy(data: bytes) -> bytes:
    """``data`` with the header ledgerstream wrote until D32: the fingerprint byte-reversed."""
    return data[:2] + data[2:10][::-1] + data[10:]


def entries() -> list[bytes]:
    b = LedgerBuilder(KEY)
    return [entry_bytes(e) for e in b.many(4)]


def test_writers_write_the_standard_order() -> None:
    reg = codec.registry()
    for raw in entries():
        assert raw[:10] == codec.MAGIC + reg.schema("LedgerEntry").fingerprint
    writer = ActionEventWriter("agent-a", {"library": "t", "version": "1", "host": "h", "pid": 1, "adapter": None})
    assert writer.fast, "the producer's writer must implement the shipped ActionEvent schema"
    data = writer.encode("0190a000-0000-7000-8000-000000000001", None, "tool:x", None, None, bytes(32), 1, [],
                         None, [], None, False)
    assert data[:10] == codec.MAGIC + reg.schema("ActionEvent").fingerprint


def test_codec_reads_legacy_headers_and_can_rewrite_them() -> None:
    for raw in entries():
        old = legacy(raw)
        assert old != raw
        assert codec.decode(old, expect="LedgerEntry") == codec.decode(raw, expect="LedgerEntry")
        assert codec.with_standard_header(old) == raw
        assert codec.with_standard_header(raw) == raw


def test_with_standard_header_refuses_unknown_fingerprints() -> None:
    raw = entries()[0]
    with pytest.raises(DecodeError) as err:
        codec.with_standard_header(raw[:2] + bytes(8) + raw[10:])
    assert err.value.reason == "unknown_schema"


def test_fast_readers_take_legacy_headers() -> None:
    b = LedgerBuilder(KEY)
    for e in b.many(3):
        action = codec.encode("ActionEvent", e["action"])
        assert avro_fast.read_action(legacy(action)) == avro_fast.read_action(action) == e["action"]
        raw = entry_bytes(e)
        assert avro_fast.is_ledger_entry_header(raw) and avro_fast.is_ledger_entry_header(legacy(raw))
        if avro_fast.compiled():
            assert avro_fast.read_entry(legacy(raw)) == avro_fast.read_entry(raw) is not None
    action = codec.encode("ActionEvent", b.entry()["action"])
    assert avro_fast.read_action(action[:2] + bytes(8) + action[10:]) is None
    assert not avro_fast.is_ledger_entry_header(action)


def test_the_raw_signature_reader_takes_legacy_headers() -> None:
    cfg = CheckerConfig.from_keys([KEY.public_key()])
    for i, raw in enumerate(entries()):
        check = raw_signature_check(legacy(raw), cfg)
        assert check is not None and check == raw_signature_check(raw, cfg) == precheck_entry((i, raw), cfg)[1]


def test_bundles_read_legacy_schema_names_and_headers() -> None:
    """A bundle exported before D32 names its schema files, and heads its records, with the
    legacy order; both still load and decode."""
    reg = codec.registry()
    ws = reg.schema("LedgerEntry")
    needed = {ws.name: ws}
    for ref in bf.schema_references(bf.schema_text(ws.parsed)):
        dep = reg.schema(ref.rsplit(".", 1)[-1])
        needed[dep.name] = dep
    for order in ("standard", "legacy"):
        texts = {bf.schema_name(s.name, s.fingerprint if order == "standard" else s.legacy_fingerprint):
                 bf.schema_text(s.parsed) for s in needed.values()}
        schemas, problems = bf.load_schemas(texts)
        assert problems == []
        raw = entries()[0]
        assert codec.decode_as_written(legacy(raw), schemas) == codec.decode_as_written(raw, schemas)
    # a name in neither order is still refused
    texts = {bf.schema_name(s.name, s.fingerprint[1:] + s.fingerprint[:1]): bf.schema_text(s.parsed)
             for s in needed.values()}
    _, problems = bf.load_schemas(texts)
    assert problems and all("not what its name says" in p for _, p in problems)
