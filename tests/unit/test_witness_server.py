"""``ledgerstream witness serve``'s protocol logic (c2sp.org/tlog-witness): status codes as the
spec's text gives them, cosignatures checked by hand, and the one safety property: it never
cosigns two inconsistent checkpoints of one origin, also after a restart. Trees and proofs
come from the RFC 9162 reference in tests/support (not from core/merkle)."""
from __future__ import annotations

import base64
import hashlib
import struct
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledgerstream.core import mldsa, note, records
from ledgerstream.core.errors import ConfigError
from ledgerstream.witness import protocol
from ledgerstream.witness.server import Witness
from ledgerstream.witness.state import STATE_FILE, WitnessState
from support.rfc9162_checker import mth, proof

pytestmark = pytest.mark.unit

ORIGIN = "example.com/log"
LOG = note.NoteSigner(ORIGIN, note.ED25519, ed25519=Ed25519PrivateKey.from_private_bytes(bytes(32)))
WITNESS_KEY = mldsa.PrivateKey.from_seed(bytes(range(32)))
NOW = 1_760_000_000


def leaves(n: int, tag: bytes = b"a") -> list[bytes]:
    return [tag + i.to_bytes(4, "big") for i in range(n)]


def checkpoint(d: list[bytes], signer: note.NoteSigner = LOG) -> bytes:
    body = records.checkpoint_body(ORIGIN, len(d), mth(d), bytes(32), 1)
    return note.format_note(body, [signer.sign(body)])


def witness(state_dir: Path) -> Witness:
    signer = note.NoteSigner("w.example/pq", note.MLDSA65_COSIGNATURE, ml_dsa=WITNESS_KEY)
    return Witness(signer, [LOG.verifier], WitnessState(state_dir), clock=lambda: NOW)


def submit(w: Witness, old: int, d_old: list[bytes], d: list[bytes], *, signed: bytes | None = None):
    p = proof(old, d) if 0 < old < len(d) else []
    return w.add_checkpoint(protocol.format_request(old, p, signed or checkpoint(d)))


def test_cosigns_consistent_growth_and_the_cosignature_is_the_spec_message(tmp_path: Path) -> None:
    w = witness(tmp_path)
    d = leaves(5)
    a = submit(w, 0, [], d)
    assert a.status == 200
    (line,) = protocol.parse_cosignatures(a.body)
    assert line.name == "w.example/pq" and line.signature[:8] == struct.pack(">Q", NOW)
    name = b"w.example/pq"
    message = (b"subtree/v1\n\x00" + bytes([len(name)]) + name + struct.pack(">Q", NOW) + bytes([len(ORIGIN)])
               + ORIGIN.encode() + struct.pack(">QQ", 0, 5) + mth(d))
    WITNESS_KEY.public_key().verify(line.signature[8:], message)
    d2 = leaves(13)
    assert submit(w, 5, d, d2).status == 200
    assert submit(w, 13, d2, d2).status == 200  # the same checkpoint again: cosigned again
    assert WitnessState(tmp_path).head(ORIGIN) == (13, mth(d2))


def test_status_codes(tmp_path: Path) -> None:
    w = witness(tmp_path)
    d, d2 = leaves(4), leaves(9)
    assert submit(w, 0, [], d).status == 200
    conflict = submit(w, 0, [], d2)  # the client does not know our size yet
    assert (conflict.status, conflict.body, conflict.content_type) == (409, b"4\n", "text/x.tlog.size")
    assert submit(w, 3, d, d2).status == 409
    assert submit(w, 10, d, d2).status == 400  # old size above the checkpoint's
    other = note.NoteSigner("other.example/log", note.ED25519, ed25519=Ed25519PrivateKey.generate())
    body = records.checkpoint_body("other.example/log", 9, mth(d2), bytes(32), 1)
    assert w.add_checkpoint(protocol.format_request(4, proof(4, d2), note.format_note(body, [other.sign(body)]))).status == 404
    forged = note.NoteSigner(ORIGIN, note.ED25519, ed25519=Ed25519PrivateKey.generate())
    forged_line = note.Signature(ORIGIN, LOG.verifier.key_id, forged.sign(b"x").signature)
    body9 = records.checkpoint_body(ORIGIN, 9, mth(d2), bytes(32), 1)
    assert submit(w, 4, d, d2, signed=note.format_note(body9, [forged_line])).status == 403
    unsigned = note.format_note(body9, [forged.sign(body9)])  # only a key the witness does not know
    assert submit(w, 4, d, d2, signed=unsigned).status == 403
    for bad in (b"", b"old 01\n\nx", b"new 4\n\n" + checkpoint(d2), b"old 4\nnot base64!\n\n" + checkpoint(d2),
                b"old 4\n" + base64.b64encode(b"short") + b"\n\n" + checkpoint(d2)):
        assert w.add_checkpoint(bad).status == 400, bad
    assert w.add_checkpoint(protocol.format_request(4, [], b"not a checkpoint\n\n\xe2\x80\x94 a AAAAAA==\n")).status == 400
    assert WitnessState(tmp_path).head(ORIGIN) == (4, mth(d))  # nothing refused moved it
    assert w.counts == {"cosigned": 1, "conflicts": 2, "refused": 10}


def test_never_cosigns_a_split_view_also_after_a_restart(tmp_path: Path) -> None:
    d = leaves(8)
    assert submit(witness(tmp_path), 0, [], d).status == 200
    fork = d[:5] + leaves(6, b"evil")  # the same first 5 entries, then another history
    again = witness(tmp_path)  # a restart: the state comes back from disk
    assert submit(again, 8, d, fork).status == 422  # the proof from 8 cannot hold
    same_size = d[:7] + [b"other"]
    assert submit(again, 8, d, same_size).status == 422  # equal sizes, different roots
    assert submit(again, 0, [], fork).status == 409
    assert WitnessState(tmp_path).head(ORIGIN) == (8, mth(d))


def test_concurrent_submissions_never_roll_back(tmp_path: Path) -> None:
    """tlog-witness: the size check and its update are atomic (no rollback race)."""
    w = witness(tmp_path)
    assert submit(w, 0, [], leaves(2)).status == 200
    results: list[int] = []
    threads = [threading.Thread(target=lambda n=n: results.append(submit(w, 2, leaves(2), leaves(n)).status))
               for n in (3, 4, 5, 6, 7, 8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count(200) == 1 and results.count(409) == 5
    size, root = WitnessState(tmp_path).head(ORIGIN)
    assert root == mth(leaves(size))


def test_a_damaged_state_file_stops_the_witness(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="split view"):
        WitnessState(tmp_path)


def test_the_request_format_round_trips() -> None:
    hashes = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    req = protocol.parse_request(protocol.format_request(7, hashes, b"note\n\n\xe2\x80\x94 a AAAAAA==\n"))
    assert (req.old_size, req.proof) == (7, hashes)
    sixty_four = b"old 7\n" + (base64.b64encode(bytes(32)) + b"\n") * 64 + b"\nn\n"
    with pytest.raises(protocol.BadRequest, match="63"):
        protocol.parse_request(sixty_four)
    assert protocol.parse_conflict(b"12\n") == 12
    for bad in (b"12", b"x\n", b""):
        with pytest.raises(ValueError):
            protocol.parse_conflict(bad)
