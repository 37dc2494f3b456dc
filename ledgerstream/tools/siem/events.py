"""The two things a SIEM receives, as plain frozen views of the Avro records.

Formats map these views, never the raw Avro dicts, so each format module stays a pure
field mapping and the record plumbing (hex hashes, times, severities, the operation an
action type names) is decided once, here. Raw payloads are never exported: a SIEM gets
the salted payload commitment, so an erased or secret payload cannot leak through it.
Every alert carries its authenticity (core/alert_signature.py): ``verified`` when a trusted
verifier key signed it, else ``unsigned`` or ``forged`` (``forged`` is then true).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from typing import Any, Literal, Mapping

from ledgerstream.core.wire import codec
from ledgerstream.core.alert_signature import VerifierKey, check_alert
from ledgerstream.core.errors import DecodeError
from ledgerstream.core.verify import CheckerConfig, check_entry

Operation = Literal["create", "read", "update", "delete", "other"]

#: the alert kind (docs/alerts.md) the exporter gives records it cannot decode
UNDECODABLE = "undecodable"
#: alert severities (schemas/Alert.avsc), most severe first
SEVERITIES = ("critical", "high", "medium", "low", "info")

#: verbs in an action type's segments that name a CRUD operation (first match wins, left to right)
_VERBS: dict[str, Operation] = {
    **dict.fromkeys(("delete", "remove", "drop", "erase", "destroy", "purge", "truncate", "revoke"), "delete"),
    **dict.fromkeys(("create", "insert", "add", "new", "post", "upload", "write", "send", "spawn"), "create"),
    **dict.fromkeys(("update", "modify", "edit", "patch", "put", "set", "change", "rename", "move",
                     "grant", "approve"), "update"),
    **dict.fromkeys(("read", "get", "search", "list", "query", "fetch", "view", "open", "download",
                     "lookup", "retrieve", "browse"), "read"),
}


@cache
def product_version() -> str:
    try:
        return metadata.version("ledgerstream")
    except metadata.PackageNotFoundError:
        return "0"


@dataclass(frozen=True)
class Origin:
    """Where a record sits in Kafka: what the exporter commits, and what a SIEM can cite."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Link:
    agent_id: str
    event_id: str
    status: str  # resolved | pending
    seq: int | None


@dataclass(frozen=True)
class EntryEvent:
    """One signed ledger entry (an agent action), flattened for field mapping."""

    origin: Origin
    seq: int
    entry_hash: str
    prev_hash: str
    agent_id: str
    agent_seq: int
    agent_prev_hash: str
    event_id: str
    session_id: str | None
    action_type: str
    occurred_at: int  # microseconds, agent clock
    received_at: int  # microseconds, signer clock
    payload_hash: str
    payload_erased: bool
    policy_decision: str | None
    policy_rule: str | None
    policy_reason: str | None
    approvals: int
    links: tuple[Link, ...]
    trace_id: str | None
    span_id: str | None
    producer_host: str
    producer_pid: int
    producer_library: str
    producer_adapter: str | None
    key_id: str
    #: verified (its ML-DSA signature verifies under a trusted signer key) | unsigned
    #: (checkpoint signing mode: trusted key, no per-entry signature) | forged (the core's
    #: stateless checks reject it: see ``authenticity_reason``) | unchecked (no trusted signer key)
    authenticity: str
    offline: bool
    #: the core's finding kind for a forged entry (unknown_key, bad_signature, hash_mismatch)
    authenticity_reason: str | None = None

    @property
    def signed(self) -> bool:
        """True only when the entry's own signature verifies under a trusted signer key."""
        return self.authenticity == "verified"

    @property
    def denied(self) -> bool:
        return (self.policy_decision or "").startswith(("deny", "approval_denied", "approval_timeout"))

    @property
    def operation(self) -> Operation:
        return operation_of(self.action_type)


@dataclass(frozen=True)
class AlertEvent:
    """One verifier finding, or a record the exporter could not decode (kind ``undecodable``)."""

    origin: Origin
    alert_id: str
    kind: str
    severity: str
    seq_from: int | None
    seq_to: int | None
    agent_id: str | None
    detail: str
    evidence: Mapping[str, str] = field(default_factory=dict)
    verifier_id: str = ""
    time: int = 0  # microseconds
    #: verified | unsigned | forged (core/alert_signature.py); not verified until checked
    authenticity: str = "unsigned"
    #: why: signed | no_signature | no_key_id | unknown_key | wrong_verifier | malformed | bad_signature
    authenticity_reason: str = "no_signature"
    key_id: str | None = None

    @property
    def forged(self) -> bool:
        """True unless a trusted verifier key signed the alert (every genuine verifier signs)."""
        return self.authenticity != "verified"

    @property
    def mark(self) -> str:
        """``""`` for a verified alert, else ``"[FORGED] "`` / ``"[UNSIGNED] "``: the prefix of
        the human-facing headline in every format (CEF Name, syslog MSG, ECS/OCSF message)."""
        return "" if not self.forged else f"[{'UNSIGNED' if self.authenticity == 'unsigned' else 'FORGED'}] "

    @property
    def severity_rank(self) -> int:
        """0 (critical) .. 4 (info); unknown severities rank as medium."""
        return SEVERITIES.index(self.severity) if self.severity in SEVERITIES else 2


