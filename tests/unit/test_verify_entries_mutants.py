"""Steps [2] and [3] of core/verify/entries.py on the cases its mutation run showed untested
(docs/mutation.md). Expected verdicts come from docs/spec.md section 2 (the payload
commitment, computed here with hashlib) and docs/alerts.md (`hash_mismatch`), never from
the checker's own output."""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable

import pytest

from ledgerstream.core import records
from ledgerstream.core.errors import VerificationError
from ledgerstream.core.wire import avro_fast, codec
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.core.verify import (ENTRIES, CheckedEntry, Checker, CheckerConfig, check_entry,
                                      recompute_entry_hash)
from support.ledger_builder import LedgerBuilder, entry_bytes, flip_inside

pytestmark = pytest.mark.unit

KEY = PrivateKey.from_seed(bytes(range(32)))
TAG_PAYLOAD = b"ledgerstream/v1/payload\x00"  # docs/spec.md, table of tags


def commitment(salt: bytes, payload: bytes) -> bytes:
    """docs/spec.md section 2: SHA-256(TAG_PAYLOAD || salt || canonical)."""
    return hashlib.sha256(TAG_PAYLOAD + salt + payload).digest()


def config() -> CheckerConfig:
    return CheckerConfig.from_keys([KEY.public_key()], link_grace_entries=50, link_grace_seconds=None)


def verdict(mutate: Callable[[dict[str, Any]], None]) -> list[str]:
    """Two honest entries, then one whose action ``mutate`` edits before it is hashed and
    signed (so hash and signature are valid): the finding kinds a checker raises."""
    builder = LedgerBuilder(KEY)
    entries = [builder.entry("agent-a"), builder.entry("agent-b"), builder.entry("agent-a", mutate=mutate)]
    checker = Checker(config())
    found = []
    for offset, e in enumerate(entries):
        found += checker.feed(ENTRIES, 2 * offset, entry_bytes(e))
    found += checker.finish()
    return [f.kind.value for f in found]


