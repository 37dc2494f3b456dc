"""The stateless part of step [6]: one checkpoints record's key, signature and body."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ledgerstream.core import note, records
from ledgerstream.core.wire import codec
from ledgerstream.core.errors import DecodeError, VerificationError
from ledgerstream.core.verify.findings import CHECKPOINTS, Finding, Kind, at_offset, undecodable
from ledgerstream.core.verify.trust import CheckerConfig

@dataclass(frozen=True)
class CheckedCheckpoint:
    """A checkpoints record after its stateless checks; ``rejection`` set means dropped."""

    offset: int
    raw: bytes
    name: str = ""  # "Checkpoint", "TimestampAnchor" or "NoteSignature"
    record: dict[str, Any] | None = None
    rejection: Finding | None = None

    @property
    def body_hash(self) -> bytes:
        assert self.record is not None
        if self.name == "Checkpoint":
            return hashlib.sha256(bytes(self.record["body"])).digest()
        return bytes(self.record["body_hash"])


def check_checkpoint_record(record: tuple[int, bytes], config: CheckerConfig) -> CheckedCheckpoint:
    """Steps [1] and the stateless part of [6] (key, signature, body) for one checkpoints record."""
    offset, raw = record
    try:
        name, rec = codec.decode(raw, expect=("Checkpoint", "TimestampAnchor", "NoteSignature"))
    except DecodeError as exc:
        return CheckedCheckpoint(offset, raw, rejection=undecodable(raw, offset, CHECKPOINTS, exc))
    if name == "TimestampAnchor":
        return CheckedCheckpoint(offset, raw, name, rec)
    if name == "NoteSignature":
        problem = _note_signature_problem(rec)
        return CheckedCheckpoint(offset, raw, name, rec, problem and Finding.make(
            Kind.COSIGNATURE_INVALID, f"note signature record for tree size {rec['tree_size']}: {problem}",
            tree_size=rec["tree_size"], reason="malformed", **at_offset(offset, CHECKPOINTS)))
    where = {"seq": rec["tree_size"] - 1 if rec["tree_size"] else None, **at_offset(offset, CHECKPOINTS),
             "tree_size": rec["tree_size"]}
    key = config.trusted_keys.get(rec["key_id"])
    if key is None:
        return CheckedCheckpoint(offset, raw, name, rec, Finding.make(
            Kind.CHECKPOINT_BAD_SIGNATURE, f"checkpoint of size {rec['tree_size']} is signed by an untrusted key",
            key_id=rec["key_id"], reason="unknown_key", **where))
    try:
        key.verify(bytes(rec["signature"]), bytes(rec["body"]))
    except VerificationError as exc:
        return CheckedCheckpoint(offset, raw, name, rec, Finding.from_error(Kind.CHECKPOINT_BAD_SIGNATURE, exc, **where))
    problem = _body_problem(rec, config.origin)
    if problem:
        return CheckedCheckpoint(offset, raw, name, rec, Finding.make(
            Kind.CHECKPOINT_INCONSISTENT, f"checkpoint of size {rec['tree_size']}: {problem}", **where))
    return CheckedCheckpoint(offset, raw, name, rec)


@dataclass(frozen=True)
class NoteLine:
    """A signed-note line over a checkpoint from a configured key, and whether it verified."""

    role: str  # "log" | "witness"
    key: note.Verifier
    line: note.Signature
    verified: bool


def note_signature_key(rec: Mapping[str, Any], config: CheckerConfig) -> note.Verifier | None:
    """The configured key a NoteSignature record's line names: among the log's note keys for
    role ``log``, the witnesses' for role ``witness``; None (the line is ignored) otherwise."""
    sig = note.Signature(rec["name"], bytes(rec["key_id"]), b"")
    pool = config.witnesses if rec["role"] == "witness" else config.note_keys
    return next((v for v in pool if v.matches(sig)), None)


def note_signature_line(rec: Mapping[str, Any]) -> note.Signature:
    return note.Signature(rec["name"], bytes(rec["key_id"]), bytes(rec["signature"]))


def checkpoint_note(c: Mapping[str, Any], lines: Sequence[NoteLine], config: CheckerConfig) -> bytes:
    """A verified Checkpoint record as a full signed note: the log's lines and the verified
    cosignatures (docs/spec.md section 6)."""
    ok = [n for n in lines if n.verified]
    return note.checkpoint_note(bytes(c["body"]), c["origin"], config.trusted_keys[c["key_id"]].raw,
                                bytes(c["signature"]), [n.line for n in ok if n.role == "log"],
                                [n.line for n in ok if n.role == "witness"])


MAX_NOTE_SIGNATURE_BYTES = 8 + 4627  # a timestamp and the largest ML-DSA signature (ML-DSA-87)


def _note_signature_problem(rec: Mapping[str, Any]) -> str | None:
    """Bounds on a NoteSignature's untrusted fields, before any key is looked up."""
    if rec["role"] not in ("log", "witness"):
        return f"role {rec['role'][:40]!r} is not 'log' or 'witness'"
    try:
        note.check_name(rec["name"])
    except ValueError as exc:
        return str(exc)
    if len(rec["key_id"]) != 4 or len(rec["body_hash"]) != 32 or rec["tree_size"] < 0:
        return "key_id must be 4 bytes, body_hash 32 and tree_size not negative"
    if not 0 < len(rec["signature"]) <= MAX_NOTE_SIGNATURE_BYTES:
        return f"signature of {len(rec['signature'])} bytes is outside 1..{MAX_NOTE_SIGNATURE_BYTES}"
    return None


def _body_problem(rec: Mapping[str, Any], origin: str | None) -> str | None:
    """The signed body must say exactly what the record's fields say (spec section 6)."""
    try:
        parsed = records.parse_checkpoint_body(bytes(rec["body"]))
    except (ValueError, UnicodeDecodeError) as exc:
        return f"signed body does not parse: {exc}"
    fields = {"origin": rec["origin"], "tree_size": rec["tree_size"], "root_hash": bytes(rec["root_hash"]),
              "chain_head": bytes(rec["chain_head"]), "created_at": rec["created_at"]}
    differ = sorted(k for k, v in fields.items() if parsed[k] != v)
    if differ:
        return f"record fields {differ} differ from the signed body"
    if origin is not None and rec["origin"] != origin:
        return f"origin {rec['origin']!r} is not the expected {origin!r}"
    return None
