"""Replay the ledger for forensics: index it once, select entries, re-verify what is shown.

Why this shape: a responder looks at a few entries of a large ledger. One streaming pass
runs every record through the core's rule (``core/adoption.py``: which record is entry N)
and keeps only what selection, link closure and proofs need (a small row, the Merkle tree,
the core's findings); the per-entry report (re-hash, ML-DSA, payload, proofs, RFC 3161) is
made only for entries that are shown. I/O is injected (iterables of ``(offset, bytes)`` and
a fetch function), so the index and the checks are pure and testable without Kafka.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple

from confluent_kafka import Consumer, KafkaException, TopicPartition

from ledgerstream.core import merkle, records
from ledgerstream.core.wire import codec
from ledgerstream.core.adoption import Adoption, adopt
from ledgerstream.core.config import Topics
from ledgerstream.core.errors import ConfigError, DecodeError, TimestampError, VerificationError
from ledgerstream.core.timestamp import verify_timestamp
from ledgerstream.core.topic_reader import read_partition
from ledgerstream.core.kafka_security import kafka_config
from ledgerstream.core.verify import ENTRIES, CheckedEntry, CheckerConfig, Kind, TrustedKeys
from ledgerstream.core.verify.checkpoints import NoteLine
from ledgerstream.core.verify.trust import NoteTrust

Stream = Iterable[tuple[int, bytes]]
Fetch = Callable[[list[int]], dict[int, bytes]]  # offsets -> their bytes on the entries topic

#: per-entry checks, in display order (names are part of the JSON contract)
CHECKS = ("entry_hash", "signature", "payload", "chain", "agent_chain", "links", "inclusion", "timestamp")
OK, FAIL, SKIP = "ok", "fail", "skip"


# --- selection --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Selection:
    """What to show: filters are ANDed; repeated values of one filter are ORed.

    Times filter on ``received_at`` (the signer's clock, covered by the entry hash):
    agents' own clocks can be skewed or spoofed, and offline agents sync late.
    """

    agents: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    action_types: tuple[str, ...] = ()  # fnmatch globs, e.g. "data:delete:*"
    since_us: int | None = None
    until_us: int | None = None  # exclusive
    seq_from: int | None = None
    seq_to: int | None = None  # inclusive
    follow_links: bool = False

    def matches(self, row: Row) -> bool:
        if self.agents and row.agent_id not in self.agents:
            return False
        if self.sessions and row.session_id not in self.sessions:
            return False
        if self.action_types and not _glob_match(row.action_type, self.action_types):
            return False
        if self.since_us is not None and row.received_at < self.since_us:
            return False
        if self.until_us is not None and row.received_at >= self.until_us:
            return False
        if self.seq_from is not None and row.seq < self.seq_from:
            return False
        return self.seq_to is None or row.seq <= self.seq_to

    def describe(self) -> dict[str, Any]:
        return {"agents": list(self.agents), "sessions": list(self.sessions),
                "action_types": list(self.action_types),
                "since": iso_time(self.since_us), "until": iso_time(self.until_us),
                "seq_from": self.seq_from, "seq_to": self.seq_to, "follow_links": self.follow_links}


_GLOB_CACHE: dict[tuple[str, tuple[str, ...]], bool] = {}


def _glob_match(action_type: str, globs: tuple[str, ...]) -> bool:
    key = (action_type, globs)
    hit = _GLOB_CACHE.get(key)
    if hit is None:
        hit = _GLOB_CACHE[key] = any(fnmatch.fnmatchcase(action_type, g) for g in globs)
    return hit


_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: dt.datetime | None = None) -> int:
    """ISO 8601 (naive = UTC), a date, or a duration ago ("15m", "2h", "7d"): microseconds."""
    now = now or dt.datetime.now(dt.timezone.utc)
    m = _DURATION.match(text.strip())
    if m:
        when = now - dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    else:
        try:
            when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"bad time {text!r}: use ISO 8601 (2025-01-31T10:00:00Z) or a duration "
                             "ago like 15m, 2h, 7d") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp() * 1_000_000)


def parse_seq_range(text: str) -> tuple[int | None, int | None]:
    """``A..B`` (inclusive), ``A..``, ``..B`` or a single ``N``."""
    m = re.fullmatch(r"\s*(\d*)\s*(\.\.)?\s*(\d*)\s*", text)
    if not m or (m.group(2) is None and (m.group(3) or not m.group(1))) or (m.group(2) and not (m.group(1) or m.group(3))):
        raise ValueError(f"bad seq range {text!r}: use A..B, A.., ..B or N")
    lo = int(m.group(1)) if m.group(1) else None
    hi = (int(m.group(3)) if m.group(3) else None) if m.group(2) else lo
    if lo is not None and hi is not None and hi < lo:
        raise ValueError(f"empty seq range {text!r}")
    return lo, hi


# --- the index --------------------------------------------------------------------------------

@dataclass(slots=True)
class Row:
    """What the index keeps of one decodable record of the entries topic."""

    offset: int
    seq: int
    event_id: str
    agent_id: str
    session_id: str | None
    action_type: str
    occurred_at: int
    received_at: int
    links: tuple[tuple[str, str, str], ...]  # (agent_id, event_id, relation)
    entry_hash: bytes  # as stored in the record
    on_chain: bool  # the core adopted it as entry ``seq`` (leaf ``seq`` of the tree)
    issues: dict[str, str] | None = None  # findings of the core about it: chain, agent_chain, links


@dataclass
class CheckpointInfo:
    """One Checkpoint record and what the core established about it."""

    offset: int
    raw: bytes
    record: dict[str, Any]
    body: bytes
    tree_size: int
    root: bytes | None  # the signed root (None unless ``signed``)
    signed: bool  # key trusted, signature verifies, body agrees with the record
    problems: list[str] = field(default_factory=list)
    tokens: list[tuple[str, bytes]] = field(default_factory=list)  # (tsa, DER TimeStampResp)
    note_lines: list[NoteLine] = field(default_factory=list)  # its signed-note lines of configured keys


@dataclass
class Ledger:
    """The replayed ledger: rows, the main chain's tree, checkpoints and their anchors."""

    rows: list[Row] = field(default_factory=list)
    undecodable: list[tuple[int, str]] = field(default_factory=list)  # (offset, reason)
    by_event: dict[str, int] = field(default_factory=dict)  # event_id -> row index (on chain)
    linked_from: dict[str, list[int]] = field(default_factory=dict)  # event_id -> rows linking to it
    tree: merkle.MerkleTree = field(default_factory=merkle.MerkleTree)
    raw: dict[int, bytes] = field(default_factory=dict)  # offset -> bytes, for kept records
    checkpoints: list[CheckpointInfo] = field(default_factory=list)  # by tree_size
    findings: list[str] = field(default_factory=list)  # ledger-level problems
    #: from the ledger index: entries it holds (its tree, from the tiles, ends at the newest
    #: verified checkpoint); None for a full read, whose tree holds every entry
    indexed_size: int | None = None

    @property
    def size(self) -> int:
        return self.tree.size if self.indexed_size is None else self.indexed_size

    def latest_signed(self, covering: int) -> CheckpointInfo | None:
        """The latest checkpoint whose signature verifies and whose tree holds seq ``covering``."""
        for cp in reversed(self.checkpoints):
            if cp.signed and cp.tree_size > covering:
                return cp
        return None

    def first_anchored(self, covering: int) -> CheckpointInfo | None:
        """The earliest signed checkpoint holding seq ``covering`` that matches the tree and has a
        token: the tightest time bound for that entry."""
        for cp in self.checkpoints:
            if cp.signed and cp.tokens and cp.tree_size > covering and self.matches_tree(cp):
                return cp
        return None

    def matches_tree(self, cp: CheckpointInfo) -> bool:
        return cp.root is not None and cp.tree_size <= self.size and self.tree.root(cp.tree_size) == cp.root


class View(NamedTuple):
    """The fields of a LedgerEntry that identify it (cheap to decode)."""

    seq: int
    entry_hash: bytes
    event_id: str


def index_view(raw: bytes) -> View | str:
    """Decode one entries-topic record to its :class:`View`, or the reason it does not decode."""
    try:
        _, e = codec.decode(raw, expect="LedgerEntry")
    except DecodeError as exc:
        return str(exc)
    return View(e["seq"], bytes(e["entry_hash"]), e["action"]["event_id"])


#: which replay check a finding of the core about an adopted entry fails, by finding kind (a
#: gap before it is a finding about the ledger, not about the entry continuing the chain)
CHECK_OF_KIND = {Kind.CHAIN_BREAK.value: "chain", Kind.AGENT_CHAIN_BREAK.value: "agent_chain",
                 Kind.LINK_MISMATCH.value: "links"}


class Indexer:
    """Builds a :class:`Ledger` from both topics with the core's rule (``core/adoption.py``):
    the records the core adopts are the rows on chain; every other record (fork, replayed
    record, another key, tampered bytes) stays visible as a row off chain, with the finding
    that kept it out. Replay never decides by itself which record is entry N."""

    def __init__(self, keep: Callable[[Row], bool]) -> None:
        """``keep``: rows whose bytes to hold on to (the selection), so they need no second read."""
        self.ledger = Ledger()
        self._keep = keep
        self._strings: dict[str, str] = {}

    def _intern(self, value: str | None) -> str | None:
        return None if value is None else self._strings.setdefault(value, value)

    def _row(self, offset: int, raw: bytes, entry: Mapping[str, Any], on_chain: bool) -> Row:
        a = entry["action"]
        row = Row(offset, entry["seq"], a["event_id"], self._intern(a["agent_id"]), self._intern(a.get("session_id")),
                  self._intern(a["action_type"]), a["occurred_at"], entry["received_at"],
                  tuple((l["agent_id"], l["event_id"], l.get("relation") or "caused_by") for l in a.get("links") or []),
                  bytes(entry["entry_hash"]), on_chain)
        if self._keep(row):
            self.ledger.raw[offset] = raw
        return row

    def adopted(self, c: CheckedEntry) -> None:
        """The core's ``on_entry`` hook: ``c`` is entry ``c.seq``."""
        self.ledger.rows.append(self._row(c.offset, c.raw, c.entry, True))

    def finish(self, run: Adoption) -> Ledger:
        """The ledger once ``run`` has read both topics: rows, findings, tree, checkpoints."""
        led = self.ledger
        foreign = [self._row(f.offset, f.raw, f.entry, False) for f in run.foreign if f.entry is not None]
        issues = self._issues(run)
        for f in run.foreign:
            if f.entry is None:
                led.undecodable.append((f.offset, f.detail))
        led.rows = sorted(led.rows + foreign, key=lambda r: r.offset)
        reasons = {f.offset: f"{f.kind}: {f.detail}" for f in run.foreign}
        for index, row in enumerate(led.rows):
            if row.on_chain:
                led.by_event.setdefault(row.event_id, index)
                row.issues = issues.get(row.offset)
            else:
                row.issues = {"chain": f"not an entry of this ledger ({reasons[row.offset]})"}
            for link in row.links:
                led.linked_from.setdefault(link[1], []).append(index)
        led.tree = run.checker.tree
        self._attach_checkpoints(run)
        led.findings.extend(f"{f.kind.value}: {f.detail}" for f in run.findings)
        off_chain = sum(1 for r in led.rows if not r.on_chain)
        if off_chain:
            led.findings.append(f"{off_chain} record(s) on the entries topic are not entries of this ledger")
        return led

    @staticmethod
    def _issues(run: Adoption) -> dict[int, dict[str, str]]:
        """The core's findings about adopted entries, by offset, as replay's check names."""
        out: dict[int, dict[str, str]] = {}
        for f in run.findings:
            check = CHECK_OF_KIND.get(f.kind.value)
            if check and f.evidence.get("topic") == ENTRIES and "offset" in f.evidence:
                out.setdefault(int(f.evidence["offset"]), {}).setdefault(check, f.detail)
        return out

    def _attach_checkpoints(self, run: Adoption) -> None:
        led = self.ledger
        anchors: dict[bytes, list[tuple[str, bytes]]] = {}
        for a in run.anchors:
            anchors.setdefault(bytes(a.record["body_hash"]), []).append(
                (a.record["timestamp"]["tsa"], bytes(a.record["timestamp"]["token"])))
        about = run.checkpoint_findings()
        lines = run.note_lines()
        infos = []
        for c in run.checkpoints:
            rec = dict(c.record)
            body = bytes(rec["body"])
            signed = c.rejection is None
            cp = CheckpointInfo(c.offset, c.raw, rec, body, rec["tree_size"], bytes(rec["root_hash"]) if signed else None,
                                signed, [f.detail for f in about.get(c.offset, [])])
            cp.tokens = anchors.get(hashlib.sha256(body).digest(), [])
            cp.note_lines = lines.get(hashlib.sha256(body).digest(), [])
            infos.append(cp)
        led.checkpoints = sorted(infos, key=lambda c: (c.tree_size, c.offset))


def build_ledger(entries: Stream, checkpoints: Stream, selection: Selection, keys: TrustedKeys, *,
                 progress: Callable[[int], None] | None = None, notes: NoteTrust | None = None) -> Ledger:
    """Index ``entries``, then attach ``checkpoints``. Read the checkpoints topic *before*
    the entries topic when both are live: a checkpoint is committed with its entries, so
    every checkpoint read first must then be covered by the entries read after it.
    ``notes``: the log's note keys and the witnesses, whose lines checkpoints then carry."""
    indexer = Indexer(selection.matches)
    config = CheckerConfig(trusted_keys=dict(keys.by_id), **(notes or NoteTrust()).options())
    return indexer.finish(adopt(entries, checkpoints, config, indexer.adopted, progress=progress))


# --- reading from Kafka ---------------------------------------------------------------------

def end_offset(bootstrap: str, topic: str) -> int:
    """High watermark of partition 0 (for progress bars; includes transaction markers)."""
    consumer = Consumer(kafka_config(bootstrap, "reader", {"group.id": "ledgerstream-replay-watermark"}))
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)[1]
    except KafkaException as exc:
        raise ConfigError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    finally:
        consumer.close()


