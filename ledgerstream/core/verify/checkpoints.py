"""The stateless part of step [6]: one checkpoints record's key, signature and body."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

from ledgerstream.core import records
from ledgerstream.core.wire import codec
from ledgerstream.core.errors import DecodeError, VerificationError
from ledgerstream.core.verify.findings import CHECKPOINTS, Finding, Kind, at_offset, undecodable
from ledgerstream.core.verify.trust import CheckerConfig

@dataclass(frozen=True)
class CheckedCheckpoint:
    """A checkpoints record after its stateless checks; ``rejection`` set means dropped."""

    offset: int
    raw: bytes
    name: str = ""  # "Checkpoint" or "TimestampAnchor"
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
        name, rec = codec.decode(raw, expect=("Checkpoint", "TimestampAnchor"))
    except DecodeError as exc:
        return CheckedCheckpoint(offset, raw, rejection=undecodable(raw, offset, CHECKPOINTS, exc))
    if name == "TimestampAnchor":
        return CheckedCheckpoint(offset, raw, name, rec)
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