def set_action(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda e: e["action"].update(fields)


def test_a_payload_that_matches_its_commitment_is_accepted() -> None:
    salt, payload = bytes(range(32)), b'{"q":"x"}'
    assert verdict(set_action(payload=payload, payload_salt=salt, payload_hash=commitment(salt, payload))) == []


def test_hash_only_and_erased_entries_without_payload_and_salt_are_accepted() -> None:
    # section 2: in hash-only mode and after erasure only payload_hash remains
    salt, payload = bytes(32), b'{"secret":1}'
    assert verdict(set_action(payload=None, payload_salt=None, payload_hash=commitment(salt, payload))) == []


def test_a_salt_without_its_payload_is_a_hash_mismatch() -> None:
    salt = bytes(32)
    assert verdict(set_action(payload=None, payload_salt=salt, payload_hash=commitment(salt, b"{}"))) == [
        "hash_mismatch"]


def test_a_payload_without_its_salt_is_a_hash_mismatch() -> None:
    assert verdict(set_action(payload=b"{}", payload_salt=None, payload_hash=commitment(bytes(32), b"{}"))) == [
        "hash_mismatch"]


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_a_salt_that_is_not_32_bytes_is_a_hash_mismatch_even_when_the_hash_matches_it(length: int) -> None:
    # section 2: salt = 32 random bytes. The stored hash is SHA-256 over this very salt, so only
    # the length rule can refuse it; the verdict is a finding, not an exception.
    salt, payload = bytes(range(length)), b'{"q":"x"}'
    assert verdict(set_action(payload=payload, payload_salt=salt, payload_hash=commitment(salt, payload))) == [
        "hash_mismatch"]


@pytest.mark.parametrize("stored", [bytes(32), b"\xff" * 32], ids=["below", "above"])
def test_a_payload_hash_that_is_not_the_commitment_is_a_hash_mismatch(stored: bytes) -> None:
    # one stored hash sorts below the true commitment, one above it
    salt, payload = bytes(range(32)), b'{"q":"x"}'
    assert commitment(salt, payload) not in (bytes(32), b"\xff" * 32)
    assert verdict(set_action(payload=payload, payload_salt=salt, payload_hash=stored)) == ["hash_mismatch"]


def test_an_entry_checked_elsewhere_counts_no_approval_check_unless_it_says_so() -> None:
    """A CheckedEntry built from a decoded entry alone (as bundle_verify builds them) was not
    checked for approvals (or a signature): the statistics must not count it."""
    builder = LedgerBuilder(KEY)
    entries = [builder.entry("agent-a") for _ in range(3)]
    checker = Checker(config())
    checked = [CheckedEntry(e["seq"], b"", e, bytes(e["entry_hash"])) for e in entries]
    assert checker.feed_checked(checked) == []
    assert checker.position == 3
    assert checker.stats.approvals_checked == 0
    assert checker.stats.signatures_verified == 0 and checker.stats.unsigned_entries == 3


def test_an_entry_that_cannot_be_hashed_is_a_hash_mismatch_not_a_crash() -> None:
    """recompute_entry_hash raises VerificationError ``hash_mismatch`` for any entry whose
    hash is not the stored one, also one with a field that is not the schema's type (a key
    id as bytes instead of a string: no RFC 8785 text exists for it)."""
    entry = dict(LedgerBuilder(KEY).entry("agent-a"))
    entry["key_id"] = entry["key_id"].encode()
    with pytest.raises(VerificationError) as raised:
        recompute_entry_hash(entry)
    assert raised.value.kind == "hash_mismatch"


def test_an_entry_with_a_lone_surrogate_is_a_hash_mismatch_not_a_crash() -> None:
    """RFC 8785 hashes UTF-8 text; a string with a lone surrogate has none (it cannot be
    encoded), so such an entry cannot match any stored hash: ``hash_mismatch``."""
    entry = dict(LedgerBuilder(KEY).entry("agent-a"))
    entry["action"] = {**entry["action"], "agent_id": "agent-\ud800"}
    with pytest.raises(VerificationError) as raised:
        recompute_entry_hash(entry)
    assert raised.value.kind == "hash_mismatch"


def test_check_entry_verifies_the_signature_of_a_signed_entry() -> None:
    """check_entry (the dashboards', the SIEM export's and the index's one-record check) runs
    step [3]: a signed entry is accepted as signed, the same entry with one bit of its
    signature flipped is rejected as ``bad_signature`` (docs/alerts.md)."""
    entry = LedgerBuilder(KEY).entry("agent-a")
    good = check_entry((0, entry_bytes(entry)), config())
    assert good.rejection is None and good.signed
    signature = bytes(entry["signature"])
    bad = check_entry((2, flip_inside(entry_bytes(entry), signature[1000:1032])), config())
    assert bad.rejection is not None and bad.rejection.kind.value == "bad_signature" and not bad.signed


def test_check_entry_accepts_an_unsigned_entry_in_checkpoint_signing_mode() -> None:
    # docs/spec.md section 4: in checkpoint signing mode `signature` is null
    entry = LedgerBuilder(KEY, signing_mode="checkpoint").entry("agent-a")
    assert entry["signature"] is None
    checked = check_entry((0, entry_bytes(entry)), config())
    assert checked.rejection is None and not checked.signed


def test_a_checked_entry_cannot_be_altered_after_its_checks() -> None:
    """Checked entries are handed from the checking threads or processes to the checker that
    integrates them (check_entries, feed_checked): a verdict must not be changeable on the way."""
    checked = check_entry((0, entry_bytes(LedgerBuilder(KEY).entry("agent-a"))), config())
    with pytest.raises(dataclasses.FrozenInstanceError):
        checked.rejection = None  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        checked.signed = True  # type: ignore[misc]


def stand_in_reader(preimage_of: Callable[[dict[str, Any]], bytes]) -> Callable[[bytes], Any]:
    """avro_fast.read_entry as its docstring defines it (the entry and its entry-hash preimage),
    for trees where the compiled reader is not built (the mutation copy, a compiler-less
    install): the verdicts must be those of the spec either way."""
    def read_entry(raw: bytes) -> tuple[dict[str, Any], bytes]:
        entry = codec.decode(raw, expect="LedgerEntry")[1]
        return entry, preimage_of(entry)
    return read_entry


def test_through_the_fast_reader_entries_verify_against_its_preimage(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/spec.md section 3: entry_hash = SHA-256(TAG_ENTRY || JCS(...)). With the fast
    reader the checker hashes the preimage the reader wrote: a genuine entry is accepted, and a
    preimage that is not the entry's gives ``hash_mismatch`` with SHA-256 of that preimage as
    the computed value."""
    entry = LedgerBuilder(KEY).entry("agent-a")
    raw = entry_bytes(entry)
    monkeypatch.setattr(avro_fast, "read_entry", stand_in_reader(records.entry_hash_input))
    good = check_entry((0, raw), config())
    assert good.rejection is None and good.entry_hash == bytes(entry["entry_hash"]) and good.signed
    assert good.entry is not None and good.entry["seq"] == 0 and good.entry["action"]["agent_id"] == "agent-a"
    other = b"ledgerstream/v1/entry\x00{}"
    monkeypatch.setattr(avro_fast, "read_entry", stand_in_reader(lambda e: other))
    bad = check_entry((0, raw), config())
    assert bad.rejection is not None and bad.rejection.kind.value == "hash_mismatch"
    assert bad.rejection.evidence["computed"] == hashlib.sha256(other).hexdigest()
