"""Incremental verification of a ledger: the one checker every verifier runs.

Pure code: the caller feeds raw record bytes (with their offsets) from ``entries`` and
``checkpoints`` in topic order and gets :class:`Finding` objects back; no Kafka, no
files, no clock. The faust verifier workers, ``ledgerstream verify`` and the offline tools
all run this class, so they agree on what is wrong and how it is named (docs/alerts.md).

Verification steps (docs/spec.md section 9), labelled ``[n]`` in the code:

  [1] decode every record (Avro single object)            -> undecodable
  [2] entry_hash recomputes, payload matches its commitment -> hash_mismatch
  [3] the key is trusted and the signature verifies       -> unknown_key, bad_signature
  [4] seq continues, prev_hash links to the previous entry -> gap, duplicate, fork, chain_break
  [5] the per-agent chain continues                       -> agent_chain_break
  [6] checkpoints: signature, body, root, head, consistency -> checkpoint_*
  [7] timestamp tokens verify and do not go backwards     -> timestamp_invalid / _out_of_order
  [8] resolved links name the right entry; pending links resolve in time
                                                          -> link_mismatch, link_dangling
  [9] approvals verify against the configured approvers   -> approval_invalid

One incident gives one finding: a rejected record (steps 1-3) is dropped and the next valid
entry continues the chain; after a gap the next correctly signed entry is adopted as the new
head; a fork is remembered as a *candidate* for the head's seq, and if the following entry
links to the candidate instead of the head, the chain switches to it silently (the fork was
already reported). This is why the newest entry stays *tentative* (verified, not yet
integrated) until the next entry confirms its place.
"""
from __future__ import annotations

import base64
import enum
import hashlib
import json
import re
from collections import Counter, deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from ledgerstream.core import avro_fast, codec, merkle, records
from ledgerstream.core.errors import (DecodeError, InvalidSignature, ProofError, TimestampError,
                                      VerificationError)
from ledgerstream.core.mldsa import SIGNATURE_SIZE, PublicKey
from ledgerstream.core.timestamp import verify_timestamp

ENTRIES, CHECKPOINTS = "entries", "checkpoints"
STATE_VERSION = 1


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


@dataclass(frozen=True)
class CheckerConfig:
    """What a verifier trusts and how patient it is.

    ``link_grace_seconds`` (ledger time, from ``received_at``) and ``link_grace_entries``
    bound how long a pending link may wait for its target; a link dangles once every
    bound that is set has passed, so set one to None to use only the other.
    """

    trusted_keys: Mapping[str, PublicKey]
    tsa_ca: bytes | None = None
    approvers: Any = None  # ledgerstream.core.approvals.ApproverSet
    link_grace_seconds: float | None = 300.0
    link_grace_entries: int | None = 10_000
    clock_skew_seconds: float = 300.0
    origin: str | None = None

    def __post_init__(self) -> None:
        if self.link_grace_seconds is None and self.link_grace_entries is None:
            raise ValueError("set link_grace_seconds, link_grace_entries or both")

    @classmethod
    def from_keys(cls, keys: Iterable[PublicKey], **options: Any) -> "CheckerConfig":
        return cls(trusted_keys={k.key_id: k for k in keys}, **options)

    @cached_property
    def encoded_key_ids(self) -> tuple[tuple[bytes, PublicKey], ...]:
        """Each trusted key with its key_id as Avro writes it (for :func:`raw_signature_check`)."""
        return tuple((avro_fast.write_str(key_id), key) for key_id, key in self.trusted_keys.items())


# --- stateless checks (safe to run in a thread pool) -------------------------------------------

@dataclass(frozen=True)
class CheckedEntry:
    """An entries record after the checks that need no chain state (steps 1-3, 7, 9).

    ``rejection`` set: the record is dropped. ``notes``: findings about an entry that is
    still integrated (an invalid per-entry token or approval does not unmake the entry).
    """

    offset: int
    raw: bytes
    entry: dict[str, Any] | None = None
    entry_hash: bytes = b""
    rejection: Finding | None = None
    notes: tuple[Finding, ...] = ()
    signed: bool = False
    approvals_checked: bool = False

    @property
    def seq(self) -> int:
        return int(self.entry["seq"]) if self.entry else -1

    @property
    def agent_id(self) -> str:
        return self.entry["action"]["agent_id"] if self.entry else ""


def _where(offset: int, topic: str) -> dict[str, Any]:
    return {"topic": topic, "offset": offset}


def _located(offset: int, entry: Mapping[str, Any]) -> dict[str, Any]:
    """Where a finding about a decoded entry points (built only when there is a finding)."""
    return {"seq": entry["seq"], "agent_id": entry["action"]["agent_id"], "topic": ENTRIES, "offset": offset}


def _entry_where(c: CheckedEntry) -> dict[str, Any]:
    return _located(c.offset, c.entry)


def _undecodable(raw: bytes, offset: int, topic: str, exc: DecodeError) -> Finding:
    return Finding.make(Kind.UNDECODABLE, f"{topic} record at offset {offset} is not a valid record: {exc}",
                        reason=exc.reason, length=len(raw), sha256=hashlib.sha256(raw).hexdigest(),
                        head=bytes(raw[:48]), **_where(offset, topic))


#: a signature step [3] still has to check: (key, signature, signed message)
SignatureCheck = tuple[PublicKey, bytes, bytes]


def check_entry(record: tuple[int, bytes], config: CheckerConfig) -> CheckedEntry:
    """Steps [1], [2], [3], per-entry [7] and [9] for one entries record."""
    checked, signature = precheck_entry(record, config)
    if signature is None:
        return checked
    key, sig, message = signature
    return settle_signature(checked, signature, key.verify_many([(sig, message)])[0])


def precheck_entry(record: tuple[int, bytes], config: CheckerConfig) -> tuple[CheckedEntry, SignatureCheck | None]:
    """Everything :func:`check_entry` does except verifying the signature itself, which is
    returned (or None when there is none to check); :func:`settle_signature` finishes."""
    offset, raw = record
    fast = avro_fast.read_entry(raw)  # [1] and [2]'s preimage, compiled; None: not taken there
    if fast is None:
        try:  # [1]
            _, entry = codec.decode(raw, expect="LedgerEntry")
        except DecodeError as exc:
            return CheckedEntry(offset, raw, rejection=_undecodable(raw, offset, ENTRIES, exc)), None
    else:
        entry = fast[0]
    try:  # [2]
        computed = _recompute_entry_hash(entry, None if fast is None else records.sha256(fast[1]))
        _check_payload(entry["action"])
        # [3] the key; the signature itself is left to the caller
        signature = _entry_signature_check(entry, computed, config)
    except VerificationError as exc:
        return CheckedEntry(offset, raw, entry,
                            rejection=Finding.from_error(Kind(exc.kind), exc, **_located(offset, entry))), None
    notes = []
    token = entry.get("timestamp_token")
    if token is not None and config.tsa_ca is not None:  # [7] per-entry timestamp mode
        try:
            verify_timestamp(bytes(token), computed, config.tsa_ca)
        except TimestampError as exc:
            notes.append(Finding.from_error(Kind.TIMESTAMP_INVALID, exc, **_located(offset, entry)))
    checked_approvals = False
    if config.approvers is not None and _carries_approvals(entry["action"]):  # [9]
        checked_approvals = True
        try:
            _verify_approvals(entry["action"], config.approvers)
        except VerificationError as exc:
            notes.append(Finding.from_error(Kind.APPROVAL_INVALID, exc, **_located(offset, entry)))
    checked = CheckedEntry(offset, raw, entry, computed, None, tuple(notes), signature is not None, checked_approvals)
    return checked, signature


