"""Replay the ledger for forensics: index it once, select entries, re-verify what is shown.

Why this shape: a ledger can hold millions of entries, but a responder looks at a few.
So one streaming pass decodes each record once and keeps only what selection, link
closure and proofs need (a small row, the stored entry hash as a Merkle leaf, chain
flags); the expensive checks (RFC 8785 re-hash, ML-DSA, proofs, RFC 3161) run only on
entries that are shown. I/O is injected (iterables of ``(offset, bytes)`` and a fetch
function), so the index and the checks are pure and testable without Kafka.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import multiprocessing
import os
import re
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from confluent_kafka import Consumer, KafkaException, TopicPartition

from ledgerstream.core import codec, merkle, mldsa, records
from ledgerstream.core.config import Topics
from ledgerstream.core.errors import ConfigError, DecodeError, TimestampError, VerificationError
from ledgerstream.core.timestamp import verify_timestamp
from ledgerstream.core.topic_reader import read_partition
from ledgerstream.core.kafka_security import kafka_config

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
    on_chain: bool  # continued the hash chain, so it is leaf ``seq`` of the tree
    issues: dict[str, str] | None = None  # failures found while indexing: chain, agent_chain, links


@dataclass
class CheckpointInfo:
    """One Checkpoint record and what was established about it."""

    offset: int
    raw: bytes
    record: dict[str, Any]
    body: bytes
    tree_size: int
    root: bytes | None  # from the signed body (None if the body does not parse)
    signed: bool  # body parses, agrees with the record, key trusted, signature verifies
    problems: list[str] = field(default_factory=list)
    tokens: list[tuple[str, bytes]] = field(default_factory=list)  # (tsa, DER TimeStampResp)


@dataclass
class Ledger:
    """The replayed ledger: rows, the main chain's tree, checkpoints and their anchors."""

    rows: list[Row] = field(default_factory=list)
    undecodable: list[tuple[int, str]] = field(default_factory=list)  # (offset, reason)
    by_event: dict[str, int] = field(default_factory=dict)  # event_id -> row index (on chain)
    linked_from: dict[str, list[int]] = field(default_factory=dict)  # event_id -> rows linking to it
    hashes: bytearray = field(default_factory=bytearray)  # seq -> stored entry_hash (32 bytes each)
    tree: merkle.MerkleTree = field(default_factory=merkle.MerkleTree)
    raw: dict[int, bytes] = field(default_factory=dict)  # offset -> bytes, for kept records
    checkpoints: list[CheckpointInfo] = field(default_factory=list)  # by tree_size
    findings: list[str] = field(default_factory=list)  # ledger-level problems

    @property
    def size(self) -> int:
        return self.tree.size

    def stored_hash(self, seq: int) -> bytes:
        return bytes(self.hashes[32 * seq:32 * seq + 32])

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
    """The fields of a LedgerEntry the index needs: small, so decoding workers can send it back."""

    seq: int
    prev_hash: bytes
    entry_hash: bytes
    received_at: int
    agent_seq: int
    agent_prev_hash: bytes
    resolved_links: tuple[tuple[str, str, str, int | None, bytes | None], ...]
    event_id: str
    agent_id: str
    session_id: str | None
    action_type: str
    occurred_at: int
    links: tuple[tuple[str, str, str], ...]


def index_view(raw: bytes) -> View | str:
    """Decode one entries-topic record to its :class:`View`, or the reason it does not decode."""
    try:
        _, e = codec.decode(raw, expect="LedgerEntry")
    except DecodeError as exc:
        return str(exc)
    a = e["action"]
    return View(e["seq"], bytes(e["prev_hash"]), bytes(e["entry_hash"]), e["received_at"], e["agent_seq"],
                bytes(e["agent_prev_hash"]),
                tuple((r["agent_id"], r["event_id"], r["status"], r.get("seq"),
                       None if r.get("entry_hash") is None else bytes(r["entry_hash"]))
                      for r in e.get("resolved_links") or []),
                a["event_id"], a["agent_id"], a.get("session_id"), a["action_type"], a["occurred_at"],
                tuple((l["agent_id"], l["event_id"], l.get("relation", "caused_by")) for l in a.get("links") or []))


