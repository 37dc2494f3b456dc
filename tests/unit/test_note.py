"""core/note.py against code and text nobody here wrote: the C2SP signed-note example and
Go's golang.org/x/mod/sumdb/note test vectors (tests/vectors/note/upstream.json), and the
cosignature messages rebuilt byte by byte from c2sp.org/tlog-cosignature's text."""
from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledgerstream.core import mldsa, note, records
from ledgerstream.core.errors import ConfigError, VerificationError

pytestmark = pytest.mark.unit

UPSTREAM = json.loads((Path(__file__).parents[1] / "vectors" / "note" / "upstream.json").read_text())


@pytest.mark.parametrize("case", UPSTREAM["valid"], ids=lambda c: c["from"])
def test_upstream_notes_verify(case: dict) -> None:
    verifiers = [note.parse_vkey(v) for v in case["vkeys"]]
    assert [v.vkey for v in verifiers] == case["vkeys"]  # the encoding round-trips
    text, verified = note.verify_note(case["note"].encode(), verifiers)
    assert case["note"].encode().startswith(text)
    assert [v.name for v, _ in verified] == case["verified_by"]


@pytest.mark.parametrize("case", UPSTREAM["valid"], ids=lambda c: c["from"])
def test_upstream_notes_fail_after_a_one_byte_change(case: dict) -> None:
    verifiers = [note.parse_vkey(v) for v in case["vkeys"]]
    raw = bytearray(case["note"].encode())
    raw[3] ^= 0x01  # in the text
    with pytest.raises(VerificationError):
        note.verify_note(bytes(raw), verifiers)


def test_upstream_signing_vector() -> None:
    case = UPSTREAM["sign"][0]
    material = base64.b64decode(case["skey"].split("+", 4)[-1])
    assert material[0] == 1  # Go's private key: 0x01 || 32-byte Ed25519 seed
    signer = note.NoteSigner("PeterNeumann", note.ED25519, ed25519=Ed25519PrivateKey.from_private_bytes(material[1:]))
    assert signer.verifier.vkey == case["vkey"]
    assert signer.sign(case["text"].encode()).line() == case["line"]  # Ed25519 is deterministic


def test_go_vkey_manglings_are_refused() -> None:
    """Go's TestNewVerifier: every proper substring and every one-byte increment fails."""
    vkey = UPSTREAM["sign"][0]["vkey"]
    for i in range(len(vkey) + 1):
        for j in range(i + 1, len(vkey) + 1):
            if (i, j) != (0, len(vkey)):
                with pytest.raises(ValueError):
                    note.parse_vkey(vkey[i:j])
    for i in range(len(vkey)):
        mangled = vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1:]
        with pytest.raises(ValueError):
            note.parse_vkey(mangled)
    for case in UPSTREAM["bad_vkeys"]:
        with pytest.raises(ValueError):
            note.parse_vkey(case["vkey"])


def test_unknown_keys_are_ignored_but_a_known_bad_signature_fails() -> None:
    case = UPSTREAM["valid"][1]  # Peter's signature plus Enoch's, only Peter known
    peter = note.parse_vkey(case["vkeys"][0])
    text, sigs = note.parse_note(case["note"].encode())
    forged = note.Signature(peter.name, peter.key_id, bytes(64))
    with pytest.raises(VerificationError, match="does not verify"):
        note.verify_note(note.format_note(text, [sigs[1], forged]), [peter])
    with pytest.raises(VerificationError) as err:
        note.verify_note(note.format_note(text, [sigs[1]]), [peter])
    assert err.value.kind == "unknown_key"


def _spec_key_id(name: str, type_bytes: bytes, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + type_bytes + public).digest()[:4]


def _checkpoint_text(size: int = 7) -> tuple[bytes, bytes]:
    root = hashlib.sha256(b"root").digest()
    return records.checkpoint_body("example.com/log", size, root, bytes(32), 1_700_000_000_000_000), root


def test_cosignature_v1_message_and_roundtrip() -> None:
    text, _ = _checkpoint_text()
    signer = note.NoteSigner("witness.example/w1", note.COSIGNATURE_V1, ed25519=Ed25519PrivateKey.generate())
    sig = signer.sign(text, timestamp=1679315147)
    public = signer.verifier.public
    assert sig.key_id == _spec_key_id("witness.example/w1", b"\x04", public)
    timestamp, ed_sig = struct.unpack(">Q", sig.signature[:8])[0], sig.signature[8:]
    assert timestamp == 1679315147
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    Ed25519PublicKey.from_public_bytes(public).verify(ed_sig, b"cosignature/v1\ntime 1679315147\n" + text)
    assert signer.verifier.verify(text, sig) == 1679315147
    with pytest.raises(VerificationError):
        signer.verifier.verify(text.replace(b"\n7\n", b"\n8\n"), sig)


