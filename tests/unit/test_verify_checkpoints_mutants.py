"""The stateless checkpoint-record checks of core/verify/checkpoints.py on the cases its
mutation run showed untested (docs/mutation.md). Expected verdicts come from docs/spec.md
section 6, docs/alerts.md and the sizes FIPS 204 and c2sp.org/tlog-cosignature fix; the
records are made here (pyca Ed25519, the project's ML-DSA key), never taken from the
checker's output."""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest

from ledgerstream.core import records
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.core.verify import CHECKPOINTS, ENTRIES, Checker, CheckerConfig, check_checkpoint_record
from support.ledger_builder import LedgerBuilder, enc, entry_bytes

pytestmark = pytest.mark.unit

KEY = PrivateKey.from_seed(bytes(range(32)))
ORIGIN = "ledgerstream/test"
#: c2sp.org/tlog-cosignature: an 8-byte timestamp, then the signature; the largest ML-DSA
#: signature is ML-DSA-87's, 4627 bytes (FIPS 204, Table 2)
LARGEST_NOTE_SIGNATURE = 8 + 4627


def config(**kw: Any) -> CheckerConfig:
    return CheckerConfig.from_keys([KEY.public_key()], link_grace_entries=50, link_grace_seconds=None, **kw)


def ledger(n: int = 5, origin: str = ORIGIN) -> tuple[LedgerBuilder, list[bytes]]:
    b = LedgerBuilder(KEY, origin=origin)
    return b, [entry_bytes(e) for e in b.many(n)]


def findings(entries: list[bytes], checkpoint_records: list[bytes], cfg: CheckerConfig | None = None) -> list:
    checker = Checker(cfg or config())
    out = []
    for i, raw in enumerate(entries):
        out += checker.feed(ENTRIES, i, raw)
    for i, raw in enumerate(checkpoint_records):
        out += checker.feed(CHECKPOINTS, i, raw)
    return out + checker.finish()


def note_signature(cp: dict[str, Any], **fields: Any) -> bytes:
    """A NoteSignature record over ``cp`` (docs/spec.md section 6.2) from a key this verifier
    has not configured, so that only the record's bounds decide: a well-formed one is ignored
    (c2sp.org/signed-note), an ill-formed one is ``cosignature_invalid``."""
    rec = {"tree_size": cp["tree_size"], "body_hash": hashlib.sha256(cp["body"]).digest(), "role": "witness",
           "name": "stranger.example/witness", "key_id": b"\x01\x02\x03\x04", "signature": b"\x00" * 72,
           "created_at": cp["created_at"]}
    rec.update(fields)
    return enc("NoteSignature", rec)


# --- Checkpoint records ------------------------------------------------------------------------

def test_a_timestamp_anchor_is_taken_as_one_and_names_its_checkpoint_body() -> None:
    b, _ = ledger()
    cp = b.checkpoint()
    anchor = LedgerBuilder.anchor(cp, b"\x30\x03\x02\x01\x00")
    checked = check_checkpoint_record((0, enc("TimestampAnchor", anchor)), config())
    assert checked.rejection is None and checked.name == "TimestampAnchor"
    assert checked.body_hash == hashlib.sha256(cp["body"]).digest()
    cp_checked = check_checkpoint_record((1, enc("Checkpoint", cp)), config())
    assert cp_checked.rejection is None and cp_checked.name == "Checkpoint"
    assert cp_checked.body_hash == hashlib.sha256(cp["body"]).digest()


@pytest.mark.parametrize("size", [1, 2, 5, 6])
def test_a_checkpoint_finding_points_at_the_last_entry_it_covers(size: int) -> None:
    """docs/alerts.md: seq_from/seq_to of a checkpoint finding are the last entry the
    checkpoint covers, entry tree_size - 1."""
    b, _ = ledger(6)
    cp = b.checkpoint(size=size, key=PrivateKey.from_seed(bytes(range(1, 33))))  # an untrusted key
    checked = check_checkpoint_record((0, enc("Checkpoint", cp)), config())
    assert checked.rejection is not None and checked.rejection.kind.value == "checkpoint_bad_signature"
    assert (checked.rejection.seq_from, checked.rejection.seq_to) == (size - 1, size - 1)


def test_a_finding_about_a_checkpoint_of_the_empty_tree_points_at_no_entry() -> None:
    b = LedgerBuilder(KEY, origin=ORIGIN)
    cp = b.checkpoint(size=0, key=PrivateKey.from_seed(bytes(range(1, 33))))
    checked = check_checkpoint_record((0, enc("Checkpoint", cp)), config())
    assert checked.rejection is not None and checked.rejection.kind.value == "checkpoint_bad_signature"
    assert (checked.rejection.seq_from, checked.rejection.seq_to) == (None, None)