def read_ledger(bootstrap: str, topics: Topics, selection: Selection, keys: TrustedKeys, *,
                progress: Callable[[int], None] | None = None, notes: NoteTrust | None = None) -> Ledger:
    """Replay ``entries`` and ``checkpoints`` from Kafka (checkpoints first, see build_ledger)."""
    checkpoints = list(read_partition(bootstrap, topics.checkpoints))
    return build_ledger(read_partition(bootstrap, topics.entries), checkpoints, selection, keys, progress=progress,
                        notes=notes)


def kafka_fetch(bootstrap: str, topic: str) -> Fetch:
    """A :data:`Fetch` that re-reads chosen offsets, seeking once per run of nearby offsets."""

    def fetch(offsets: list[int]) -> dict[int, bytes]:
        wanted = sorted(set(offsets))
        runs: list[list[int]] = []
        for o in wanted:
            if runs and o - runs[-1][-1] <= 1000:
                runs[-1].append(o)
            else:
                runs.append([o])
        got: dict[int, bytes] = {}
        for run in runs:
            want = set(run)
            for offset, raw in read_partition(bootstrap, topic, start=run[0]):
                if offset in want:
                    got[offset] = raw
                if offset >= run[-1]:
                    break
        return got

    return fetch


# --- selection over the index -----------------------------------------------------------------