def settle_signature(checked: CheckedEntry, signature: SignatureCheck, valid: bool) -> CheckedEntry:
    """The outcome of :func:`precheck_entry` once its signature was checked (``valid``)."""
    if valid:
        return checked
    key, sig, message = signature
    try:
        key.verify(sig, message)  # raises the explanation; a bad signature is the rare path
        raise InvalidSignature("signature failed a batch check but passes alone", key_id=key.key_id)
    except VerificationError as exc:
        return CheckedEntry(checked.offset, checked.raw, checked.entry,
                            rejection=Finding.from_error(Kind(exc.kind), exc, **_entry_where(checked)))


def _recompute_entry_hash(entry: Mapping[str, Any], computed: bytes | None = None) -> bytes:
    """``computed``: the hash of the preimage :func:`avro_fast.read_entry` wrote, if it did."""
    try:  # a decoded entry has exactly the schema's types: the typed writer gives entry_hash's bytes
        computed = computed or records.entry_hash_typed(entry)
    except (ValueError, TypeError) as exc:
        raise VerificationError(f"entry cannot be hashed (RFC 8785): {exc}", kind=Kind.HASH_MISMATCH.value) from exc
    if computed != bytes(entry["entry_hash"]):
        raise VerificationError(f"entry {entry['seq']}: entry_hash does not match its content",
                                kind=Kind.HASH_MISMATCH.value, expected=bytes(entry["entry_hash"]), computed=computed)
    return computed


def _check_payload(action: Mapping[str, Any]) -> None:
    payload, salt = action.get("payload"), action.get("payload_salt")
    if payload is None and salt is None:
        return  # hash-only mode or erased: nothing to compare
    if payload is None or salt is None or len(salt) != records.SALT_LEN:
        raise VerificationError("payload and payload_salt must travel together (32-byte salt)",
                                kind=Kind.HASH_MISMATCH.value, event_id=action["event_id"])
    computed = records.payload_commitment(bytes(salt), bytes(payload))
    if computed != bytes(action["payload_hash"]):
        raise VerificationError(f"payload of event {action['event_id']} does not match its commitment",
                                kind=Kind.HASH_MISMATCH.value, expected=bytes(action["payload_hash"]), computed=computed)


def _entry_signature_check(entry: Mapping[str, Any], entry_hash: bytes, config: CheckerConfig
                           ) -> SignatureCheck | None:
    key = config.trusted_keys.get(entry["key_id"])
    if key is None:
        raise VerificationError(f"entry {entry['seq']} names key {entry['key_id'][:16]}..., which is not trusted",
                                kind=Kind.UNKNOWN_KEY.value, key_id=entry["key_id"])
    signature = entry.get("signature")
    if signature is None:
        return None  # checkpoint signing mode: covered by a signed checkpoint instead
    return key, bytes(signature), records.entry_signing_message(entry_hash)


def _carries_approvals(action: Mapping[str, Any]) -> bool:
    return bool(action.get("approvals")) or (action.get("policy") or {}).get("decision") == "approved"


def _verify_approvals(action: Mapping[str, Any], approvers: Any) -> None:
    from ledgerstream.core.approvals import verify_approvals

    verify_approvals(action, approvers.approvers, approvers.m)


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
        return CheckedCheckpoint(offset, raw, rejection=_undecodable(raw, offset, CHECKPOINTS, exc))
    if name == "TimestampAnchor":
        return CheckedCheckpoint(offset, raw, name, rec)
    where = {"seq": rec["tree_size"] - 1 if rec["tree_size"] else None, **_where(offset, CHECKPOINTS),
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


# --- chain state --------------------------------------------------------------------------------

@dataclass
class Edge:
    """A resolved cross-agent link: entry ``from_seq`` names entry ``to_seq`` as its cause."""

    from_seq: int
    from_agent: str
    to_seq: int
    to_agent: str
    relation: str = "caused_by"

    def to_dict(self) -> dict[str, Any]:
        return {"from_seq": self.from_seq, "from_agent": self.from_agent, "to_seq": self.to_seq,
                "to_agent": self.to_agent, "relation": self.relation}


class CallGraph:
    """The cross-agent call graph built from resolved links; answers who called whom."""

    def __init__(self) -> None:
        self.edges: list[Edge] = []
        self._pairs: Counter[tuple[str, str]] = Counter()

    def add(self, edge: Edge) -> None:
        self.edges.append(edge)
        self._pairs[(edge.from_agent, edge.to_agent)] += 1

    def edges_of(self, agent_id: str) -> list[Edge]:
        return [e for e in self.edges if agent_id in (e.from_agent, e.to_agent)]

    def agent_pairs(self) -> dict[str, dict[str, int]]:
        """``{from_agent: {to_agent: number of links}}``."""
        out: dict[str, dict[str, int]] = {}
        for (src, dst), n in sorted(self._pairs.items()):
            out.setdefault(src, {})[dst] = n
        return out

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        edges = self.edges if limit is None else self.edges[-limit:]
        return {"edges": [e.to_dict() for e in edges], "agents": self.agent_pairs(),
                "total_edges": len(self.edges)}


@dataclass
class _PendingLink:
    from_seq: int
    from_agent: str
    to_agent: str
    to_event: str
    relation: str
    since_us: int
    done: bool = False


@dataclass
class _Tentative:
    """The newest entry: verified, waiting for the next entry to confirm its place."""

    checked: CheckedEntry
    edges: list[tuple[int, str, str]]          # (to_seq, to_agent, relation) of its resolved links
    pending: list[tuple[str, str, str]]        # (to_agent, to_event, relation) still unresolved


@dataclass
class _CheckpointHead:
    tree_size: int
    root: bytes
    chain_head: bytes
    created_at: int


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
    suppressed: int = 0
    findings: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "findings"}
        out["findings"] = dict(sorted(self.findings.items()))
        return out


