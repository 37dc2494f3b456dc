"""The verifier's compiled LedgerEntry reader (``avro_fast.read_entry``, ``_entry_reader.c``).

Whatever it takes must equal what fastavro decodes and what ``records.entry_hash_input``
writes; whatever it refuses (None) is left to codec, which then also says what is wrong.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from ledgerstream.core import mldsa, records
from ledgerstream.core.wire import avro_fast, codec
from ledgerstream.core.errors import DecodeError
from ledgerstream.core.verify import CheckerConfig, precheck_entry
from ledgerstream.tools.bench_verifier import build_ledger
from support.random_records import ALPHABET, PLAIN_ALPHABET, minimal_action, random_action, random_entry

pytestmark = pytest.mark.unit
VEC = json.loads((Path(__file__).parents[1] / "vectors" / "records" / "ledger_v1.json").read_text())


def _entries(seed: int, n: int, alphabet: str) -> list[bytes]:
    rng = random.Random(seed)
    return [codec.encode("LedgerEntry", random_entry(rng, random_action(rng, alphabet), alphabet)) for _ in range(n)]


def _assert_same_as_codec(data: bytes, taken: tuple[dict[str, Any], bytes]) -> None:
    entry, preimage = taken
    assert entry == codec.decode(data, expect="LedgerEntry")[1]
    assert preimage == records.entry_hash_input(entry)
    assert records.sha256(preimage) == records.entry_hash_typed(entry)


def test_the_reader_is_compiled_for_the_shipped_schema() -> None:
    # setup.sh builds it (setup.py); without it the verifier falls back to fastavro, slower
    assert avro_fast.compiled()
    assert avro_fast.active()


def test_every_canonical_entry_without_escapes_is_taken_and_equals_codec() -> None:
    for data in _entries(11, 1500, PLAIN_ALPHABET):
        taken = avro_fast.read_entry(data)
        assert taken is not None
        _assert_same_as_codec(data, taken)


def test_exactly_the_entries_with_strings_that_json_escapes_are_left_to_codec() -> None:
    outcomes = {True: 0, False: 0}
    for data in _entries(12, 300, ALPHABET) + _entries(13, 300, PLAIN_ALPHABET):
        escaped = b"\\" in records.entry_hash_input(codec.decode(data)[1])  # JSON escapes begin with one
        result = avro_fast.read_entry(data)
        assert (result is None) == escaped
        if result is not None:
            _assert_same_as_codec(data, result)
        outcomes[escaped] += 1
    assert outcomes[True] and outcomes[False]


@pytest.mark.parametrize("case", VEC["entries"], ids=lambda c: c["desc"])
def test_spec_vectors(case: dict) -> None:
    entry, preimage = avro_fast.read_entry(bytes.fromhex(case["avro_single_object"]))
    assert preimage.hex() == case["entry_hash_input"]
    assert records.sha256(preimage).hex() == case["entry_hash"] == entry["entry_hash"].hex()


def test_corrupted_records_are_refused_or_read_as_codec_reads_them() -> None:
    rng = random.Random(13)
    originals = _entries(14, 200, PLAIN_ALPHABET)
    outcomes = {"taken": 0, "refused": 0}
    for _ in range(4000):
        data = bytearray(rng.choice(originals))
        kind = rng.random()
        if kind < 0.5:  # flip one bit after the header
            i = rng.randrange(10, len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif kind < 0.7:
            del data[rng.randrange(10, len(data)):]
        elif kind < 0.85:
            data += os.urandom(rng.randint(1, 8))
        else:
            data[10:] = os.urandom(rng.randint(0, 400))
        data = bytes(data)
        result = avro_fast.read_entry(data)
        if result is None:
            outcomes["refused"] += 1
        else:
            outcomes["taken"] += 1
            _assert_same_as_codec(data, result)
    assert outcomes["taken"] and outcomes["refused"]


def _minimal_entry() -> dict[str, Any]:
    return random_entry(random.Random(15), minimal_action()) | {
        "spec_version": 1, "key_id": "ab" * 32, "source": {"topic": "t", "partition": 0, "offset": 1},
        "resolved_links": [{"agent_id": "a", "event_id": "e", "status": "pending", "seq": None, "entry_hash": None}]}


def test_non_canonical_encodings_that_fastavro_accepts_are_refused() -> None:
    data = codec.encode("LedgerEntry", _minimal_entry())
    head = len(avro_fast._LEDGER_ENTRY_HEADER)
    assert avro_fast.read_entry(data) is not None
    link = b"\x02a\x02e\x0epending\x00\x00"  # the resolved link: strings, then two null branches
    assert data.count(b"\x02" + link + b"\x00") == 1
    variants = {
        # spec_version 1 as a two-byte varint (0x82 0x00)
        "non-minimal varint": data[:head] + b"\x82\x00" + data[head + 1:],
        # the resolved links' block with a negative count and its byte size (Avro allows it)
        "sized array block": data.replace(b"\x02" + link + b"\x00",
                                          b"\x01" + avro_fast.write_long(len(link)) + link + b"\x00"),
        # the same link in two blocks of one
        "two array blocks": data.replace(b"\x02" + link + b"\x00", b"\x02" + link + b"\x02" + link + b"\x00"),
    }
    for name, variant in variants.items():
        decoded = codec.decode(variant, expect="LedgerEntry")[1]  # fastavro takes it ...
        assert len(decoded["resolved_links"]) == (2 if name == "two array blocks" else 1)
        assert avro_fast.read_entry(variant) is None, name  # ... the compiled reader does not


def test_other_inputs_are_refused() -> None:
    entry = codec.encode("LedgerEntry", _minimal_entry())
    assert avro_fast.read_entry(codec.encode("ActionEvent", minimal_action())) is None
    assert avro_fast.read_entry(bytearray(entry)) is None  # only bytes (what confluent-kafka hands out)
    assert avro_fast.read_entry(entry[:10]) is None
    assert avro_fast.read_entry(b"") is None
    with pytest.raises(DecodeError):
        codec.decode(entry + b"\x00", expect="LedgerEntry")
    assert avro_fast.read_entry(entry + b"\x00") is None


def test_the_checker_decodes_canonical_entries_without_fastavro(monkeypatch: pytest.MonkeyPatch) -> None:
    key = mldsa.PrivateKey.generate()
    config = CheckerConfig.from_keys([key.public_key()])
    entries, _ = build_ledger(key, 30)
    entries[7] = entries[7][:-40] + bytes(40)  # a broken signature must still be caught
    expected = [precheck_entry((i, raw), config) for i, raw in enumerate(entries)]

    def no_fastavro(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("codec.decode was called for a canonical entry")

    monkeypatch.setattr(codec, "decode", no_fastavro)
    fast = [precheck_entry((i, raw), config) for i, raw in enumerate(entries)]
    assert fast == expected
    assert [checked.entry_hash for checked, _ in fast] == [records.entry_hash_typed(c.entry) for c, _ in fast]
    assert fast[7][1] is not None and not key.public_key().verify_many([fast[7][1][1:]])[0]


def test_without_the_compiled_reader_the_checker_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    key = mldsa.PrivateKey.generate()
    config = CheckerConfig.from_keys([key.public_key()])
    entries, _ = build_ledger(key, 10)
    compiled = [precheck_entry((i, raw), config) for i, raw in enumerate(entries)]
    monkeypatch.setattr(avro_fast, "_entry_reader", None)
    assert avro_fast.read_entry(entries[0]) is None and not avro_fast.compiled()
    assert [precheck_entry((i, raw), config) for i, raw in enumerate(entries)] == compiled