def _index_views(raws: list[bytes]) -> list[View | str]:
    return [index_view(raw) for raw in raws]


def decoded(stream: Stream, workers: int = 0, batch: int = 2000) -> Iterator[tuple[int, bytes, View | str]]:
    """``(offset, bytes, view)`` in topic order; with ``workers`` > 1 the Avro decoding (the
    bulk of indexing) runs in that many processes while this one keeps the chain in order."""
    if workers <= 1:
        for offset, raw in stream:
            yield offset, raw, index_view(raw)
        return
    # spawn, not fork: the caller holds librdkafka threads, which must not be forked
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: deque[tuple[list[tuple[int, bytes]], Future[list[View | str]]]] = deque()
        chunk: list[tuple[int, bytes]] = []
        for item in stream:
            chunk.append(item)
            if len(chunk) == batch:
                pending.append((chunk, pool.submit(_index_views, [raw for _, raw in chunk])))
                chunk = []
                while len(pending) > 2 * workers:
                    yield from _drain(pending.popleft())
        if chunk:
            pending.append((chunk, pool.submit(_index_views, [raw for _, raw in chunk])))
        while pending:
            yield from _drain(pending.popleft())


def _drain(item: tuple[list[tuple[int, bytes]], Future[list[View | str]]]) -> Iterator[tuple[int, bytes, View | str]]:
    chunk, future = item
    for (offset, raw), view in zip(chunk, future.result()):
        yield offset, raw, view


def decode_workers(records_count: int) -> int:
    """Decoding processes worth starting for ``records_count`` records: none below 50,000
    (spawning costs about a second) or on fewer than 4 CPUs, where the main process, Kafka's
    threads and the workers only compete (measured: no gain on 2 CPUs)."""
    cpus = os.cpu_count() or 1
    return min(8, cpus - 1) if cpus >= 4 and records_count >= 50_000 else 0