def select(ledger: Ledger, selection: Selection) -> list[Row]:
    """Rows matching the filters, plus (``follow_links``) their causal closure across agents:
    every event linked to or from a selected one, transitively. Ordered by offset."""
    chosen = {i for i, row in enumerate(ledger.rows) if selection.matches(row)}
    if selection.follow_links:
        queue = deque(chosen)
        while queue:
            row = ledger.rows[queue.popleft()]
            neighbours = [ledger.by_event.get(event_id) for _, event_id, _ in row.links]
            neighbours += ledger.linked_from.get(row.event_id, [])
            for n in neighbours:
                if n is not None and n not in chosen:
                    chosen.add(n)
                    queue.append(n)
    return [ledger.rows[i] for i in sorted(chosen)]


def ensure_raw(ledger: Ledger, rows: list[Row], fetch: Fetch) -> None:
    """Fetch the bytes of rows the index did not keep (closure members outside the filters)."""
    missing = [r.offset for r in rows if r.offset not in ledger.raw]
    if missing:
        got = fetch(missing)
        lost = [o for o in missing if o not in got]
        if lost:
            raise ConfigError(f"could not re-read entries topic offsets {lost[:10]}")
        ledger.raw.update(got)


# --- per-entry checks -------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    status: str  # ok | fail | skip
    detail: str = ""


