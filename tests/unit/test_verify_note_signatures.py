"""NoteSignature records on the checkpoints topic (docs/spec.md section 6): the log's Ed25519
note line and witness cosignatures, judged by the one Checker. Signatures are made here with
pyca/cryptography and the messages built by hand from c2sp.org/tlog-cosignature."""
from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledgerstream.core import mldsa, note
from ledgerstream.core.adoption import adopt
from ledgerstream.core.verify import CHECKPOINTS, Checker, CheckerConfig, Kind
from support.ledger_builder import LedgerBuilder, enc, entry_bytes
from support.signed_notes import key_id

pytestmark = pytest.mark.unit

KEY = mldsa.PrivateKey.from_seed(bytes(range(32)))
LOG_ED = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
W1 = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
W2 = mldsa.PrivateKey.from_seed(bytes(range(2, 34)))
ORIGIN = "ledgerstream/test"


def _raw(k: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


LOG_VKEY = note.Verifier(ORIGIN, note.ED25519, _raw(LOG_ED))
W1_VKEY = note.Verifier("w1.example/witness", note.COSIGNATURE_V1, _raw(W1))
W2_VKEY = note.Verifier("w2.example/pq", note.MLDSA65_COSIGNATURE, W2.public_key().raw)


def config(quorum: int = 2) -> CheckerConfig:
    return CheckerConfig.from_keys([KEY.public_key()], link_grace_entries=50, link_grace_seconds=None,
                                   note_keys=(LOG_VKEY,), witnesses=(W1_VKEY, W2_VKEY), witness_quorum=quorum)


def record(cp: dict[str, Any], role: str, name: str, kid: bytes, signature: bytes) -> bytes:
    return enc("NoteSignature", {"tree_size": cp["tree_size"], "body_hash": hashlib.sha256(cp["body"]).digest(),
                                 "role": role, "name": name, "key_id": kid, "signature": signature,
                                 "created_at": cp["created_at"]})


def log_line(cp: dict[str, Any]) -> bytes:
    """The log's Ed25519 line: a plain signed-note signature over the body (key type 0x01)."""
    return record(cp, "log", ORIGIN, key_id(ORIGIN, b"\x01", _raw(LOG_ED)), LOG_ED.sign(cp["body"]))


def w1_cosignature(cp: dict[str, Any], t: int = 1_700_000_000) -> bytes:
    msg = b"cosignature/v1\ntime %d\n" % t + cp["body"]
    return record(cp, "witness", W1_VKEY.name, key_id(W1_VKEY.name, b"\x04", _raw(W1)),
                  struct.pack(">Q", t) + W1.sign(msg))


def w2_cosignature(cp: dict[str, Any], t: int = 1_700_000_000) -> bytes:
    name, origin = W2_VKEY.name.encode(), ORIGIN.encode()
    msg = (b"subtree/v1\n\x00" + bytes([len(name)]) + name + struct.pack(">Q", t) + bytes([len(origin)]) + origin
           + struct.pack(">QQ", 0, cp["tree_size"]) + cp["root_hash"])
    return record(cp, "witness", W2_VKEY.name,
                  key_id(W2_VKEY.name, b"\xffledgerstream/subtree-ml-dsa-65", W2.public_key().raw),
                  struct.pack(">Q", t) + W2.sign(msg))


class Feed:
    def __init__(self, cfg: CheckerConfig | None = None) -> None:
        self.b = LedgerBuilder(KEY, origin=ORIGIN)
        self.checker = Checker(cfg or config())
        self.offsets = {"entries": 0, "checkpoints": 0}
        self.found: list[str] = []

    def put(self, topic: str, raw: bytes) -> None:
        self.found += [f.kind.value for f in self.checker.feed(topic, self.offsets[topic], raw)]
        self.offsets[topic] += 1

    def checkpoint(self, n: int = 5) -> dict[str, Any]:
        for e in self.b.many(n):
            self.put("entries", entry_bytes(e))
        cp = self.b.checkpoint()
        self.put(CHECKPOINTS, enc("Checkpoint", cp))
        return cp


def test_log_line_and_cosignatures_verify_and_make_a_checkpoint_witnessed() -> None:
    f = Feed()
    cp1 = f.checkpoint()
    f.put(CHECKPOINTS, log_line(cp1))
    f.put(CHECKPOINTS, w1_cosignature(cp1))
    assert f.checker.witnessed_size == 0  # one of two
    cp2 = f.checkpoint()
    f.put(CHECKPOINTS, w2_cosignature(cp2))
    assert f.found == []
    s = f.checker.stats
    assert (s.note_signatures_verified, s.cosignatures_verified) == (1, 2)
    assert s.witnesses == {W1_VKEY.name: cp1["tree_size"], W2_VKEY.name: cp2["tree_size"]}
    assert f.checker.witnessed_size == cp1["tree_size"]  # both cosigned a tree of at least that size
    f.put(CHECKPOINTS, w1_cosignature(cp2))
    assert f.checker.witnessed_size == cp2["tree_size"]
    assert Checker(config(quorum=1)).config.witnessed_size({"a": 3, "b": 9}) == 9


@pytest.mark.parametrize("forge, kind", [
    (lambda cp: record(cp, "log", ORIGIN, key_id(ORIGIN, b"\x01", _raw(LOG_ED)), LOG_ED.sign(cp["body"] + b"x")),
     Kind.CHECKPOINT_BAD_SIGNATURE),
    (lambda cp: w1_cosignature(dict(cp, body=cp["body"].replace(b"time", b"tima"))), Kind.COSIGNATURE_INVALID),
    (lambda cp: w2_cosignature(dict(cp, root_hash=bytes(32))), Kind.COSIGNATURE_INVALID),
    (lambda cp: w1_cosignature(dict(cp, tree_size=cp["tree_size"] + 1)), Kind.COSIGNATURE_INVALID),  # names another size
    (lambda cp: record(cp, "witness", W1_VKEY.name, W1_VKEY.key_id, b"\x00" * 5), Kind.COSIGNATURE_INVALID),
    (lambda cp: record(dict(cp, body=b"never published\n"), "witness", W1_VKEY.name, W1_VKEY.key_id, b"\x00" * 72),
     Kind.COSIGNATURE_INVALID),
    (lambda cp: record(cp, "auditor", W1_VKEY.name, W1_VKEY.key_id, b"\x00" * 72), Kind.COSIGNATURE_INVALID),
    (lambda cp: record(cp, "witness", "bad name", W1_VKEY.key_id, b"\x00" * 72), Kind.COSIGNATURE_INVALID),
    (lambda cp: record(cp, "witness", W1_VKEY.name, b"\x00" * 5, b"\x00" * 72), Kind.COSIGNATURE_INVALID),
    (lambda cp: record(cp, "witness", W1_VKEY.name, W1_VKEY.key_id, b"\x00" * 5000), Kind.COSIGNATURE_INVALID),
])
def test_a_bad_line_from_a_configured_key_is_a_finding(forge, kind: Kind) -> None:
    f = Feed()
    cp = f.checkpoint()
    f.put(CHECKPOINTS, forge(cp))
    assert f.found == [kind.value]
    assert f.checker.stats.witnesses == {} and f.checker.witnessed_size == 0


def test_lines_of_unknown_keys_are_ignored() -> None:
    """c2sp.org/signed-note: a verifier ignores signatures from keys it does not know, even
    with a known name or a known key ID (not both)."""
    f = Feed()
    cp = f.checkpoint()
    other = Ed25519PrivateKey.generate()
    f.put(CHECKPOINTS, record(cp, "witness", "stranger.example/w", b"\x01\x02\x03\x04", b"\x00" * 72))
    f.put(CHECKPOINTS, record(cp, "witness", W1_VKEY.name, key_id(W1_VKEY.name, b"\x04", _raw(other)),
                              struct.pack(">Q", 1) + other.sign(b"x")))
    f.put(CHECKPOINTS, record(cp, "log", W1_VKEY.name, W1_VKEY.key_id, b"\x00" * 72))  # a witness key as 'log'
    assert f.found == []
    assert f.checker.stats.note_signatures_unknown == 3


def test_state_survives_a_restore() -> None:
    f = Feed(config(quorum=1))
    cp = f.checkpoint()
    f.put(CHECKPOINTS, w1_cosignature(cp))
    journal = f.checker.drain_journal()
    restored = Checker.restore(config(quorum=1), f.checker.export_state(), journal)
    assert restored.stats.witnesses == {W1_VKEY.name: cp["tree_size"]}
    assert restored.witnessed_size == cp["tree_size"]


def test_readers_keep_verified_lines_and_render_the_full_note() -> None:
    """The full-read path (core/adoption + tools/ledger_snapshot) keeps configured, verified
    lines, and the note it renders verifies with the log's and the witnesses' keys."""
    from ledgerstream.core.verify.checkpoints import checkpoint_note
    from ledgerstream.core.verify.checkpoints import NoteLine

    b = LedgerBuilder(KEY, origin=ORIGIN)
    entries = [(i, entry_bytes(e)) for i, e in enumerate(b.many(4))]
    cp = b.checkpoint()
    bad = record(cp, "witness", W2_VKEY.name, W2_VKEY.key_id, struct.pack(">Q", 1) + bytes(mldsa.SIGNATURE_SIZE))
    cps = [(0, enc("Checkpoint", cp)), (1, log_line(cp)), (2, w1_cosignature(cp)), (3, bad)]
    run = adopt(entries, cps, config(quorum=1), lambda c: None)
    assert [c.offset for c in run.note_signatures] == [1, 2, 3]
    problems = run.checkpoint_findings()
    assert [f.kind for f in problems[3]] == [Kind.COSIGNATURE_INVALID] and 1 not in problems and 2 not in problems
    from ledgerstream.core.verify.checkpoints import note_signature_key, note_signature_line
    lines = [NoteLine(c.record["role"], note_signature_key(c.record, run.checker.config), note_signature_line(c.record),
                      c.offset not in problems) for c in run.note_signatures]
    full = checkpoint_note(cp, lines, run.checker.config)
    text, verified = note.verify_note(full, [LOG_VKEY, W1_VKEY, W2_VKEY, note.Verifier(ORIGIN, note.MLDSA65,
                                                                                      KEY.public_key().raw)])
    assert text == cp["body"]
    assert [v.name for v, _ in verified] == [ORIGIN, ORIGIN, W1_VKEY.name]  # the failed W2 line is left out


def test_a_peer_checkpoint_with_another_root_is_a_split_view() -> None:
    f = Feed()
    honest = f.checkpoint(8)
    other = LedgerBuilder(KEY, origin=ORIGIN)  # the same signer key, another history
    other.many(8, agents=("someone-else",))
    split = other.checkpoint()
    longer = (other.many(20), other.checkpoint())[1]
    rogue = LedgerBuilder(mldsa.PrivateKey.from_seed(bytes(32)), origin=ORIGIN)
    rogue.many(8)
    found = []
    for i, cp in enumerate([honest, split, longer, rogue.checkpoint()]):
        found += f.checker.check_peer_checkpoint((i, enc("Checkpoint", cp)), "mirror.checkpoints")
    assert [x.kind for x in found] == [Kind.SPLIT_VIEW]
    assert found[0].evidence["peer_offset"] == "1" and found[0].evidence["our_root"] == honest["root_hash"].hex()
    assert (f.checker.stats.peer_checkpoints_checked, f.checker.stats.peer_checkpoints_beyond) == (3, 1)


def test_a_live_verifier_holds_peer_checkpoints_until_its_ledger_reaches_them() -> None:
    f = Feed()
    f.checkpoint(4)
    other = LedgerBuilder(KEY, origin=ORIGIN)
    other.many(8, agents=("someone-else",))
    split = other.checkpoint()  # size 8: beyond this ledger (4) for now
    assert f.checker.feed_peer_checkpoints([(0, enc("Checkpoint", split))], "mirror.checkpoints") == []
    assert f.checker.next_offset["peer_checkpoints"] == 1
    restored = Checker.restore(config(), f.checker.export_state(), f.checker.drain_journal())
    for e in f.b.many(6):  # the honest ledger grows past 8 (the newest entry stays tentative)
        found = [x.kind for x in restored.feed("entries", f.offsets["entries"], entry_bytes(e))]
        f.offsets["entries"] += 1
        if found:
            break
    assert found == [Kind.SPLIT_VIEW]
    assert restored.feed_peer_checkpoints([(0, enc("Checkpoint", split))], "m") == []  # offset already read