class Indexer:
    """Builds a :class:`Ledger` from the entries topic in one pass (checkpoints added after).

    The main chain is the sequence of records that continue it (``seq`` is the next one and
    ``prev_hash`` is the stored hash of the previous one), as the signer itself rebuilds
    it; any other record (fork, replay, gap) stays visible as a row that is not on chain.
    """

    def __init__(self, keep: Callable[[Row], bool]) -> None:
        """``keep``: rows whose bytes to hold on to (the selection), so they need no second read."""
        self.ledger = Ledger()
        self._keep = keep
        self._head = records.ZERO_HASH
        self._agents: dict[str, tuple[int, bytes]] = {}
        self._strings: dict[str, str] = {}

    def _intern(self, value: str | None) -> str | None:
        return None if value is None else self._strings.setdefault(value, value)

    def add(self, offset: int, raw: bytes, view: View | str | None = None) -> None:
        """Index one record; ``view`` is its :func:`index_view` if a worker already decoded it."""
        led = self.ledger
        view = index_view(raw) if view is None else view
        if isinstance(view, str):
            led.undecodable.append((offset, view))
            return
        seq, stored = view.seq, view.entry_hash
        row = Row(offset, seq, view.event_id, self._intern(view.agent_id), self._intern(view.session_id),
                  self._intern(view.action_type), view.occurred_at, view.received_at, view.links, False)
        index = len(led.rows)
        led.rows.append(row)
        expected = led.size
        if len(stored) != records.HASH_LEN:
            row.issues = {"chain": f"entry_hash has {len(stored)} bytes, not {records.HASH_LEN}"}
        elif seq != expected or view.prev_hash != self._head:
            row.issues = {"chain": self._chain_break(view, expected)}
        elif view.event_id in led.by_event:
            row.issues = {"chain": f"event_id {view.event_id} is already on the ledger at seq "
                                   f"{led.rows[led.by_event[view.event_id]].seq}"}
        else:
            self._integrate(row, index, view)
        for link in row.links:
            led.linked_from.setdefault(link[1], []).append(index)
        if self._keep(row):
            led.raw[offset] = raw

    def _chain_break(self, view: View, expected: int) -> str:
        if view.seq < expected:
            return f"seq {view.seq} is already on the ledger (fork or replayed record)"
        if view.seq > expected:
            return f"gap: expected seq {expected}, found {view.seq}"
        return (f"prev_hash {view.prev_hash.hex()[:16]} is not the hash of seq {view.seq - 1} "
                f"({self._head.hex()[:16]})")

    def _integrate(self, row: Row, index: int, view: View) -> None:
        led = self.ledger
        row.on_chain = True
        stored = view.entry_hash
        led.tree.append(merkle.leaf_hash(records.merkle_leaf_input(stored)))
        led.hashes += stored
        led.by_event[row.event_id] = index
        self._head = stored
        issues: dict[str, str] = {}
        want_seq, want_prev = self._agents.get(row.agent_id, (0, records.ZERO_HASH))
        if view.agent_seq != want_seq or view.agent_prev_hash != want_prev:
            issues["agent_chain"] = (f"agent {row.agent_id}: agent_seq {view.agent_seq} / agent_prev_hash "
                                     f"{view.agent_prev_hash.hex()[:16]}, expected {want_seq} / {want_prev.hex()[:16]}")
        self._agents[row.agent_id] = (view.agent_seq + 1, stored)
        problem = self._links_problem(row, view)
        if problem:
            issues["links"] = problem
        row.issues = issues or None

    def _links_problem(self, row: Row, view: View) -> str | None:
        led = self.ledger
        if [(r[0], r[1]) for r in view.resolved_links] != [(l[0], l[1]) for l in row.links]:
            return "resolved_links do not mirror action.links"
        for agent_id, event_id, status, seq, entry_hash in view.resolved_links:
            if status != "resolved":
                continue
            target = led.by_event.get(event_id)
            if target is None:
                return f"link to {agent_id}/{event_id} is marked resolved but that event is not on the ledger"
            t = led.rows[target]
            if t.agent_id != agent_id or t.seq != seq or led.stored_hash(t.seq) != (entry_hash or b""):
                return (f"resolved link to {event_id} names seq {seq} / agent {agent_id}, "
                        f"but the ledger has it at seq {t.seq} / agent {t.agent_id} with another hash")
        return None

    def finish(self, checkpoints: Stream, keys: TrustedKeys) -> Ledger:
        """Attach the checkpoints topic (Checkpoint and TimestampAnchor records)."""
        led = self.ledger
        anchors: dict[bytes, list[tuple[str, bytes]]] = {}
        for offset, raw in checkpoints:
            try:
                name, rec = codec.decode(raw, expect=("Checkpoint", "TimestampAnchor"))
            except DecodeError as exc:
                led.findings.append(f"checkpoints topic offset {offset}: {exc}")
                continue
            if name == "TimestampAnchor":
                token = (rec["timestamp"]["tsa"], bytes(rec["timestamp"]["token"]))
                anchors.setdefault(bytes(rec["body_hash"]), []).append(token)
            else:
                led.checkpoints.append(_checkpoint_info(offset, raw, rec, keys))
        led.checkpoints.sort(key=lambda c: (c.tree_size, c.offset))
        for cp in led.checkpoints:
            cp.tokens = anchors.get(hashlib.sha256(cp.body).digest(), [])
            if cp.tree_size > led.size:
                cp.problems.append(f"claims {cp.tree_size} entries but the chain has {led.size}")
            elif cp.root is not None and not led.matches_tree(cp):
                cp.problems.append(f"root does not match the entries 0..{cp.tree_size - 1} on the topic")
            led.findings.extend(f"checkpoint {cp.tree_size} (offset {cp.offset}): {p}" for p in cp.problems)
        breaks = sum(1 for r in led.rows if not r.on_chain)
        if breaks:
            led.findings.append(f"{breaks} record(s) on the entries topic do not continue the chain")
        led.findings.extend(f"entries topic offset {o}: {why}" for o, why in led.undecodable)
        return led