class SignaturePool:
    """Checks step [3]'s signatures on background threads while the caller goes on.

    With liboqs and the shim (``PublicKey.verify_many_releases_gil``) a whole chunk of
    signatures is checked in one foreign call that holds no GIL, so one thread verifies
    chunk *k* while the feeding thread decodes and re-hashes chunk *k + 1* and integrates
    chunk *k - 1*: on two cores the signature nearly disappears from the time per entry.
    Without it (pyca), or without a ``pool``, checks run at once on the calling thread.
    ``workers`` threads of the pool split each chunk between them.
    """

    def __init__(self, pool: Executor | None, workers: int = 1) -> None:
        self._pool = pool
        self._workers = max(1, workers)

    def submit(self, checks: Sequence[SignatureCheck]) -> Callable[[], list[bool]]:
        """Start checking; the returned function waits for the verdicts, in input order."""
        if not checks:
            return list
        key = checks[0][0]
        if self._pool is None or not key.verify_many_releases_gil or any(c[0] is not key for c in checks):
            verdicts = [k.verify_many([(sig, message)])[0] for k, sig, message in checks]
            return lambda: verdicts
        pairs = [(sig, message) for _, sig, message in checks]
        size = -(-len(pairs) // self._workers)
        futures = [self._pool.submit(key.verify_many, pairs[i:i + size]) for i in range(0, len(pairs), size)]
        return lambda: [ok for future in futures for ok in future.result()]


def raw_signature_check(raw: bytes, config: CheckerConfig) -> SignatureCheck | None:
    """The check :func:`precheck_entry` would hand over for ``raw``, read from the bytes
    without decoding them (a few µs against ~15 for a decode), so that another process can
    check a batch's signatures before the checker reaches it (the verifier worker does).

    Reads ``entry_hash`` (the 4th field, after two varints and the 32-byte ``prev_hash``) and,
    at the end of the record, a trusted ``key_id`` and the signature. None when the record
    is not laid out so (another schema, a per-entry timestamp token, corrupt bytes): the
    checker then checks the decoded entry itself. It may be fooled by crafted bytes, which
    is harmless: :func:`check_entries` uses a verdict only when this check equals the one
    made from the decoded entry."""
    layout = _signature_layout(raw, config)
    if layout is None:
        return None
    key, sig_at, hash_at = layout
    return key, raw[sig_at:-1], records.entry_signing_message(raw[hash_at:hash_at + 32])


def _signature_layout(raw: bytes, config: CheckerConfig) -> tuple[PublicKey, int, int] | None:
    """Where :func:`raw_signature_check` reads: the key, the signature's and entry_hash's offsets."""
    sig_start = len(raw) - 1 - SIGNATURE_SIZE
    tail_start = sig_start - len(_SIGNATURE_TAIL)
    if (tail_start < codec.HEADER_LEN or raw[-1] != 0 or not raw.startswith(avro_fast.LEDGER_ENTRY_FINGERPRINT, 2)
            or not raw.endswith(_SIGNATURE_TAIL, 0, sig_start)):
        return None
    for encoded, key in config.encoded_key_ids:
        if raw.endswith(encoded, 0, tail_start):
            break
    else:
        return None
    head = _HEAD.match(raw, codec.HEADER_LEN, tail_start)
    if head is None or raw[head.end() + 32] != _HASH_LENGTH:
        return None
    return key, sig_start, head.end() + 33


def _reads_as(raw: bytes, check: SignatureCheck, config: CheckerConfig) -> bool:
    """``raw_signature_check(raw, config) == check``, without copying the signature out."""
    layout = _signature_layout(raw, config)
    if layout is None:
        return False
    key, sig_at, hash_at = layout
    want_key, signature, message = check
    return (key == want_key and len(signature) == SIGNATURE_SIZE and raw.startswith(signature, sig_at)
            and records.entry_signing_message(raw[hash_at:hash_at + 32]) == message)


#: a LedgerEntry whose timestamp_token is null ends with its signature as union branch 1, then
#: the null branch; key_id is the string just before (schemas/LedgerEntry.avsc, field order)
_SIGNATURE_TAIL = b"\x02" + avro_fast.write_long(SIGNATURE_SIZE)
#: spec_version and seq (two zig-zag varints), then prev_hash's length prefix
_HEAD = re.compile(rb"[\x80-\xff]*[\x00-\x7f][\x80-\xff]*[\x00-\x7f]\x40")
_HASH_LENGTH = 0x40  # zig-zag 32: the one-byte length prefix of prev_hash and entry_hash


def check_raw_signatures(batch: Sequence[tuple[int, bytes]], config: CheckerConfig) -> dict[int, bool]:
    """Verdicts, by offset, for the signatures of the records :func:`raw_signature_check`
    reads: one ``verify_many`` call per key (without the GIL on liboqs with the shim). The
    signatures go to it as views of the records (each would be copied twice otherwise)."""
    by_key: dict[str, list[tuple[int, memoryview, bytes]]] = {}
    for offset, raw in batch:
        layout = _signature_layout(raw, config)
        if layout is not None:
            key, sig_at, hash_at = layout
            by_key.setdefault(key.key_id, []).append(
                (offset, memoryview(raw)[sig_at:-1], records.entry_signing_message(raw[hash_at:hash_at + 32])))
    verdicts: dict[int, bool] = {}
    for key_id, checks in by_key.items():
        valid = config.trusted_keys[key_id].verify_many([(sig, message) for _, sig, message in checks])
        verdicts.update(zip((offset for offset, _, _ in checks), valid))
    return verdicts


#: entries pre-checked ahead of integration while their signatures are checked in the background
PIPELINE_CHUNK = 128
#: the interpreter switch interval for processes that feed a SignaturePool (sys.setswitchinterval):
#: a pool thread needs the GIL twice per chunk, and at the default 5 ms it waits for the
#: feeding thread's slice to run out each time (measured: the pool then gained nothing)
SWITCH_INTERVAL = 0.0005
_ON_CALLER = SignaturePool(None)


#: an entry after :func:`precheck_entry`: its signature check, and the verdict on it if known
_Prechecked = tuple[CheckedEntry, SignatureCheck | None, bool | None]


def check_entries(records: Sequence[tuple[int, bytes]], config: CheckerConfig,
                  signatures: SignaturePool | None = None,
                  verdicts: Mapping[int, bool] | None = None, tally: Stats | None = None) -> Iterator[CheckedEntry]:
    """:func:`check_entry` for a run of records, in order, lazily. With ``signatures``,
    chunks of records (``_chunks``) are pre-checked and their signatures handed to the
    pool, so the signatures of chunk *k* are checked while chunk *k + 1* is pre-checked
    and the caller consumes chunk *k - 1*. ``verdicts``: from :func:`check_raw_signatures`
    on these records; an entry's verdict is taken where its :func:`raw_signature_check`
    equals the check made from the decoded entry, every other signature is checked here;
    ``tally.signatures_checked_ahead`` counts the verdicts taken."""
    signatures = signatures or _ON_CALLER
    ahead: deque[tuple[list[_Prechecked], Callable[[], list[bool]]]] = deque()
    for start, end in _chunks(len(records)):
        pre = [_with_verdict(precheck_entry(r, config), verdicts, config) for r in records[start:end]]
        if verdicts and tally is not None:
            tally.signatures_checked_ahead += sum(known is not None for _, _, known in pre)
        ahead.append((pre, signatures.submit([sig for _, sig, known in pre if sig is not None and known is None])))
        if len(ahead) > 1:
            yield from _settled(*ahead.popleft())
    while ahead:
        yield from _settled(*ahead.popleft())


def _with_verdict(pre: tuple[CheckedEntry, SignatureCheck | None], verdicts: Mapping[int, bool] | None,
                  config: CheckerConfig) -> _Prechecked:
    checked, signature = pre
    known = None if signature is None or not verdicts else verdicts.get(checked.offset)
    if known is not None and not _reads_as(checked.raw, signature, config):
        known = None  # the verdict is about other bytes than the decoded entry's: check these
    return checked, signature, known


def _chunks(n: int) -> list[tuple[int, int]]:
    """[start, end) of the chunks of a run of ``n`` records: ``PIPELINE_CHUNK`` long, but a
    quarter of that at both ends, where nothing overlaps: the signature thread waits for the
    first chunk to be pre-checked, and the caller for the last chunk's signatures."""
    edge = max(1, PIPELINE_CHUNK // 4)
    bounds, start = [], 0
    while start < n:
        middle = start and n - start > PIPELINE_CHUNK + 2 * edge
        end = min(n, start + (PIPELINE_CHUNK if middle else edge))
        bounds.append((start, end))
        start = end
    return bounds


def _settled(pre: list[_Prechecked], verdicts: Callable[[], list[bool]]) -> Iterator[CheckedEntry]:
    valid = iter(verdicts())
    for checked, signature, known in pre:
        if signature is None:
            yield checked
        else:
            yield settle_signature(checked, signature, next(valid) if known is None else known)


def links_answer_problem(entry: Mapping[str, Any]) -> str | None:
    """The signer answers an action's links one by one, in order: ``resolved_links[i]`` names
    the same agent and event as ``action.links[i]``. The message if not."""
    links = list(entry["action"].get("links") or [])
    resolved = list(entry.get("resolved_links") or [])
    if [(l["agent_id"], l["event_id"]) for l in links] != [(r["agent_id"], r["event_id"]) for r in resolved]:
        return f"resolved_links {len(resolved)} do not answer the action's links {len(links)} one by one"
    return None


def names_earlier_entry(seq: int, r: Mapping[str, Any]) -> bool:
    """A resolved link of entry ``seq`` names an entry (seq and hash) before it."""
    return r["seq"] is not None and r["entry_hash"] is not None and 0 <= r["seq"] < seq


def resolved_link_problem(seq: int, r: Mapping[str, Any], target: tuple[int, bytes | None] | None) -> str | None:
    """The rule for one ``resolved`` link ``r`` of entry ``seq``: it names an earlier entry,
    which holds the linked event, with that entry's hash. ``target``: (seq, entry_hash) of the
    entry holding the linked agent/event, None if no known entry does. The message if broken."""
    to = f"{r['agent_id']}/{r['event_id']}"
    if not names_earlier_entry(seq, r):
        return f"resolved link to {to} names no earlier entry (seq {r['seq']})"
    if target is None or target[0] != r["seq"]:
        return f"resolved link to {to} names seq {r['seq']}, but that event is " + (
            "not in the ledger" if target is None else f"at seq {target[0]}")
    if bytes(r["entry_hash"]) != target[1]:
        return f"resolved link to {to} names a different entry_hash than entry {r['seq']}"
    return None


class Checker:
    """Holds the chain state of one replay and turns records into findings.

    Feed each topic in its own order (``feed_entries`` / ``feed_checkpoints``, any
    interleaving); call :meth:`finish` at the end of a finite replay. Records at offsets
    already processed are skipped, so redelivery after a restart is harmless.
    """

    def __init__(self, config: CheckerConfig, on_adopt: Callable[[CheckedEntry], None] | None = None) -> None:
        """``on_adopt``: called with each record as it becomes entry ``seq`` of the ledger
        (in seq order), for readers that need to know which record that is (``core/adoption.py``)."""
        self.config = config
        self.on_adopt = on_adopt
        self.stats = Stats()
        self.graph = CallGraph()
        self.next_offset = {ENTRIES: 0, CHECKPOINTS: 0}
        self._hashes = bytearray()                     # entry_hash of every integrated seq (zeros: unknown)
        self._gaps: list[tuple[int, int]] = []         # missing seq ranges [first, last]; last's hash is known
        self._tree = merkle.MerkleTree()
        self._agents: dict[str, tuple[int, bytes, int]] = {}   # agent -> (next agent_seq, head hash, last seq)
        self._events: dict[str, tuple[int, str]] = {}          # event_id -> (seq, agent_id)
        self._tentative: _Tentative | None = None
        self._candidate: CheckedEntry | None = None
        self._pending: deque[_PendingLink] = deque()
        self._pending_by_target: dict[tuple[str, str], list[_PendingLink]] = {}
        self._ledger_time = 0
        self._queue: deque[CheckedCheckpoint] = deque()        # checkpoint-topic records in arrival order
        self._last_cp: _CheckpointHead | None = None
        self._bodies: dict[bytes, tuple[int, bytes, int]] = {}  # body hash -> (tree_size, body, created_at)
        self._rejected_bodies: set[bytes] = set()
        self._last_gen: dict[str, float] = {}                   # TSA subject -> newest genTime (epoch s)
        self._last_rejection: dict[str, Kind | None] = {ENTRIES: None, CHECKPOINTS: None}
        self._journal: list[dict[str, Any]] = []

    # --- public views -------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """Next seq expected: entries [0, position) are verified (the newest still tentative)."""
        return self._tree.size + (1 if self._tentative else 0)

    @property
    def last_checkpoint(self) -> dict[str, Any] | None:
        cp = self._last_cp
        return None if cp is None else {"tree_size": cp.tree_size, "root_hash": cp.root.hex(),
                                        "chain_head": cp.chain_head.hex(), "created_at": cp.created_at}

    @property
    def head_hash(self) -> bytes:
        """entry_hash of the newest verified entry (zeros before the first)."""
        if self._tentative:
            return self._tentative.checked.entry_hash
        return self._hash_at(self._tree.size - 1) or records.ZERO_HASH

    @property
    def held_offsets(self) -> set[int]:
        """Offsets of the entries records held whole and not integrated yet (the tentative
        head and a fork candidate): any other record fed and not integrated never will be."""
        held = {self._tentative.checked.offset} if self._tentative else set()
        if self._candidate is not None:
            held.add(self._candidate.offset)
        return held

    @property
    def pending_links(self) -> int:
        return sum(1 for p in self._pending if not p.done)

    @property
    def tree(self) -> merkle.MerkleTree:
        """The Merkle tree over integrated entries (for proofs; do not append to it)."""
        return self._tree

    # --- feeding ------------------------------------------------------------------------------
    def feed_entries(self, batch: Sequence[tuple[int, bytes]], signatures: SignaturePool | None = None,
                     verdicts: Mapping[int, bool] | None = None) -> list[Finding]:
        """Verify a run of consecutive ``entries`` records; with ``signatures``, step [3]'s
        signature checks run in the background, and ``verdicts`` may bring some already
        made (see :func:`check_entries`)."""
        fresh = [r for r in batch if r[0] >= self.next_offset[ENTRIES]]
        return self.feed_checked(check_entries(fresh, self.config, signatures, verdicts, self.stats)) if fresh else []

    def feed_checked(self, checked: Iterable[CheckedEntry]) -> list[Finding]:
        """Integrate consecutive ``entries`` records that :func:`check_entries` checked
        with this checker's config (the stateless steps may run anywhere, e.g. on other
        threads or in another process); records at offsets already processed are skipped."""
        out: list[Finding] = []
        fed = False
        for c in checked:
            if c.offset < self.next_offset[ENTRIES]:
                continue
            fed = True
            self.next_offset[ENTRIES] = c.offset + 1
            out += self._integrate(c)
        if not fed:
            return []
        out += self._drain_queue()
        return self._record(out)

    def feed_checkpoints(self, batch: Sequence[tuple[int, bytes]]) -> list[Finding]:
        out: list[Finding] = []
        for record in batch:
            if record[0] < self.next_offset[CHECKPOINTS]:
                continue
            self.next_offset[CHECKPOINTS] = record[0] + 1
            c = check_checkpoint_record(record, self.config)
            if c.rejection is not None:
                out += self._reject(CHECKPOINTS, c.rejection)
                if c.record is not None and c.name == "Checkpoint":
                    self._rejected_bodies.add(c.body_hash)
                continue
            self._last_rejection[CHECKPOINTS] = None
            self._queue.append(c)
        out += self._drain_queue()
        return self._record(out)

    def feed(self, topic: str, offset: int, raw: bytes) -> list[Finding]:
        """One record of ``topic`` ("entries" or "checkpoints")."""
        if topic == ENTRIES:
            return self.feed_entries([(offset, raw)])
        if topic == CHECKPOINTS:
            return self.feed_checkpoints([(offset, raw)])
        raise ValueError(f"unknown topic role {topic!r}")

    def finish(self) -> list[Finding]:
        """End of a finite replay: integrate the newest entry and settle every checkpoint."""
        self._finalize_tentative()
        return self._record(self._drain_queue() + self._expire())

    def expire_checkpoints(self, before_offset: int | None = None) -> list[Finding]:
        """Call when every entry committed before the checkpoints at offsets below
        ``before_offset`` (all queued ones when None) has been fed: those still waiting for
        entries claim more entries than the ledger has. Checkpoints read later stay pending:
        a checkpoint may be read before the entries it covers, and that is no finding."""
        return self._record(self._expire(before_offset))

    def _expire(self, before_offset: int | None = None) -> list[Finding]:
        out = []
        while self._queue and (before_offset is None or self._queue[0].offset < before_offset):
            item = self._queue.popleft()
            if item.name == "Checkpoint" and item.record["tree_size"] > self.position:
                rec = item.record
                self._rejected_bodies.add(item.body_hash)
                out.append(Finding.make(
                    Kind.CHECKPOINT_ROOT_MISMATCH,
                    f"checkpoint claims {rec['tree_size']} entries but the ledger has {self.position}",
                    seq=self.position, seq_to=rec["tree_size"] - 1, tree_size=rec["tree_size"],
                    ledger_size=self.position, **_where(item.offset, CHECKPOINTS)))
            else:
                out += self._evaluate(item)
        return out

    # --- entries -------------------------------------------------------------------------------
    def _integrate(self, c: CheckedEntry) -> list[Finding]:
        self.stats.entries_seen += 1
        if c.rejection is not None:
            self.stats.entries_rejected += 1
            return self._reject(ENTRIES, c.rejection)
        self._last_rejection[ENTRIES] = None
        self.stats.signatures_verified += c.signed
        self.stats.unsigned_entries += not c.signed
        self.stats.approvals_checked += c.approvals_checked
        out = list(c.notes)
        e, seq, h = c.entry, c.seq, c.entry_hash
        t = self._tentative
        # [4] an entry for a seq we already have
        if seq < self._tree.size:
            known = self._hash_at(seq)
            if known is None:
                out.append(Finding.make(Kind.CHAIN_BREAK, f"entry {seq} arrives after entry {self.position - 1}: "
                                        "out of order", got=h, **_entry_where(c)))
            else:
                out.append(self._same_seq(c, known))
            return out
        if t is not None and seq == t.checked.seq:
            cand = self._candidate
            if h == t.checked.entry_hash or (cand is not None and h == cand.entry_hash):
                out.append(self._same_seq(c, h))
            else:
                out.append(self._same_seq(c, t.checked.entry_hash))
                self._candidate = c
            return out
        prev = bytes(e["prev_hash"])
        if seq == self.position:
            if t is None:
                parent = self._hash_at(seq - 1) if seq else records.ZERO_HASH
                if prev != parent:
                    out.append(self._chain_break(c, parent))
            elif prev == t.checked.entry_hash:
                self._finalize_tentative()
            elif self._candidate is not None and prev == self._candidate.entry_hash:
                cand = self._candidate
                self._tentative = None
                out += self._make_tentative(cand)  # its own [5]/[8] checks, now that it is adopted
                self._finalize_tentative()
            else:
                out.append(self._chain_break(c, t.checked.entry_hash))
                self._finalize_tentative()
        else:  # seq > position: entries are missing
            first = self.position
            out.append(Finding.make(Kind.GAP, f"entries {first}..{seq - 1} are missing (next entry is {seq})",
                                    seq=first, seq_to=seq - 1, missing=seq - first, **_where(c.offset, ENTRIES)))
            self._finalize_tentative()
            self._fill_gap(first, seq, prev)
        self._candidate = None
        out += self._make_tentative(c)
        self._ledger_time = max(self._ledger_time, int(e["received_at"]))
        out += self._dangling(seq)
        return out

    def _same_seq(self, c: CheckedEntry, known: bytes) -> Finding:
        seq, h = c.seq, c.entry_hash
        where = _entry_where(c)
        if h == known:
            return Finding.make(Kind.DUPLICATE, f"entry {seq} appears again (replayed record)", entry_hash=h, **where)
        return Finding.make(Kind.FORK, f"a different entry under a trusted key claims seq {seq}",
                            expected=known, got=h, key_id=c.entry["key_id"], **where)

    def _chain_break(self, c: CheckedEntry, parent: bytes) -> Finding:
        return Finding.make(Kind.CHAIN_BREAK, f"entry {c.seq}: prev_hash does not link to entry {c.seq - 1}",
                            seq=c.seq, agent_id=c.agent_id, expected=parent, got=bytes(c.entry["prev_hash"]),
                            **_where(c.offset, ENTRIES))

    def _fill_gap(self, first: int, seq: int, prev: bytes) -> None:
        """Integrate placeholders for missing entries; the last one's hash is known from
        prev_hash (signed by its successor), so a one-entry gap keeps the tree exact."""
        self._gaps.append((first, seq - 1))
        self._journal.append({"gap": [first, seq - 1]})
        for missing in range(first, seq):
            self._append(missing, prev if missing == seq - 1 else None)

    def _make_tentative(self, c: CheckedEntry) -> list[Finding]:
        """Steps [5] and [8] for the new head, against the integrated state."""
        out: list[Finding] = []
        e, seq, agent = c.entry, c.seq, c.agent_id
        head = self._agents.get(agent)
        want_seq, want_prev = (head[0], head[1]) if head else (0, records.ZERO_HASH)
        got_seq, got_prev = int(e["agent_seq"]), bytes(e["agent_prev_hash"])
        if (got_seq, got_prev) != (want_seq, want_prev):
            explained = got_seq > want_seq and self._gap_after(head[2] if head else -1)
            if not explained:
                out.append(Finding.make(Kind.AGENT_CHAIN_BREAK, f"entry {seq}: the chain of agent {agent} does not "
                                        f"continue (agent_seq {got_seq}, expected {want_seq})",
                                        expected_agent_seq=want_seq, got_agent_seq=got_seq,
                                        expected=want_prev, got=got_prev, **_entry_where(c)))
        edges, pending, problems = self._check_links(e)
        if problems:
            out.append(Finding.make(Kind.LINK_MISMATCH, f"entry {seq}: " + "; ".join(problems), **_entry_where(c)))
        self._tentative = _Tentative(c, edges, pending)
        return out

    def _check_links(self, e: Mapping[str, Any]) -> tuple[list, list, list[str]]:
        links = list(e["action"].get("links") or [])
        resolved = list(e.get("resolved_links") or [])
        if not links and not resolved:
            return [], [], []
        mismatch = links_answer_problem(e)
        if mismatch:
            return [], [], [mismatch]
        edges, pending, problems = [], [], []
        for link, r in zip(links, resolved):
            relation = link.get("relation", "caused_by")
            target = self._events.get(r["event_id"])
            if target is not None and target[1] != r["agent_id"]:
                target = None
            if r["status"] == "resolved":
                problem = self._resolved_problem(e["seq"], r, target)
                if problem:
                    problems.append(problem)
                elif r["seq"] is not None and not self._in_hole(r["seq"]):
                    edges.append((int(r["seq"]), r["agent_id"], relation))
            elif r["status"] == "pending":
                if target is not None:  # the signer's index forgot it (dedup horizon): resolved now
                    edges.append((target[0], r["agent_id"], relation))
                else:
                    pending.append((r["agent_id"], r["event_id"], relation))
            else:
                problems.append(f"link to {r['agent_id']}/{r['event_id']} has unknown status {r['status']!r}")
        return edges, pending, problems

    def _resolved_problem(self, seq: int, r: Mapping[str, Any], target: tuple[int, str] | None) -> str | None:
        if names_earlier_entry(seq, r) and self._in_hole(r["seq"]):
            return None  # the target is in a reported gap: nothing to compare
        return resolved_link_problem(seq, r, None if target is None else (target[0], self._hash_at(target[0])))

    def _finalize_tentative(self) -> None:
        """Integrate the tentative entry: Merkle leaf, agent head, event index, links."""
        t = self._tentative
        if t is None:
            return
        self._tentative = None
        self._candidate = None
        c = t.checked
        e, seq, agent = c.entry, c.seq, c.agent_id
        self._append(seq, c.entry_hash)
        self._agents[agent] = (int(e["agent_seq"]) + 1, c.entry_hash, seq)
        event_id = e["action"]["event_id"]
        self._events[event_id] = (seq, agent)
        self._journal[-1].update(a=agent, ev=event_id, as_=int(e["agent_seq"]))
        for to_seq, to_agent, relation in t.edges:
            self._edge(Edge(seq, agent, to_seq, to_agent, relation))
        for p in self._pending_by_target.pop((agent, event_id), []):
            p.done = True
            self._edge(Edge(p.from_seq, p.from_agent, seq, agent, p.relation))
        for to_agent, to_event, relation in t.pending:
            p = _PendingLink(seq, agent, to_agent, to_event, relation, int(e["received_at"]))
            self._pending.append(p)
            self._pending_by_target.setdefault((to_agent, to_event), []).append(p)
        if self.on_adopt is not None:
            self.on_adopt(c)

    def _append(self, seq: int, entry_hash: bytes | None) -> None:
        assert seq == self._tree.size, (seq, self._tree.size)
        value = entry_hash or records.ZERO_HASH
        self._hashes += value
        self._tree.append(merkle.leaf_hash(records.merkle_leaf_input(value)))
        self._journal.append({"e": [seq, None if entry_hash is None else entry_hash.hex()]})

    def _edge(self, edge: Edge) -> None:
        self.graph.add(edge)
        self._journal.append({"g": [edge.from_seq, edge.from_agent, edge.to_seq, edge.to_agent, edge.relation]})

    def hash_at(self, seq: int) -> bytes | None:
        """entry_hash of integrated entry ``seq`` (None: unknown, inside a gap)."""
        return self._hash_at(seq)

    def _hash_at(self, seq: int) -> bytes | None:
        if not 0 <= seq < self._tree.size or self._in_hole(seq):
            return None
        return bytes(self._hashes[seq * 32:(seq + 1) * 32])

    def _in_hole(self, seq: int) -> bool:
        """True for a missing entry whose hash is unknown."""
        return any(first <= seq < last for first, last in self._gaps)

    def _gap_after(self, seq: int) -> bool:
        return any(last > seq for _, last in self._gaps)

    def _dangling(self, now_seq: int) -> list[Finding]:
        """[8] pending links whose grace period (ledger time and/or entries) has run out."""
        out = []
        cfg = self.config
        while self._pending:
            p = self._pending[0]
            if p.done:
                self._pending.popleft()
                continue
            late_s = cfg.link_grace_seconds is None or (self._ledger_time - p.since_us) / 1e6 > cfg.link_grace_seconds
            late_n = cfg.link_grace_entries is None or now_seq - p.from_seq > cfg.link_grace_entries
            if not (late_s and late_n):
                break
            self._pending.popleft()
            p.done = True
            waiting = self._pending_by_target.get((p.to_agent, p.to_event), [])
            if p in waiting:
                waiting.remove(p)
                if not waiting:
                    del self._pending_by_target[(p.to_agent, p.to_event)]
            out.append(Finding.make(
                Kind.LINK_DANGLING, f"entry {p.from_seq}: link to {p.to_agent}/{p.to_event} is still unresolved "
                f"after {now_seq - p.from_seq} entries and {(self._ledger_time - p.since_us) / 1e6:.0f}s",
                seq=p.from_seq, agent_id=p.from_agent, to_agent=p.to_agent, to_event=p.to_event))
        return out

    # --- checkpoints and anchors ---------------------------------------------------------------------
    def _drain_queue(self) -> list[Finding]:
        out: list[Finding] = []
        while self._queue:
            item = self._queue[0]
            if item.name == "Checkpoint":
                size = item.record["tree_size"]
                if size > self.position:
                    break  # waits for its entries; later records wait behind it (arrival order)
                if size > self._tree.size:
                    self._finalize_tentative()
            self._queue.popleft()
            out += self._evaluate(item)
        return out

    def _evaluate(self, item: CheckedCheckpoint) -> list[Finding]:
        if item.name == "TimestampAnchor":
            return self._evaluate_anchor(item)
        self.stats.checkpoints_seen += 1
        rec = item.record
        size, root, head = rec["tree_size"], bytes(rec["root_hash"]), bytes(rec["chain_head"])
        where = {"seq": size - 1 if size else None, "tree_size": size, **_where(item.offset, CHECKPOINTS)}
        self._bodies[item.body_hash] = (size, bytes(rec["body"]), rec["created_at"])
        self._journal.append({"b": [size, rec["created_at"], base64.b64encode(bytes(rec["body"])).decode()]})
        last = self._last_cp
        unverifiable = any(first < size and first < last for first, last in self._gaps)
        ours = None if unverifiable else (self._tree.root(size), self._hash_at(size - 1) if size else records.ZERO_HASH)
        if last is not None and size <= last.tree_size:  # [6] tree sizes never shrink, roots never change
            if (size == last.tree_size and (root, head) == (last.root, last.chain_head)) or (ours == (root, head)):
                return []
            if unverifiable:
                self.stats.checkpoints_unverifiable += 1
                return []
            return [Finding.make(Kind.CHECKPOINT_INCONSISTENT,
                                 f"checkpoint of size {size} contradicts the verified checkpoint of size {last.tree_size}",
                                 root=root, verified_size=last.tree_size, verified_root=last.root,
                                 computed_root=ours[0] if ours else None, **where)]
        if unverifiable:
            self.stats.checkpoints_unverifiable += 1
            return []
        if ours != (root, head):
            return [Finding.make(Kind.CHECKPOINT_ROOT_MISMATCH,
                                 f"checkpoint of size {size} does not match the entries "
                                 f"({'root' if ours[0] != root else 'chain head'} differs)",
                                 expected_root=ours[0], got_root=root, expected_head=ours[1], got_head=head, **where)]
        if last is not None:
            try:
                merkle.verify_consistency(last.tree_size, size, last.root, root,
                                          self._tree.consistency_proof(last.tree_size, size))
            except ProofError as exc:
                return [Finding.from_error(Kind.CHECKPOINT_INCONSISTENT, exc, **where)]
        self._last_cp = _CheckpointHead(size, root, head, rec["created_at"])
        self.stats.checkpoints_verified += 1
        self._journal.append({"c": [size, root.hex(), head.hex(), rec["created_at"]]})
        return []

    def _evaluate_anchor(self, item: CheckedCheckpoint) -> list[Finding]:
        rec = item.record
        body_hash = bytes(rec["body_hash"])
        known = self._bodies.get(body_hash)
        where = {"tree_size": rec["tree_size"], "tsa": rec["timestamp"]["tsa"], **_where(item.offset, CHECKPOINTS)}
        if known is None:
            if body_hash in self._rejected_bodies:
                return []  # the checkpoint itself was reported
            return [Finding.make(Kind.TIMESTAMP_INVALID, "timestamp anchor for a checkpoint this ledger does not have",
                                 body_hash=body_hash, **where)]
        size, body, created_at = known
        if size != rec["tree_size"]:
            return [Finding.make(Kind.TIMESTAMP_INVALID, f"anchor names tree size {rec['tree_size']}, "
                                 f"its checkpoint has {size}", checkpoint_size=size, **where)]
        if self.config.tsa_ca is None:
            self.stats.timestamps_unverified += 1
            return []
        try:
            info = verify_timestamp(bytes(rec["timestamp"]["token"]), body, self.config.tsa_ca)
        except TimestampError as exc:
            return [Finding.from_error(Kind.TIMESTAMP_INVALID, exc, **where)]
        self.stats.timestamps_verified += 1
        gen = info.gen_time.timestamp()
        where["gen_time"] = info.gen_time.isoformat()
        if gen < created_at / 1e6 - self.config.clock_skew_seconds:
            return [Finding.make(Kind.TIMESTAMP_OUT_OF_ORDER, f"token for checkpoint {size} predates the checkpoint",
                                 created_at=created_at, **where)]
        newest = self._last_gen.get(info.tsa_subject)
        self._last_gen[info.tsa_subject] = max(gen, newest or gen)
        if newest is not None and gen < newest:
            return [Finding.make(Kind.TIMESTAMP_OUT_OF_ORDER, f"token for checkpoint {size} is older than an earlier "
                                 f"token from the same TSA ({newest - gen:.0f}s back)",
                                 previous_gen_time=newest, tsa_subject=info.tsa_subject, **where)]
        return []

    # --- incidents ---------------------------------------------------------------------------------
    def _reject(self, topic: str, finding: Finding) -> list[Finding]:
        """A run of rejected records of one kind on one topic is one incident."""
        if self._last_rejection[topic] == finding.kind:
            self.stats.suppressed += 1
            return []
        self._last_rejection[topic] = finding.kind
        return [finding]

    def _record(self, findings: list[Finding]) -> list[Finding]:
        for f in findings:
            self.stats.findings[f.kind.value] += 1
        return findings

    # --- persistence (pure: the caller stores what these return) -----------------------------------
    def drain_journal(self) -> list[dict[str, Any]]:
        """Append-only records of what was integrated since the last call (entries, holes,
        graph edges, verified checkpoints). Replayed by :meth:`restore`."""
        out, self._journal = self._journal, []
        return out

    def export_state(self) -> dict[str, Any]:
        """Everything else, small: offsets, the tentative head, pending work, counters.

        Valid together with every journal record drained so far (drain first)."""
        def raw(c: CheckedEntry | CheckedCheckpoint | None) -> list | None:
            return None if c is None else [c.offset, base64.b64encode(c.raw).decode()]

        return {
            "version": STATE_VERSION,
            "next_offset": dict(self.next_offset),
            "integrated": self._tree.size,
            "tentative": raw(self._tentative.checked if self._tentative else None),
            "candidate": raw(self._candidate),
            "queue": [raw(c) for c in self._queue],
            "pending_links": [[p.from_seq, p.from_agent, p.to_agent, p.to_event, p.relation, p.since_us]
                              for p in self._pending if not p.done],
            "ledger_time": self._ledger_time,
            "last_gen": self._last_gen,
            "rejected_bodies": sorted(b.hex() for b in self._rejected_bodies)[-1000:],
            "last_rejection": {k: (v.value if v else None) for k, v in self._last_rejection.items()},
            "stats": self.stats.to_dict(),
        }

    @classmethod
    def restore(cls, config: CheckerConfig, state: Mapping[str, Any], journal: Iterable[Mapping[str, Any]]) -> "Checker":
        """Rebuild a checker from its journal and state, re-checking only the few records
        kept whole (tentative head, fork candidate, queued checkpoints)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"verifier state version {state.get('version')} is not {STATE_VERSION}")
        ch = cls(config)
        for rec in journal:
            ch._replay(rec)
        ch._journal = []
        if ch._tree.size != state["integrated"]:
            raise ValueError(f"journal holds {ch._tree.size} entries, state expects {state['integrated']}")
        ch.next_offset = {k: int(v) for k, v in state["next_offset"].items()}
        ch._ledger_time = int(state["ledger_time"])
        ch._last_gen = {k: float(v) for k, v in state["last_gen"].items()}
        ch._rejected_bodies = {bytes.fromhex(b) for b in state["rejected_bodies"]}
        ch._last_rejection = {k: (Kind(v) if v else None) for k, v in state["last_rejection"].items()}
        stats = dict(state["stats"])
        findings = Counter(stats.pop("findings", {}))
        ch.stats = Stats(**stats, findings=findings)
        for p in state["pending_links"]:
            link = _PendingLink(*p)
            ch._pending.append(link)
            ch._pending_by_target.setdefault((link.to_agent, link.to_event), []).append(link)

        def unpack(item: list) -> tuple[int, bytes]:
            return int(item[0]), base64.b64decode(item[1])

        if state["tentative"]:
            checked = check_entry(unpack(state["tentative"]), config)
            if checked.rejection is None:
                t = _Tentative(checked, [], [])
                t.edges, t.pending, _ = ch._check_links(checked.entry)
                ch._tentative = t
        if state["candidate"]:
            checked = check_entry(unpack(state["candidate"]), config)
            ch._candidate = checked if checked.rejection is None else None
        for item in state["queue"]:
            ch._queue.append(check_checkpoint_record(unpack(item), config))
        return ch

    def _replay(self, rec: Mapping[str, Any]) -> None:
        if "e" in rec:
            seq, hex_hash = rec["e"]
            h = None if hex_hash is None else bytes.fromhex(hex_hash)
            self._append(seq, h)
            if "a" in rec:
                self._agents[rec["a"]] = (rec["as_"] + 1, h, seq)
                self._events[rec["ev"]] = (seq, rec["a"])
        elif "gap" in rec:
            self._gaps.append((rec["gap"][0], rec["gap"][1]))
        elif "g" in rec:
            self.graph.add(Edge(*rec["g"]))
        elif "b" in rec:
            size, created, body = rec["b"]
            body_bytes = base64.b64decode(body)
            self._bodies[hashlib.sha256(body_bytes).digest()] = (size, body_bytes, created)
        elif "c" in rec:
            size, root, head, created = rec["c"]
            self._last_cp = _CheckpointHead(size, bytes.fromhex(root), bytes.fromhex(head), created)


# --- liveness -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LivenessSample:
    """What a running verifier observes about the pipeline around it (wall clock)."""

    now: float                       # seconds since the epoch
    actions_end: int                 # sum of the end offsets of the actions partitions
    signer_committed: int | None     # sum of the signer group's committed actions offsets, if known
    entries_end: int                 # end offset of the entries partition
    verified: int                    # entries verified by this verifier
    checkpoint_size: int             # tree size of the newest verified checkpoint


class StallMonitor:
    """Raises ``stalled`` when the ledger head stops while actions wait, or checkpoints are overdue.

    Signer progress is its committed offsets on ``actions`` when known (exact: duplicates and
    dead letters count as progress), else the end offset of ``entries``. Each condition
    raises one finding when it starts and re-arms once it clears.
    """

    def __init__(self, stall_seconds: float = 60.0, checkpoint_overdue_seconds: float = 120.0) -> None:
        self.stall_seconds = stall_seconds
        self.checkpoint_overdue_seconds = checkpoint_overdue_seconds
        self._progress: int | None = None
        self._progress_since = 0.0
        self._actions_at_progress = 0
        self._waiting_since: float | None = None
        self._stalled = False
        self._cp_size: int | None = None
        self._uncovered_since: float | None = None
        self._overdue = False

    def observe(self, s: LivenessSample) -> list[Finding]:
        return self._head(s) + self._checkpoints(s)

    def _head(self, s: LivenessSample) -> list[Finding]:
        progress = s.entries_end if s.signer_committed is None else s.signer_committed
        if progress != self._progress:
            self._progress, self._progress_since, self._stalled = progress, s.now, False
            self._actions_at_progress = s.actions_end
        if s.signer_committed is not None:
            waiting = s.actions_end - s.signer_committed
        else:
            waiting = s.actions_end - self._actions_at_progress
        if waiting <= 0:
            self._waiting_since = None
            return []
        if self._waiting_since is None:
            self._waiting_since = s.now
        idle = s.now - max(self._progress_since, self._waiting_since)
        if self._stalled or idle <= self.stall_seconds:
            return []
        self._stalled = True
        return [Finding.make(Kind.STALLED, f"the ledger head has not moved for {idle:.0f}s while "
                             f"{waiting} actions wait to be signed", seq=s.verified, waiting=waiting,
                             actions_end=s.actions_end, entries_end=s.entries_end)]

    def _checkpoints(self, s: LivenessSample) -> list[Finding]:
        if s.checkpoint_size != self._cp_size or s.verified <= s.checkpoint_size:
            self._cp_size, self._overdue = s.checkpoint_size, False
            self._uncovered_since = s.now if s.verified > s.checkpoint_size else None
            return []
        if self._uncovered_since is None:
            self._uncovered_since = s.now
        idle = s.now - self._uncovered_since
        if self._overdue or idle <= self.checkpoint_overdue_seconds:
            return []
        self._overdue = True
        return [Finding.make(Kind.STALLED, f"no new checkpoint for {idle:.0f}s while "
                             f"{s.verified - s.checkpoint_size} verified entries wait for one",
                             seq=s.checkpoint_size, seq_to=s.verified - 1, checkpoint_size=s.checkpoint_size)]