Event = EntryEvent | AlertEvent


def operation_of(action_type: str) -> Operation:
    """The CRUD operation an action type names (``data:delete:users`` -> delete), else ``other``."""
    for segment in action_type.lower().split(":"):
        for word in segment.replace("-", "_").replace(".", "_").split("_"):
            if word in _VERBS:
                return _VERBS[word]
    return "other"


def iso(micros: int) -> str:
    """RFC 3339 UTC with microseconds (valid ECS date, RFC 5424 TIMESTAMP and OCSF datetime)."""
    stamp = dt.datetime.fromtimestamp(micros / 1_000_000, tz=dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def millis(micros: int) -> int:
    return micros // 1000


def _hex(value: bytes | None) -> str:
    return bytes(value).hex() if value else ""


def entry_authenticity(raw: bytes, origin: Origin, signers: CheckerConfig | None) -> tuple[str, str | None]:
    """(authenticity, reason) of an entries record under the core's stateless checks."""
    if signers is None:
        return "unchecked", None
    checked = check_entry((origin.offset, raw), signers)
    if checked.rejection is not None:
        return "forged", checked.rejection.kind.value
    return ("verified" if checked.signed else "unsigned"), None


def entry_event(record: Mapping[str, Any], origin: Origin, authenticity: tuple[str, str | None] = ("unchecked", None)
                ) -> EntryEvent:
    action = record["action"]
    policy = action.get("policy") or {}
    trace = action.get("trace") or {}
    producer = action["producer"]
    resolved = {(l["agent_id"], l["event_id"]): l for l in record.get("resolved_links") or []}
    links = []
    for link in action.get("links") or []:
        r = resolved.get((link["agent_id"], link["event_id"]), {})
        links.append(Link(link["agent_id"], link["event_id"], r.get("status", "pending"), r.get("seq")))
    return EntryEvent(
        origin=origin, seq=record["seq"], entry_hash=_hex(record["entry_hash"]),
        prev_hash=_hex(record["prev_hash"]), agent_id=action["agent_id"], agent_seq=record["agent_seq"],
        agent_prev_hash=_hex(record["agent_prev_hash"]), event_id=action["event_id"],
        session_id=action.get("session_id"), action_type=action["action_type"],
        occurred_at=action["occurred_at"], received_at=record["received_at"],
        payload_hash=_hex(action["payload_hash"]), payload_erased=action.get("payload") is None,
        policy_decision=policy.get("decision"), policy_rule=policy.get("rule"), policy_reason=policy.get("reason"),
        approvals=len(action.get("approvals") or []), links=tuple(links),
        trace_id=trace.get("trace_id"), span_id=trace.get("span_id"),
        producer_host=producer["host"], producer_pid=producer["pid"],
        producer_library=producer.get("library", "ledgerstream"), producer_adapter=producer.get("adapter"),
        key_id=record["key_id"], authenticity=authenticity[0], offline=bool(action.get("offline")),
        authenticity_reason=authenticity[1],
    )


def alert_event(record: Mapping[str, Any], origin: Origin,
                trusted: Mapping[str, VerifierKey] | None = None) -> AlertEvent:
    """The event for a decoded alert, its signature checked against ``trusted`` (none: every
    alert is unsigned or forged)."""
    verdict = check_alert(record, trusted or {})
    return AlertEvent(
        origin=origin, alert_id=record["alert_id"], kind=record["kind"], severity=record["severity"],
        seq_from=record.get("seq_from"), seq_to=record.get("seq_to"), agent_id=record.get("agent_id"),
        detail=record["detail"], evidence=dict(record.get("evidence") or {}),
        verifier_id=record["verifier_id"], time=record["time"],
        authenticity=verdict.verdict.value, authenticity_reason=verdict.reason, key_id=record.get("key_id"),
    )


def undecodable_event(origin: Origin, error: DecodeError, timestamp_us: int) -> AlertEvent:
    """A record on a ledger topic that is not a valid record is itself a finding: export it
    as a high-severity alert instead of dropping it silently."""
    return AlertEvent(
        origin=origin, alert_id=f"undecodable:{origin.topic}:{origin.partition}:{origin.offset}",
        kind=UNDECODABLE, severity="high", seq_from=None, seq_to=None, agent_id=None,
        detail=f"record at {origin.topic}[{origin.partition}]@{origin.offset} is not a valid record: {error}",
        evidence={"reason": error.reason}, verifier_id="ledgerstream-export", time=timestamp_us,
        authenticity="unsigned", authenticity_reason="not_an_alert",  # the exporter's note, no verifier signed it
    )


def decode_event(value: bytes | None, origin: Origin, timestamp_us: int,
                 trusted: Mapping[str, VerifierKey] | None = None, signers: CheckerConfig | None = None) -> Event:
    """The event for one Kafka record of the entries or alerts topic; alerts are checked
    against the ``trusted`` verifier keys, entries by the core's stateless checks under the
    ``signers`` trust (so an entry signed by another key is never called signed)."""
    try:
        name, record = codec.decode(value or b"", expect=("LedgerEntry", "Alert"))
    except DecodeError as exc:
        return undecodable_event(origin, exc, timestamp_us)
    if name == "LedgerEntry":
        return entry_event(record, origin, entry_authenticity(value or b"", origin, signers))
    return alert_event(record, origin, trusted)
