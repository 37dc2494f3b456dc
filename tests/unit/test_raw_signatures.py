"""Signature checks read straight from an entry's bytes (core.verify.raw_signature_check),
which let the verifier worker check a batch's signatures in its own process.

The read must give exactly the decoded entry's check or nothing, and a verdict made from
it must never stand in for a check on other bytes."""
from __future__ import annotations

import pytest

from ledgerstream.core.wire import avro_fast
from ledgerstream.core.mldsa import SIGNATURE_SIZE, PrivateKey
from ledgerstream.core.verify import (CheckerConfig, Checker, check_raw_signatures, precheck_entry,
                                      raw_signature_check)
from support.ledger_builder import LedgerBuilder, entry_bytes, flip_bit, flip_inside, random_bytes, seal

pytestmark = pytest.mark.unit

KEY = PrivateKey.from_seed(bytes(range(32)))
OTHER = PrivateKey.from_seed(bytes(range(1, 33)))


def config(*keys: PrivateKey) -> CheckerConfig:
    return CheckerConfig.from_keys([k.public_key() for k in keys or (KEY,)])


def varied_entries() -> list[dict]:
    """Entries of many shapes: links, a policy and a trace, long and non-ASCII strings,
    big numbers (multi-byte varints), several agents."""
    b = LedgerBuilder(KEY)
    out = b.many(5)
    out.append(b.entry("agent-ü", links=[(out[0]["action"]["agent_id"], out[0]["action"]["event_id"])],
                       payload={"q": "x" * 5000}))
    out.append(b.entry("agent-b", advance_ms=10**9, session_id="s" * 300, action_type="llm:call",
                       mutate=lambda e: e["action"].update(
                           policy={"decision": "allow", "rule": "r1", "reason": None},
                           trace={"trace_id": "t" * 32, "span_id": "s" * 16, "parent_span_id": None})))
    out += b.many(3, agents=("a" * 200,))
    return out


def test_the_raw_check_is_the_decoded_check() -> None:
    cfg = config(KEY, OTHER)
    for i, e in enumerate(varied_entries()):
        raw = entry_bytes(e)
        check = raw_signature_check(raw, cfg)
        assert check is not None and check == precheck_entry((i, raw), cfg)[1]
        assert check[0] is cfg.trusted_keys[KEY.public_key().key_id]


def _timestamped(entry: dict) -> dict:
    return {**entry, "timestamp_token": b"\x30\x03\x02\x01\x00"}


@pytest.mark.parametrize("make", [
    pytest.param(lambda e: entry_bytes(seal(dict(e), KEY, signed=False)), id="checkpoint_signing_mode"),
    pytest.param(lambda e: entry_bytes(_timestamped(e)), id="per_entry_timestamp_token"),
    pytest.param(lambda e: entry_bytes(seal(dict(e), OTHER)), id="untrusted_key"),
    pytest.param(lambda e: entry_bytes(e)[:-1], id="truncated"),
    pytest.param(lambda e: entry_bytes(e)[:200], id="cut_short"),
    pytest.param(lambda e: flip_bit(entry_bytes(e), 3 * 8), id="other_schema_fingerprint"),
    pytest.param(lambda e: flip_inside(entry_bytes(e), b"\x02" + avro_fast.write_long(SIGNATURE_SIZE)),
                 id="signature_not_where_expected"),
    pytest.param(lambda e: random_bytes(4000), id="random_bytes"),
    pytest.param(lambda e: b"", id="empty"),
])
def test_the_raw_check_declines_what_it_cannot_read(make) -> None:
    entry = LedgerBuilder(KEY).entry()
    assert raw_signature_check(make(entry), config()) is None


def test_verdicts_come_per_offset_and_catch_a_bad_signature() -> None:
    made = LedgerBuilder(KEY).many(6)
    entries = [entry_bytes(e) for e in made]
    entries[2] = flip_inside(entries[2], bytes(made[2]["signature"]))
    records_ = [(10 + 2 * i, raw) for i, raw in enumerate(entries)] + [(99, random_bytes(300))]
    assert check_raw_signatures(records_, config()) == {10: True, 12: True, 14: False, 16: True, 18: True, 20: True}


def test_a_verdict_on_other_bytes_is_not_taken() -> None:
    """A record crafted so that the raw read finds a valid signature inside its timestamp
    token, while its own signature field is broken: the verdict (True) is about other
    bytes than the decoded entry's check, so the checker checks the entry itself."""
    honest = LedgerBuilder(KEY).many(5)
    victim = honest[3]
    good_signature = bytes(victim["signature"])
    forged = dict(victim, signature=bytes([good_signature[0] ^ 1]) + good_signature[1:],
                  timestamp_token=avro_fast.write_str(victim["key_id"]) + b"\x02"
                  + avro_fast.write_long(SIGNATURE_SIZE) + good_signature + b"\x00")
    raws = [entry_bytes(e) for e in honest[:4]] + [entry_bytes(forged), entry_bytes(honest[4])]
    batch = list(enumerate(raws))  # the forged copy of entry 3 comes right after it
    cfg = config()
    verdicts = check_raw_signatures(batch, cfg)
    assert verdicts[4] is True  # the raw read was fooled ...
    checker = Checker(cfg)
    found = checker.feed_entries(batch, None, verdicts) + checker.finish()
    assert [(f.kind.value, f.seq_from) for f in found] == [("bad_signature", 3)]  # ... the checker was not
    assert checker.stats.signatures_checked_ahead == 5 and checker.position == 5


def test_verdicts_replace_the_checker_own_checks() -> None:
    batch = [(i, entry_bytes(e)) for i, e in enumerate(LedgerBuilder(KEY).many(20))]
    cfg = config()
    verdicts = check_raw_signatures(batch, cfg)
    verdicts[7] = False  # what the worker said: the checker takes it (and explains it alone)
    checker = Checker(cfg)
    found = checker.feed_entries(batch, None, verdicts) + checker.finish()
    assert [(f.kind.value, f.seq_from) for f in found] == [("bad_signature", 7), ("gap", 7)]
    assert "passes alone" in found[0].detail
    assert checker.stats.signatures_checked_ahead == 20