@dataclass
class EntryReport:
    row: Row
    entry: dict[str, Any]
    checks: dict[str, Check]
    checkpoint_size: int | None  # tree size of the checkpoint the inclusion was checked against
    anchored_at: str | None  # TSA genTime bounding the entry's existence (ISO 8601)

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, c in self.checks.items() if c.status == FAIL]


class EntryChecker:
    """Re-verifies shown entries against the index, the trusted keys and the TSA CA."""

    def __init__(self, ledger: Ledger, keys: TrustedKeys, tsa_ca_pem: bytes | None) -> None:
        self.ledger = ledger
        self.keys = keys
        self.tsa_ca_pem = tsa_ca_pem
        self._anchor_cache: dict[int, tuple[Check, str | None]] = {}

    def check(self, row: Row) -> EntryReport:
        _, entry = codec.decode(self.ledger.raw[row.offset], expect="LedgerEntry")
        computed = records.entry_hash(entry)
        stored = bytes(entry["entry_hash"])
        issues = row.issues or {}
        checks = {
            "entry_hash": Check(OK) if computed == stored else Check(
                FAIL, f"stored {stored.hex()} but the record hashes to {computed.hex()}"),
            "signature": self._signature(entry, computed),
            "payload": _payload(entry["action"]),
            "chain": Check(FAIL, issues["chain"]) if "chain" in issues else Check(OK),
            "agent_chain": _from_issues(row, issues, "agent_chain"),
            "links": _from_issues(row, issues, "links"),
        }
        cp = self.ledger.latest_signed(row.seq)
        checks["inclusion"] = self._inclusion(row, computed, cp)
        checks["timestamp"], anchored_at = self._timestamp(row, entry, computed)
        return EntryReport(row, entry, checks, cp.tree_size if cp else None, anchored_at)

    def _signature(self, entry: dict[str, Any], computed: bytes) -> Check:
        if entry.get("signature") is None:
            return Check(SKIP, "checkpoint signing mode: covered by the signed checkpoint")
        try:
            self.keys.get(entry["key_id"]).verify(bytes(entry["signature"]), records.entry_signing_message(computed))
        except VerificationError as exc:
            return Check(FAIL, str(exc))
        return Check(OK)

    def _inclusion(self, row: Row, computed: bytes, cp: CheckpointInfo | None) -> Check:
        if not row.on_chain:
            return Check(FAIL, "not on the hash chain, so in no checkpoint")
        if cp is None:
            return Check(SKIP, "not yet covered by a signed checkpoint")
        if cp.tree_size > self.ledger.size or cp.root is None:
            return Check(FAIL, f"checkpoint {cp.tree_size}: {'; '.join(cp.problems)}")
        proof = self.ledger.tree.inclusion_proof(row.seq, cp.tree_size)
        try:
            merkle.verify_inclusion(merkle.leaf_hash(records.merkle_leaf_input(computed)), row.seq,
                                    cp.tree_size, proof, cp.root)
        except VerificationError as exc:
            return Check(FAIL, f"checkpoint {cp.tree_size}: {exc}")
        return Check(OK, f"checkpoint {cp.tree_size}")

    def _timestamp(self, row: Row, entry: dict[str, Any], computed: bytes) -> tuple[Check, str | None]:
        if self.tsa_ca_pem is None:
            return Check(SKIP, "no TSA CA to check tokens (pass --tsa-ca)"), None
        if entry.get("timestamp_token") is not None:
            try:
                info = verify_timestamp(bytes(entry["timestamp_token"]), computed, self.tsa_ca_pem)
            except TimestampError as exc:
                return Check(FAIL, f"entry token: {exc}"), None
            return Check(OK, "entry's own token"), iso_time(info.gen_time)
        cp = self.ledger.first_anchored(row.seq) if row.on_chain else None
        if cp is None:
            return Check(SKIP, "no timestamped checkpoint covers it yet"), None
        if cp.offset not in self._anchor_cache:
            self._anchor_cache[cp.offset] = self._verify_tokens(cp, self.tsa_ca_pem)
        return self._anchor_cache[cp.offset]

    @staticmethod
    def _verify_tokens(cp: CheckpointInfo, ca_pem: bytes) -> tuple[Check, str | None]:
        """Every token of the checkpoint must verify; the earliest genTime bounds its entries."""
        times = []
        for tsa, token in cp.tokens:
            try:
                times.append(verify_timestamp(token, cp.body, ca_pem).gen_time)
            except TimestampError as exc:
                return Check(FAIL, f"checkpoint {cp.tree_size} token from {tsa}: {exc}"), None
        return Check(OK, f"checkpoint {cp.tree_size}"), iso_time(min(times))