def test_a_signed_body_that_is_not_a_checkpoint_body_is_inconsistent_not_a_crash() -> None:
    """docs/alerts.md checkpoint_inconsistent: "the body does not parse"; the body is validly
    signed by the trusted key, so only the parse can refuse it."""
    b, entries = ledger()
    cp = dict(b.checkpoint())
    for body in (b"not a checkpoint\n", "ledgerstream/test\n5\n\u00e9\n".encode(), b"\xff\xfe\n"):
        cp.update(body=body, signature=KEY.sign(body))
        checked = check_checkpoint_record((0, enc("Checkpoint", cp)), config())
        assert checked.rejection is not None and checked.rejection.kind.value == "checkpoint_inconsistent", body


@pytest.mark.parametrize("origin", ["ledgerstream/other", "a-log-sorted-first", "z-log-sorted-last"])
def test_a_checkpoint_of_another_origin_is_inconsistent(origin: str) -> None:
    """docs/alerts.md checkpoint_inconsistent: "or the origin is not the configured one"; one
    origin sorts before the configured one, one after."""
    b, entries = ledger(origin=origin)
    cp = b.checkpoint()
    kinds = [f.kind.value for f in findings(entries, [enc("Checkpoint", cp)], config(origin=ORIGIN))]
    assert kinds == ["checkpoint_inconsistent"]
    assert [f.kind.value for f in findings(entries, [enc("Checkpoint", cp)], config(origin=origin))] == []


def test_a_checkpoint_of_the_configured_origin_is_accepted() -> None:
    b, entries = ledger()
    assert findings(entries, [enc("Checkpoint", b.checkpoint())], config(origin=ORIGIN)) == []


def test_a_checked_checkpoint_cannot_be_altered_after_its_checks() -> None:
    """Checked records go from the checking code to the checker's state: a verdict must not be
    changeable on the way."""
    b, _ = ledger()
    checked = check_checkpoint_record((0, enc("Checkpoint", b.checkpoint())), config())
    with pytest.raises(dataclasses.FrozenInstanceError):
        checked.rejection = None  # type: ignore[misc]


# --- NoteSignature bounds ----------------------------------------------------------------------

def note_verdict(**fields: Any) -> list[tuple[str, str | None]]:
    b, entries = ledger()
    cp = b.checkpoint()
    found = findings(entries, [enc("Checkpoint", cp), note_signature(cp, **fields)])
    return [(f.kind.value, f.evidence.get("reason")) for f in found]


MALFORMED = [("cosignature_invalid", "malformed")]


@pytest.mark.parametrize("length", [1, 72, LARGEST_NOTE_SIGNATURE])
def test_note_signatures_of_1_to_8_plus_4627_bytes_are_well_formed(length: int) -> None:
    assert note_verdict(signature=b"\x00" * length) == []


@pytest.mark.parametrize("length", [0, LARGEST_NOTE_SIGNATURE + 1, 5000])
def test_note_signatures_outside_1_to_8_plus_4627_bytes_are_malformed(length: int) -> None:
    assert note_verdict(signature=b"\x00" * length) == MALFORMED


@pytest.mark.parametrize("key_id", [b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"])
def test_a_note_key_id_is_4_bytes(key_id: bytes) -> None:
    # c2sp.org/signed-note: the key ID is the first 4 bytes of a SHA-256 hash
    assert note_verdict(key_id=key_id) == MALFORMED


@pytest.mark.parametrize("length", [0, 31, 33])
def test_a_note_body_hash_is_32_bytes(length: int) -> None:
    assert note_verdict(body_hash=bytes(length)) == MALFORMED


def test_a_note_tree_size_is_not_negative() -> None:
    assert note_verdict(tree_size=-1) == MALFORMED
    assert note_verdict(tree_size=-2) == MALFORMED


def test_a_note_signature_over_the_empty_tree_is_well_formed() -> None:
    b = LedgerBuilder(KEY, origin=ORIGIN)
    cp = b.checkpoint(size=0)
    found = findings([], [enc("Checkpoint", cp), note_signature(cp)])
    assert found == []


def test_a_record_on_checkpoints_that_is_no_record_is_undecodable() -> None:
    """docs/alerts.md `undecodable`: bytes that are not a valid record, on either topic."""
    for raw in (b"", b"\x00" * 10, bytes(range(256)), b"\xc3\x01" + bytes(8) + b"\x02"):
        checked = check_checkpoint_record((3, raw), config())
        assert checked.rejection is not None and checked.rejection.kind.value == "undecodable"
        assert checked.rejection.evidence["sha256"] == hashlib.sha256(raw).hexdigest()


def test_a_note_line_is_an_immutable_value() -> None:
    """NoteLines are kept per checkpoint by the read tools (ledger_snapshot, replay) and
    shared between them: one must not be changeable after its verification."""
    from ledgerstream.core import note
    from ledgerstream.core.verify.checkpoints import NoteLine

    verifier = note.Verifier("w.example/w", note.COSIGNATURE_V1, bytes(32))
    line = NoteLine("witness", verifier, note.Signature("w.example/w", b"\x01\x02\x03\x04", b"\x00" * 72), False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        line.verified = True  # type: ignore[misc]