def _checkpoint_info(offset: int, raw: bytes, rec: dict[str, Any], keys: TrustedKeys) -> CheckpointInfo:
    body = bytes(rec["body"])
    cp = CheckpointInfo(offset, raw, rec, body, rec["tree_size"], None, False)
    try:
        parsed = records.parse_checkpoint_body(body)
    except ValueError as exc:
        cp.problems.append(f"body does not parse: {exc}")
        return cp
    cp.root = parsed["root_hash"]
    fields = {"origin": rec["origin"], "tree_size": rec["tree_size"], "root_hash": bytes(rec["root_hash"]),
              "chain_head": bytes(rec["chain_head"]), "created_at": rec["created_at"]}
    differing = [k for k, v in fields.items() if parsed[k] != v]
    if differing:
        cp.problems.append(f"record fields {differing} differ from the signed body")
        cp.tree_size = parsed["tree_size"]
        return cp
    try:
        keys.get(rec["key_id"]).verify(bytes(rec["signature"]), body)
    except VerificationError as exc:
        cp.problems.append(str(exc))
        return cp
    cp.signed = True
    return cp


def build_ledger(entries: Stream, checkpoints: Stream, selection: Selection, keys: TrustedKeys, *,
                 workers: int = 0) -> Ledger:
    """Index ``entries``, then attach ``checkpoints``. Read the checkpoints topic *before*
    the entries topic when both are live: a checkpoint is committed with its entries, so
    every checkpoint read first must then be covered by the entries read after it."""
    indexer = Indexer(selection.matches)
    for offset, raw, view in decoded(entries, workers):
        indexer.add(offset, raw, view)
    return indexer.finish(checkpoints, keys)


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
                progress: Callable[[int], None] | None = None, workers: int = 0) -> Ledger:
    """Replay ``entries`` and ``checkpoints`` from Kafka (checkpoints first, see build_ledger)."""
    checkpoints = list(read_partition(bootstrap, topics.checkpoints))
    indexer = Indexer(selection.matches)
    last = 0
    for offset, raw, view in decoded(read_partition(bootstrap, topics.entries), workers):
        indexer.add(offset, raw, view)
        if progress is not None:
            progress(offset + 1 - last)
            last = offset + 1
    return indexer.finish(checkpoints, keys)


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


# --- keys and trust ---------------------------------------------------------------------------

class TrustedKeys:
    """Signer public keys by key_id, with where each came from (evidence for reports)."""

    def __init__(self) -> None:
        self.by_id: dict[str, mldsa.PublicKey] = {}
        self.sources: dict[str, str] = {}

    def add_pem(self, path: Path) -> None:
        try:
            key = mldsa.load_public_key(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read trusted key {path}: {exc.strerror or exc}") from exc
        self.by_id[key.key_id] = key
        self.sources.setdefault(key.key_id, str(path))

    def get(self, key_id: str) -> mldsa.PublicKey:
        try:
            return self.by_id[key_id]
        except KeyError:
            raise VerificationError(f"key_id {key_id[:16]} is not a trusted signer key", kind="unknown_key",
                                    key_id=key_id, trusted=sorted(self.by_id)) from None

    @classmethod
    def load(cls, home: Path, extra: Iterable[Path] = ()) -> TrustedKeys:
        """HOME/keys/signer.pub.pem and HOME/keys/trusted/*.pem if present, and each ``extra`` PEM."""
        keys = cls()
        keys_dir = home / "keys"
        for path in [keys_dir / "signer.pub.pem", *sorted((keys_dir / "trusted").glob("*.pem"))]:
            if path.exists():
                keys.add_pem(path)
        for path in extra:
            keys.add_pem(Path(path))
        if not keys.by_id:
            raise ConfigError(f"no trusted signer keys: none in {keys_dir}/signer.pub.pem or "
                              f"{keys_dir}/trusted/*.pem; pass --trusted-key PEM")
        return keys


def tsa_ca(home: Path, explicit: Path | None) -> bytes | None:
    """The TSA CA bundle: --tsa-ca, else HOME/tsa/ca.pem (dev stack), else None."""
    path = explicit or home / "tsa" / "ca.pem"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"TSA CA {explicit} does not exist") from None
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read TSA CA {path}: {exc.strerror or exc}") from exc


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