def _from_issues(row: Row, issues: dict[str, str], name: str) -> Check:
    if name in issues:
        return Check(FAIL, issues[name])
    if not row.on_chain:
        return Check(SKIP, "not on the hash chain")
    return Check(OK)


def _payload(action: dict[str, Any]) -> Check:
    payload, salt = action.get("payload"), action.get("payload_salt")
    if payload is None and salt is None:
        return Check(SKIP, "payload erased or hash-only")
    if payload is None or salt is None:
        return Check(FAIL, "payload and payload_salt must be present together")
    try:
        computed = records.payload_commitment(bytes(salt), bytes(payload))
    except ValueError as exc:
        return Check(FAIL, str(exc))
    if computed != bytes(action["payload_hash"]):
        return Check(FAIL, f"payload_hash {bytes(action['payload_hash']).hex()} does not commit to the payload "
                           f"(computed {computed.hex()})")
    return Check(OK)


def check_all(checker: EntryChecker, rows: list[Row],
              progress: Callable[[int], None] | None = None) -> Iterator[EntryReport]:
    for row in rows:
        yield checker.check(row)
        if progress is not None:
            progress(1)


def iso_time(value: int | dt.datetime | None) -> str | None:
    """Microseconds since the epoch (or an aware datetime) as ISO 8601 UTC with a Z."""
    if value is None:
        return None
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromtimestamp(value / 1_000_000, dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
