"""Findings: the alert taxonomy (docs/alerts.md), one incident as a value, and the
counters a verifier reports next to them."""
from __future__ import annotations

import enum
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

from ledgerstream.core.errors import DecodeError, VerificationError

ENTRIES, CHECKPOINTS = "entries", "checkpoints"
#: the role of another copy's checkpoints topic, read by a verifier to find split views
PEERS = "peer_checkpoints"

class Severity(str, enum.Enum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


class Kind(str, enum.Enum):
    """The alert taxonomy (one section each in docs/alerts.md)."""

    GAP = "gap"
    DUPLICATE = "duplicate"
    FORK = "fork"
    CHAIN_BREAK = "chain_break"
    HASH_MISMATCH = "hash_mismatch"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    UNDECODABLE = "undecodable"
    CHECKPOINT_ROOT_MISMATCH = "checkpoint_root_mismatch"
    CHECKPOINT_INCONSISTENT = "checkpoint_inconsistent"
    CHECKPOINT_BAD_SIGNATURE = "checkpoint_bad_signature"
    TIMESTAMP_INVALID = "timestamp_invalid"
    TIMESTAMP_OUT_OF_ORDER = "timestamp_out_of_order"
    AGENT_CHAIN_BREAK = "agent_chain_break"
    LINK_DANGLING = "link_dangling"
    LINK_MISMATCH = "link_mismatch"
    STALLED = "stalled"
    APPROVAL_INVALID = "approval_invalid"
    COSIGNATURE_INVALID = "cosignature_invalid"
    SPLIT_VIEW = "split_view"
    SNAPSHOT_REJECTED = "snapshot_rejected"


SEVERITY: dict[Kind, Severity] = {
    Kind.GAP: Severity.CRITICAL,
    Kind.DUPLICATE: Severity.MEDIUM,
    Kind.FORK: Severity.CRITICAL,
    Kind.CHAIN_BREAK: Severity.CRITICAL,
    Kind.HASH_MISMATCH: Severity.HIGH,
    Kind.BAD_SIGNATURE: Severity.HIGH,
    Kind.UNKNOWN_KEY: Severity.HIGH,
    Kind.UNDECODABLE: Severity.MEDIUM,
    Kind.CHECKPOINT_ROOT_MISMATCH: Severity.CRITICAL,
    Kind.CHECKPOINT_INCONSISTENT: Severity.CRITICAL,
    Kind.CHECKPOINT_BAD_SIGNATURE: Severity.HIGH,
    Kind.TIMESTAMP_INVALID: Severity.HIGH,
    Kind.TIMESTAMP_OUT_OF_ORDER: Severity.MEDIUM,
    Kind.AGENT_CHAIN_BREAK: Severity.HIGH,
    Kind.LINK_DANGLING: Severity.LOW,
    Kind.LINK_MISMATCH: Severity.HIGH,
    Kind.STALLED: Severity.MEDIUM,
    Kind.APPROVAL_INVALID: Severity.HIGH,
    Kind.COSIGNATURE_INVALID: Severity.HIGH,
    Kind.SPLIT_VIEW: Severity.CRITICAL,
    Kind.SNAPSHOT_REJECTED: Severity.HIGH,
}

#: kinds that mean a record was dropped (not integrated into the chain)
REJECTING = frozenset({Kind.UNDECODABLE, Kind.HASH_MISMATCH, Kind.UNKNOWN_KEY, Kind.BAD_SIGNATURE})


def _evidence_value(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, sort_keys=True)


@dataclass(frozen=True)
class Finding:
    """One incident: what is wrong, where (seq range, agent) and the values compared."""

    kind: Kind
    detail: str
    seq_from: int | None = None
    seq_to: int | None = None
    agent_id: str | None = None
    evidence: Mapping[str, str] = field(default_factory=dict)

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.kind]

    @classmethod
    def make(cls, kind: Kind, detail: str, *, seq: int | None = None, seq_to: int | None = None,
             agent_id: str | None = None, **evidence: Any) -> "Finding":
        ev = {k: _evidence_value(v) for k, v in evidence.items() if v is not None}
        return cls(kind, detail, seq, seq if seq_to is None else seq_to, agent_id, ev)

    @classmethod
    def from_error(cls, kind: Kind, err: VerificationError, **where: Any) -> "Finding":
        """A finding from a raised VerificationError, keeping its evidence and its own kind."""
        evidence = dict(err.evidence)
        evidence.setdefault("error_kind", err.kind)
        return cls.make(kind, str(err), **where, **evidence)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "severity": self.severity.value, "seq_from": self.seq_from,
                "seq_to": self.seq_to, "agent_id": self.agent_id, "detail": self.detail,
                "evidence": dict(self.evidence)}


def at_offset(offset: int, topic: str) -> dict[str, Any]:
    return {"topic": topic, "offset": offset}


def located(offset: int, entry: Mapping[str, Any]) -> dict[str, Any]:
    """Where a finding about a decoded entry points (built only when there is a finding)."""
    return {"seq": entry["seq"], "agent_id": entry["action"]["agent_id"], "topic": ENTRIES, "offset": offset}


def undecodable(raw: bytes, offset: int, topic: str, exc: DecodeError) -> Finding:
    return Finding.make(Kind.UNDECODABLE, f"{topic} record at offset {offset} is not a valid record: {exc}",
                        reason=exc.reason, length=len(raw), sha256=hashlib.sha256(raw).hexdigest(),
                        head=bytes(raw[:48]), **at_offset(offset, topic))



@dataclass
class Stats:
    """Counters a verifier reports next to its findings."""

    entries_seen: int = 0
    entries_rejected: int = 0
    signatures_verified: int = 0
    signatures_checked_ahead: int = 0  # of those, verdicts that came with the batch (check_raw_signatures)
    unsigned_entries: int = 0
    approvals_checked: int = 0
    checkpoints_seen: int = 0
    checkpoints_verified: int = 0
    checkpoints_unverifiable: int = 0
    timestamps_verified: int = 0
    timestamps_unverified: int = 0
    note_signatures_verified: int = 0  # the log's own signed-note lines (Ed25519)
    cosignatures_verified: int = 0
    note_signatures_unknown: int = 0  # lines of keys not configured: ignored (C2SP signed-note)
    #: witness name -> the largest checkpoint size it has a verified cosignature on
    witnesses: dict = field(default_factory=dict)
    peer_checkpoints_checked: int = 0  # checkpoints seen elsewhere, compared with this ledger
    peer_checkpoints_beyond: int = 0   # of those, larger than this ledger: not comparable yet
    peer_checkpoints_dropped: int = 0  # held ones dropped (more than MAX_PEER_PENDING waiting)
    suppressed: int = 0
    findings: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "findings"}
        out["findings"] = dict(sorted(self.findings.items()))
        return out
