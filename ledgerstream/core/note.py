"""C2SP signed notes (c2sp.org/signed-note) and checkpoint cosignatures (c2sp.org/tlog-cosignature).

A checkpoint body (docs/spec.md section 6) is the note text; each signature line is
``— <key name> base64(key ID || signature)``. ledgerstream uses four signature types:

=================  ==========================================  ===============================
kind               type bytes (key ID input, vkey prefix)      signature over
=================  ==========================================  ===============================
``ed25519``        ``0x01`` (signed-note)                      the note text
``ml-dsa-65``      ``0xff || "ledgerstream/ml-dsa-65"``        the note text (FIPS 204, empty
                                                               context: the Checkpoint record's
                                                               own ``signature``)
``cosignature/v1`` ``0x04`` (tlog-cosignature, Ed25519)        ``cosignature/v1\\ntime T\\n`` +
                                                               text; sig = u64 T || 64 bytes
``ml-dsa-65-cosig``  ``0xff || "ledgerstream/subtree-ml-dsa-65"``  tlog-cosignature's
                                                               ``subtree/v1`` message; sig = u64
                                                               T || 3309 bytes
=================  ==========================================  ===============================

``key ID = SHA-256(name || 0x0A || type bytes || public key)[:4]`` for all four, as
signed-note recommends; ``0xff`` is the byte signed-note reserves for types it does not
assign, followed by a longer identifier. Everything read here is untrusted and bounded.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from cryptography.exceptions import InvalidSignature as _PycaInvalid
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledgerstream.core import mldsa
from ledgerstream.core.errors import ConfigError, VerificationError

ED25519 = "ed25519"
MLDSA65 = "ml-dsa-65"
COSIGNATURE_V1 = "cosignature/v1"
MLDSA65_COSIGNATURE = "ml-dsa-65-cosignature"

#: signature type bytes by kind (the first byte(s) of a vkey's key material)
TYPE_BYTES: dict[str, bytes] = {
    ED25519: b"\x01",
    COSIGNATURE_V1: b"\x04",
    MLDSA65: b"\xff" + b"ledgerstream/ml-dsa-65",
    MLDSA65_COSIGNATURE: b"\xff" + b"ledgerstream/subtree-ml-dsa-65",
}
_PUBLIC_SIZE = {ED25519: 32, COSIGNATURE_V1: 32, MLDSA65: mldsa.PUBLIC_KEY_SIZE,
                MLDSA65_COSIGNATURE: mldsa.PUBLIC_KEY_SIZE}
#: the key types a cosignature record may name (docs/spec.md section 6.2)
COSIGNATURE_KINDS = (COSIGNATURE_V1, MLDSA65_COSIGNATURE)
#: cosigner kinds by their signature algorithm, as the JSON outputs name them
KEY_TYPES = {COSIGNATURE_V1: "ed25519", MLDSA65_COSIGNATURE: "ml-dsa-65"}

MAX_NOTE_BYTES = 1 << 16
MAX_SIGNATURES = 100
MAX_NAME_BYTES = 255  # the subtree/v1 message stores the name with a one-byte length
DASH = "\u2014 "
SUBTREE_LABEL = b"subtree/v1\n\x00"


def key_id(name: str, type_bytes: bytes, public: bytes) -> bytes:
    """The 4-byte key ID: SHA-256(name || 0x0A || type bytes || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + type_bytes + public).digest()[:4]


def check_name(name: str) -> str:
    """A key name: non-empty, at most 255 bytes, no whitespace or '+' (signed-note)."""
    if not name or len(name.encode()) > MAX_NAME_BYTES or any(c.isspace() or c == "+" for c in name) \
            or any(ord(c) < 0x20 for c in name):
        raise ValueError(f"bad note key name {name[:80]!r}: 1-255 bytes, no spaces, newlines or '+'")
    return name


