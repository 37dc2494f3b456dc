"""Fuzz what a witness, a verifier and the witness client read from others: signed notes,
vkeys, tlog-witness requests and answers, and NoteSignature records. Any bytes either raise
the documented error (ValueError; VerificationError for signatures) or parse to something
whose rendering is the input."""
from __future__ import annotations

import hashlib

import pytest
import fuzz_profile  # noqa: F401  (the Hypothesis profile: bounded in CI, LEDGERSTREAM_FUZZ_EXAMPLES)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from fuzz_mutations import mutated
from ledgerstream.core import note, records
from ledgerstream.core.errors import VerificationError
from ledgerstream.core.verify import CHECKPOINTS, Checker, CheckerConfig
from ledgerstream.core.wire import codec
from ledgerstream.witness import protocol
from ledgerstream.witness.server import Witness
from ledgerstream.witness.state import WitnessState

pytestmark = pytest.mark.unit

LOG = note.NoteSigner("example.com/log", note.ED25519, ed25519=Ed25519PrivateKey.from_private_bytes(bytes(32)))
BODY = records.checkpoint_body("example.com/log", 3, hashlib.sha256(b"r").digest(), bytes(32), 1)
NOTE = note.format_note(BODY, [LOG.sign(BODY)])
SEEDS = [NOTE, protocol.format_request(0, [], NOTE), protocol.format_request(2, [bytes(32)], NOTE),
         b"\xe2\x80\x94 w.example/w AAAAAAAAAAAAAAA=\n", b"12\n"]


@given(st.one_of(st.binary(max_size=400), mutated(SEEDS)))
def test_notes_parse_or_raise_value_error_and_round_trip(data: bytes) -> None:
    try:
        text, sigs = note.parse_note(data)
    except ValueError:
        return
    assert note.format_note(text, sigs) == data
    try:
        note.verify_note(data, [LOG.verifier])
    except VerificationError:
        pass


@given(st.one_of(st.text(max_size=120), mutated([LOG.verifier.vkey.encode()]).map(lambda b: b.decode("utf-8", "replace"))))
def test_vkeys_parse_or_raise_value_error(text: str) -> None:
    try:
        v = note.parse_vkey(text)
    except ValueError:
        return
    assert v.vkey == text.strip()


@given(mutated(SEEDS))
def test_witness_answers_every_request_with_a_status(tmp_path_factory, data: bytes) -> None:
    w = Witness(note.NoteSigner("w.example/w", note.COSIGNATURE_V1, ed25519=Ed25519PrivateKey.generate()),
                [LOG.verifier], WitnessState(tmp_path_factory.mktemp("w")))
    assert w.add_checkpoint(data).status in (200, 400, 403, 404, 409, 422)
    for parse in (protocol.parse_conflict, protocol.parse_cosignatures):
        try:
            parse(data)
        except ValueError:
            pass


@given(name=st.text(max_size=30), key_id=st.binary(max_size=6), signature=st.binary(max_size=80),
       role=st.sampled_from(["log", "witness", "", "x"]), size=st.integers(-2, 5))
def test_note_signature_records_never_crash_the_checker(name: str, key_id: bytes, signature: bytes, role: str,
                                                       size: int) -> None:
    checker = Checker(CheckerConfig(trusted_keys={}, note_keys=(LOG.verifier,), witnesses=(LOG.verifier,),
                                    witness_quorum=1))
    raw = codec.encode("NoteSignature", {"tree_size": size, "body_hash": hashlib.sha256(BODY).digest(), "role": role,
                                         "name": name, "key_id": key_id, "signature": signature, "created_at": 0})
    found = checker.feed(CHECKPOINTS, 0, raw)
    assert all(f.kind.value in ("cosignature_invalid", "checkpoint_bad_signature") for f in found)