def test_mldsa65_cosignature_follows_the_subtree_v1_layout() -> None:
    text, root = _checkpoint_text(size=300)
    key = mldsa.PrivateKey.generate()
    signer = note.NoteSigner("pq.example/w", note.MLDSA65_COSIGNATURE, ml_dsa=key)
    sig = signer.sign(text, timestamp=42)
    type_bytes = b"\xff" + b"ledgerstream/subtree-ml-dsa-65"
    assert sig.key_id == _spec_key_id("pq.example/w", type_bytes, key.public_key().raw)
    message = (b"subtree/v1\n\x00" + bytes([12]) + b"pq.example/w" + struct.pack(">Q", 42) + bytes([15])
               + b"example.com/log" + struct.pack(">QQ", 0, 300) + root)
    assert sig.signature[:8] == struct.pack(">Q", 42)
    key.public_key().verify(sig.signature[8:], message)  # the spec's message, built here by hand
    assert signer.verifier.verify(text, sig) == 42
    with pytest.raises(VerificationError):
        signer.verifier.verify(text, note.Signature(sig.name, sig.key_id, struct.pack(">Q", 43) + sig.signature[8:]))


def test_log_mldsa_line_is_the_checkpoint_record_signature() -> None:
    """The ML-DSA-65 note line is the record's own signature: old checkpoints get it too."""
    text, _ = _checkpoint_text()
    key = mldsa.PrivateKey.generate()
    record_signature = key.sign(text)
    verifier = note.Verifier("example.com/log", note.MLDSA65, key.public_key().raw)
    line = note.Signature(verifier.name, verifier.key_id, record_signature)
    assert verifier.key_id == _spec_key_id("example.com/log", b"\xffledgerstream/ml-dsa-65", key.public_key().raw)
    assert note.verify_note(note.format_note(text, [line]), [verifier])[1][0][0] == verifier
    assert note.parse_vkey(verifier.vkey) == verifier


@pytest.mark.parametrize("bad", [
    b"no blank line\n\xe2\x80\x94 a AAAAAAA=\n",
    b"text\n\n",
    b"text\n\nnot a signature line\n",
    b"text\n\n\xe2\x80\x94 a b c\n",
    b"text\n\n\xe2\x80\x94 a !!!!\n",
    b"text\n\n\xe2\x80\x94 a AAAA\n",  # shorter than a key ID
    b"te\x01xt\n\n\xe2\x80\x94 a AAAAAAA=\n",
    b"\xff\xfe\n\n\xe2\x80\x94 a AAAAAAA=\n",
    b"x" * (note.MAX_NOTE_BYTES + 1),
    b"text\n\n" + b"\xe2\x80\x94 a AAAAAAA=\n" * (note.MAX_SIGNATURES + 1),
])
def test_malformed_notes_are_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        note.parse_note(bad)


def test_load_vkeys_names_the_bad_line() -> None:
    good = note.NoteSigner("a.example/log", note.ED25519, ed25519=Ed25519PrivateKey.generate()).verifier.vkey
    assert note.load_vkeys(f"# comment\n{good}\n\n") == [note.parse_vkey(good)]
    with pytest.raises(ConfigError, match="line 2"):
        note.load_vkeys(f"{good}\nnot+a+vkey\n", "x.vkey")


@pytest.mark.parametrize("name", ["", "has space", "a+b", "tab\there", "x" * 256, "nl\n"])
def test_bad_key_names(name: str) -> None:
    with pytest.raises(ValueError):
        note.check_name(name)


def test_the_record_vectors_checkpoint_note_follows_the_spec() -> None:
    """tests/vectors/records: the checkpoint's signed note, rebuilt by hand from spec section 6."""
    from support.signed_notes import mldsa_checkpoint_note

    vectors = json.loads((Path(__file__).parents[1] / "vectors" / "records" / "ledger_v1.json").read_text())
    cp, public = vectors["checkpoint"], bytes.fromhex(vectors["signer"]["public_key"])
    want = mldsa_checkpoint_note(bytes.fromhex(cp["body"]), cp["origin"], public, bytes.fromhex(cp["signature"]))
    assert cp["signed_note"].encode() == want
    text, verified = note.verify_note(want, [note.Verifier(cp["origin"], note.MLDSA65, public)])
    assert text == bytes.fromhex(cp["body"]) and len(verified) == 1


def test_non_canonical_base64_is_refused() -> None:
    """Fuzzing found '…A/=' (non-zero padding bits) parsed to the same bytes as '…A8=': one
    note, two spellings. Only the canonical spelling is accepted, in lines and in vkeys."""
    line = "\u2014 ! " + "+" * 2 + "/" * 64 + "A" * 20 + "/="
    with pytest.raises(ValueError, match="canonical"):
        note.Signature.from_line(line)
    canonical = line[:-2] + "8="
    sig = note.Signature.from_line(canonical)  # the canonical spelling parses, to the same bytes
    assert base64.b64encode(sig.key_id + sig.signature).decode() == canonical.split(" ")[-1]
    assert base64.b64decode(line.split(" ")[-1]) == sig.key_id + sig.signature
    with pytest.raises(ValueError, match="canonical"):
        note.canonical_b64decode("AB==")  # 'AA==' is the canonical spelling of b"\x00"
    assert note.canonical_b64decode("AA==") == b"\x00"