@dataclass(frozen=True)
class Signature:
    """One signature line: the key name, the 4-byte key ID and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{DASH}{self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"

    @classmethod
    def from_line(cls, line: str) -> Signature:
        if not line.startswith(DASH):
            raise ValueError("a signature line starts with an em dash and a space")
        name, sep, b64 = line[len(DASH):].partition(" ")
        if not sep or " " in b64:
            raise ValueError("a signature line is '— <name> <base64>'")
        check_name(name)
        try:
            raw = canonical_b64decode(b64)
        except ValueError as exc:
            raise ValueError(f"signature of {name!r} is not base64: {exc}") from None
        if len(raw) < 5:
            raise ValueError(f"signature of {name!r} is shorter than a key ID")
        return cls(name, raw[:4], raw[4:])


def canonical_b64decode(text: str) -> bytes:
    """Standard padded base64 in its one canonical form: a string that decodes but is not
    what encoding the bytes gives (non-zero padding bits) is refused, so a note or vkey has
    one spelling and what is parsed re-renders to the same bytes. ValueError otherwise."""
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None
    if base64.b64encode(raw).decode() != text:
        raise ValueError("not the canonical base64 of its bytes (non-zero padding bits)")
    return raw


def format_note(text: bytes, signatures: Iterable[Signature]) -> bytes:
    """The signed note: text (ending in a newline), a blank line, one line per signature."""
    if not text.endswith(b"\n"):
        raise ValueError("note text must end with a newline")
    return text + b"\n" + "".join(s.line() for s in signatures).encode()


def parse_note(note: bytes) -> tuple[bytes, list[Signature]]:
    """Split a signed note into its text and signature lines (nothing verified yet)."""
    if len(note) > MAX_NOTE_BYTES:
        raise ValueError(f"note of {len(note)} bytes is over the {MAX_NOTE_BYTES}-byte limit")
    try:
        decoded = note.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"note is not UTF-8: {exc}") from None
    if any(ord(c) < 0x20 and c != "\n" for c in decoded):
        raise ValueError("note contains a control character other than newline")
    split = note.rfind(b"\n\n")
    if split < 0 or not note.endswith(b"\n"):
        raise ValueError("note has no blank line before its signatures, or does not end with a newline")
    text, lines = note[:split + 1], note[split + 2:].decode().splitlines(keepends=False)
    if not lines or len(lines) > MAX_SIGNATURES:
        raise ValueError(f"a note has 1 to {MAX_SIGNATURES} signature lines, this one {len(lines)}")
    return text, [Signature.from_line(line) for line in lines]


def checkpoint_fields(text: bytes) -> tuple[str, int, bytes]:
    """Origin, size and root of a checkpoint note text (its first three lines)."""
    lines = text.split(b"\n")
    if len(lines) < 4:
        raise ValueError("a checkpoint has at least three lines")
    try:
        origin, size, root = lines[0].decode(), int(lines[1]), base64.b64decode(lines[2], validate=True)
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"malformed checkpoint: {exc}") from None
    if not origin or size < 0 or len(root) != 32 or lines[1] != str(size).encode():
        raise ValueError("malformed checkpoint origin, size or root line")
    return origin, size, root


def cosignature_message(kind: str, name: str, text: bytes, timestamp: int) -> bytes:
    """What a cosigner signs over a checkpoint note text (c2sp.org/tlog-cosignature)."""
    if not 0 <= timestamp < 1 << 63:
        raise ValueError("cosignature timestamp out of range")
    if kind == COSIGNATURE_V1:
        return b"cosignature/v1\ntime %d\n" % timestamp + text
    if kind == MLDSA65_COSIGNATURE:
        origin, size, root = checkpoint_fields(text)
        o, n = origin.encode(), name.encode()
        if len(o) > 255:
            raise ValueError("origin over 255 bytes")
        return (SUBTREE_LABEL + bytes([len(n)]) + n + struct.pack(">Q", timestamp) + bytes([len(o)]) + o
                + struct.pack(">QQ", 0, size) + root)
    raise ValueError(f"{kind} is not a cosignature type")


@dataclass(frozen=True)
class Verifier:
    """A verifier key (vkey): name, signature kind and public key."""

    name: str
    kind: str
    public: bytes

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.kind not in TYPE_BYTES:
            raise ValueError(f"unknown note key kind {self.kind!r}")
        if len(self.public) != _PUBLIC_SIZE[self.kind]:
            raise ValueError(f"a {self.kind} public key is {_PUBLIC_SIZE[self.kind]} bytes, got {len(self.public)}")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, TYPE_BYTES[self.kind], self.public)

    @property
    def vkey(self) -> str:
        """``<name>+<hex key ID>+<base64(type bytes || public key)>``."""
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(TYPE_BYTES[self.kind] + self.public).decode()}"

    def matches(self, sig: Signature) -> bool:
        return sig.name == self.name and sig.key_id == self.key_id

    def verify(self, text: bytes, sig: Signature) -> int | None:
        """Check ``sig`` over note ``text``; the cosignature's timestamp (None for a log
        signature). VerificationError (kind ``bad_note_signature``) if it does not verify."""
        if not self.matches(sig):
            raise VerificationError(f"signature line of {sig.name!r} is not from key {self.vkey[:60]}",
                                    kind="unknown_key", key_name=sig.name, key_id=sig.key_id.hex())
        timestamp, raw = None, sig.signature
        if self.kind in COSIGNATURE_KINDS:
            if len(raw) < 8:
                raise self._bad("shorter than its timestamp")
            timestamp, raw = struct.unpack(">Q", raw[:8])[0], raw[8:]
            try:
                message = cosignature_message(self.kind, self.name, text, timestamp)
            except ValueError as exc:
                raise self._bad(str(exc)) from None
        else:
            message = text
        if self.kind in (ED25519, COSIGNATURE_V1):
            try:
                Ed25519PublicKey.from_public_bytes(self.public).verify(raw, message)
            except _PycaInvalid:
                raise self._bad("Ed25519 signature does not verify") from None
        else:
            try:
                mldsa.PublicKey.from_bytes(self.public).verify(raw, message)
            except VerificationError as exc:
                raise self._bad(str(exc)) from None
        return timestamp

    def _bad(self, why: str) -> VerificationError:
        return VerificationError(f"{self.kind} note signature of {self.name!r}: {why}", kind="bad_note_signature",
                                 key_name=self.name, key_id=self.key_id.hex())


def parse_vkey(vkey: str) -> Verifier:
    """A vkey string back to a :class:`Verifier`; ValueError if malformed or its key ID is wrong."""
    parts = vkey.strip().split("+", 2)  # base64 may itself contain "+"
    if len(parts) != 3:
        raise ValueError("a vkey is <name>+<hex key ID>+<base64 key>")
    name, hex_id, b64 = parts
    try:
        material = canonical_b64decode(b64)
        want = bytes.fromhex(hex_id)
    except ValueError as exc:
        raise ValueError(f"vkey {name!r}: {exc}") from None
    kind = next((k for k, t in sorted(TYPE_BYTES.items(), key=lambda kv: -len(kv[1])) if material.startswith(t)), None)
    if kind is None:
        raise ValueError(f"vkey {name!r} has an unsupported signature type 0x{material[:1].hex()}")
    verifier = Verifier(name, kind, material[len(TYPE_BYTES[kind]):])
    if verifier.key_id != want or len(want) != 4:
        raise ValueError(f"vkey {name!r}: key ID {hex_id} does not match the key")
    return verifier


def load_vkeys(text: str, source: str = "vkeys") -> list[Verifier]:
    """One vkey per non-empty line (``#`` starts a comment); ConfigError naming the line."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            try:
                out.append(parse_vkey(line))
            except ValueError as exc:
                raise ConfigError(f"{source} line {number}: {exc}") from None
    return out


class NoteSigner:
    """A private key that signs note texts as ``kind`` under ``name``."""

    def __init__(self, name: str, kind: str, ed25519: Ed25519PrivateKey | None = None,
                 ml_dsa: mldsa.PrivateKey | None = None) -> None:
        self.name, self.kind = check_name(name), kind
        self._ed, self._ml = ed25519, ml_dsa
        if kind in (ED25519, COSIGNATURE_V1):
            assert ed25519 is not None
            public = ed25519.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        else:
            assert ml_dsa is not None
            public = ml_dsa.public_key().raw
        self.verifier = Verifier(name, kind, public)

    def _raw_sign(self, message: bytes) -> bytes:
        return self._ed.sign(message) if self._ed is not None else self._ml.sign(message)  # type: ignore[union-attr]

    def sign(self, text: bytes, timestamp: int | None = None) -> Signature:
        """A signature line over ``text``; cosigners need the POSIX ``timestamp``."""
        if self.kind in COSIGNATURE_KINDS:
            assert timestamp is not None
            body = struct.pack(">Q", timestamp) + self._raw_sign(cosignature_message(self.kind, self.name, text, timestamp))
        else:
            body = self._raw_sign(text)
        return Signature(self.name, self.verifier.key_id, body)


def checkpoint_note(body: bytes, origin: str, mldsa_public: bytes, signature: bytes,
                    log_lines: Sequence[Signature] = (), cosignatures: Sequence[Signature] = ()) -> bytes:
    """A checkpoint as a C2SP signed note (docs/spec.md section 6): the body, a blank line, the
    log's Ed25519 line(s), its ML-DSA-65 line (the Checkpoint record's own ``signature``, so
    every checkpoint ever written has one), then the witnesses' cosignatures."""
    ml = Signature(origin, key_id(origin, TYPE_BYTES[MLDSA65], mldsa_public), signature)
    return format_note(body, [*log_lines, ml, *cosignatures])


def verify_note(note: bytes, verifiers: Sequence[Verifier]) -> tuple[bytes, list[tuple[Verifier, int | None]]]:
    """Signed-note verification: signatures of unknown keys are ignored, a known key's bad
    signature fails the note, and at least one known key must have signed. Returns the text
    and the (verifier, timestamp) of each verified signature."""
    text, signatures = parse_note(note)
    verified = []
    for sig in signatures:
        for v in verifiers:
            if v.matches(sig):
                verified.append((v, v.verify(text, sig)))
    if not verified:
        raise VerificationError("no signature on the note is from a known key", kind="unknown_key",
                                names=sorted({s.name for s in signatures}))
    return text, verified


# --- key files ---------------------------------------------------------------------------

def ed25519_key_path(ml_dsa_key_path: Path) -> Path:
    """Where the Ed25519 note key lives beside an ML-DSA-65 signing key: NAME-ed25519.pem."""
    return ml_dsa_key_path.with_name(ml_dsa_key_path.name.removesuffix(".pem") + "-ed25519.pem")


def vkey_path(ml_dsa_key_path: Path) -> Path:
    """The vkey file (both log vkeys, one per line) beside a signing key: NAME.vkey."""
    return ml_dsa_key_path.with_name(ml_dsa_key_path.name.removesuffix(".pem") + ".vkey")


def log_verifiers(origin: str, ml_dsa: mldsa.PublicKey, ed25519: Ed25519PrivateKey | None) -> list[Verifier]:
    """The log's note verifiers for ``origin``: Ed25519 (if it has that key) and ML-DSA-65."""
    out = []
    if ed25519 is not None:
        out.append(NoteSigner(origin, ED25519, ed25519=ed25519).verifier)
    out.append(Verifier(origin, MLDSA65, ml_dsa.raw))
    return out


def generate_ed25519() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def ed25519_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_ed25519(data: bytes, source: str = "key") -> Ed25519PrivateKey:
    """An Ed25519 PKCS#8 PEM private key; ConfigError for anything else."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source} is not an unencrypted PKCS#8 PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{source} is not an Ed25519 key")
    return key
