"""Typed reads of the ledger index, for ``show``, ``prove``, ``replay``, ``agents``, ``export``.

Every function takes a read-only connection (:func:`open_index`) and runs one indexed SQLite
query: O(log n) for a lookup, O(log n + k) for k rows (``EXPLAIN QUERY PLAN`` of each is
checked by tests/unit/test_index_query.py). Lists are ordered and limited; pass the last
row's seq (or ``time`` and seq for :func:`entries_by_filter`) to get the next page.

Raw record bytes are **not** in the database: an entry row keeps the record's ``topic_offset``
on the single-partition ``entries`` topic (kept forever, retention -1) and the SHA-256 of its
bytes. :func:`raw_entry` fetches the record from Kafka by offset (one seek, one fetch) and
checks it against that digest, so the bytes a tool shows are exactly the bytes indexed. This
keeps the index at about a sixth of the ledger's size (≈630 bytes per entry against ≈3.7 KB
per record, 3.3 KB of it the ML-DSA-65 signature) and one copy of the evidence, in Kafka.
"""
from __future__ import annotations

import hashlib
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

from ledgerstream.core.errors import ConfigError
from ledgerstream.core.verify import CheckerConfig
from ledgerstream.core.verify.checkpoints import NoteLine, note_signature_key, note_signature_line
from ledgerstream.index.db import get_meta, open_db
from ledgerstream.index.paths import IndexPaths

Direction = Literal["out", "in", "both"]
DEFAULT_LIMIT = 100


@dataclass(frozen=True)
class Entry:
    """One indexed entry (the genuine ledger's entry ``seq``)."""

    seq: int
    event_id: str
    event_id_reused: bool        # True: an earlier seq holds the same event id (signer dedup horizon)
    entry_hash: bytes
    topic_offset: int            # where the LedgerEntry record is on the entries topic
    record_size: int
    record_sha256: bytes
    agent_id: str
    agent_seq: int
    session_id: str | None
    action_type: str
    time: int                    # received_at, µs since the epoch (ledger time)
    occurred_at: int
    key_id: str
    signed: bool
    payload_hash: bytes
    checkpoint_size: int | None   # first verified checkpoint covering the entry
    checkpoint_offset: int | None

    @classmethod
    def _from_row(cls, row: tuple) -> "Entry":
        (seq, event_id, reused, entry_hash, offset, size, digest, agent, agent_seq, session, action_type, t,
         occurred, key_id, signed, payload_hash, cp_size, cp_offset) = row
        return cls(seq, event_id if event_id is not None else reused, event_id is None, bytes(entry_hash), offset,
                   size, bytes(digest), agent, agent_seq, session, action_type, t, occurred, key_id, bool(signed),
                   bytes(payload_hash), cp_size, cp_offset)


@dataclass(frozen=True)
class Link:
    from_seq: int
    position: int
    to_agent_id: str
    to_event_id: str
    relation: str
    to_seq: int | None           # None while the Checker has not resolved it


@dataclass(frozen=True)
class Checkpoint:
    topic_offset: int
    tree_size: int
    root_hash: bytes
    chain_head: bytes
    created_at: int
    origin: str
    key_id: str
    body: bytes
    signature: bytes
    status: str                  # pending | verified | unconfirmed | failed
    finding: str | None

    def record(self) -> dict[str, Any]:
        """As the Checkpoint record it was decoded from."""
        return {"tree_size": self.tree_size, "root_hash": self.root_hash, "chain_head": self.chain_head,
                "created_at": self.created_at, "origin": self.origin, "key_id": self.key_id, "body": self.body,
                "signature": self.signature}


@dataclass(frozen=True)
class Anchor:
    topic_offset: int
    tree_size: int
    body_sha256: bytes
    tsa: str
    gen_time: int | None
    created_at: int
    status: str                  # pending | verified | unchecked | failed | orphan
    finding: str | None


@dataclass(frozen=True)
class ForeignRecord:
    topic: str
    topic_offset: int
    kind: str
    detail: str
    claimed_seq: int | None
    entry_hash: bytes | None
    key_id: str | None
    agent_id: str | None
    event_id: str | None
    record_size: int
    record_sha256: bytes


_ENTRY_COLUMNS = ("seq, event_id, event_id_reused, entry_hash, topic_offset, record_size, record_sha256, agent_id, "
                  "agent_seq, session_id, action_type, time, occurred_at, key_id, signed, payload_hash, "
                  "checkpoint_size, checkpoint_offset")
_CHECKPOINT_COLUMNS = ("topic_offset, tree_size, root_hash, chain_head, created_at, origin, key_id, body, signature, "
                       "status, finding")


def open_index(home: Path | None = None, *, paths: IndexPaths | None = None) -> sqlite3.Connection:
    """A read-only connection to the index of ``home`` (or ``paths``); ConfigError if there is none."""
    if paths is None:
        from ledgerstream.core import config

        paths = IndexPaths.of(home or config.home())
    if not paths.db.exists():
        raise ConfigError(f"no ledger index at {paths.db}: run 'ledgerstream index run'")
    return open_db(paths.db, readonly=True)


def _entries(conn: sqlite3.Connection, where: str, args: Iterable, tail: str = "") -> list[Entry]:
    sql = f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE {where} {tail}"  # noqa: S608 - fixed fragments
    return [Entry._from_row(row) for row in conn.execute(sql, tuple(args))]


def _one(rows: list) -> object | None:
    return rows[0] if rows else None


def indexed_size(conn: sqlite3.Connection) -> int:
    """Entries [0, indexed_size) are indexed (an entry row each, or a ``missing`` row for a gap)."""
    return int(get_meta(conn, "indexed_size", 0))


def missing_count(conn: sqlite3.Connection) -> int:
    """How many seqs below :func:`indexed_size` are gaps (no record was seen): O(gaps)."""
    return int(conn.execute("SELECT COUNT(*) FROM missing").fetchone()[0])


def tiles_size(conn: sqlite3.Connection) -> int:
    """Size of the tile tree: the newest verified checkpoint's tree size."""
    return int(get_meta(conn, "tiles_size", 0))


def entry_by_seq(conn: sqlite3.Connection, seq: int) -> Entry | None:
    return _one(_entries(conn, "seq = ?", (seq,)))  # type: ignore[return-value]


def entry_by_event_id(conn: sqlite3.Connection, event_id: str) -> Entry | None:
    """The entry of ``event_id`` (the first, if the signer sequenced it again after its dedup horizon)."""
    return _one(_entries(conn, "event_id = ?", (event_id,)))  # type: ignore[return-value]


def entries_by_event_id(conn: sqlite3.Connection, event_id: str) -> list[Entry]:
    """Every entry of ``event_id``, in seq order (more than one only past the signer's dedup horizon)."""
    first = entry_by_event_id(conn, event_id)
    later = _entries(conn, "event_id_reused = ?", (event_id,), "ORDER BY seq")
    return ([first] if first else []) + later


def entry_by_agent_seq(conn: sqlite3.Connection, agent_id: str, agent_seq: int) -> Entry | None:
    """Entry number ``agent_seq`` of the agent's own chain."""
    return _one(_entries(conn, "agent_id = ? AND agent_seq = ?", (agent_id, agent_seq), "ORDER BY seq LIMIT 1"))  # type: ignore[return-value]


def entries_by_agent(conn: sqlite3.Connection, agent_id: str, after_seq: int = -1,
                     limit: int = DEFAULT_LIMIT) -> list[Entry]:
    """The agent's entries with ledger seq > ``after_seq``, in seq order, at most ``limit``."""
    return _entries(conn, "agent_id = ? AND seq > ?", (agent_id, after_seq), f"ORDER BY seq LIMIT {int(limit)}")


def entries_by_session(conn: sqlite3.Connection, session_id: str, after_seq: int = -1,
                       limit: int = DEFAULT_LIMIT) -> list[Entry]:
    """The session's entries with seq > ``after_seq``, in seq order, at most ``limit``."""
    return _entries(conn, "session_id = ? AND seq > ?", (session_id, after_seq), f"ORDER BY seq LIMIT {int(limit)}")


def entries_by_filter(conn: sqlite3.Connection, action_type: str | None = None, since: int | None = None,
                      until: int | None = None, limit: int = DEFAULT_LIMIT, after_seq: int = -1) -> list[Entry]:
    """Entries of ``action_type`` (any if None) with ``since <= time < until`` (µs; open
    ends if None), ordered by (time, seq), at most ``limit``. Next page: ``since=last.time,
    after_seq=last.seq`` (rows at ``since`` are then taken only past ``after_seq``)."""
    where, args = [], []
    if action_type is not None:
        where.append("action_type = ?")
        args.append(action_type)
    lower = since if since is not None else -(2 ** 63)
    where.append("time >= ?")
    args.append(lower)
    if until is not None:
        where.append("time < ?")
        args.append(until)
    if after_seq >= 0:
        where.append("(time > ? OR seq > ?)")
        args += [lower, after_seq]
    index = "entries_action_time" if action_type is not None else "entries_time"
    sql = (f"SELECT {_ENTRY_COLUMNS} FROM entries INDEXED BY {index} WHERE {' AND '.join(where)} "  # noqa: S608
           f"ORDER BY time, seq LIMIT {int(limit)}")
    return [Entry._from_row(row) for row in conn.execute(sql, args)]


def entries_in_range(conn: sqlite3.Connection, seq_from: int, seq_to: int, limit: int = DEFAULT_LIMIT) -> list[Entry]:
    """Entries with ``seq_from <= seq <= seq_to``, in seq order, at most ``limit``."""
    return _entries(conn, "seq >= ? AND seq <= ?", (seq_from, seq_to), f"ORDER BY seq LIMIT {int(limit)}")


def action_types(conn: sqlite3.Connection) -> list[str]:
    """The distinct action types on the ledger, sorted: one index seek per type (a loose
    index scan over ``entries_action_time``), O(d log n) for d types, never a table scan."""
    found: list[str] = []
    while True:
        row = conn.execute("SELECT action_type FROM entries INDEXED BY entries_action_time WHERE action_type > ? "
                           "ORDER BY action_type LIMIT 1", (found[-1] if found else "",)).fetchone()
        if row is None:
            return found
        found.append(row[0])


@dataclass(frozen=True)
class AgentSummary:
    """One ``agents`` row: an agent's entries and chain head, kept by the follower per batch."""

    agent_id: str
    entries: int
    first_seq: int
    last_seq: int
    first_time: int              # received_at of its first entry, µs
    last_time: int
    last_occurred_at: int        # the agent's clock at its latest action, µs
    last_action: str
    head_hash: bytes


def agents(conn: sqlite3.Connection) -> list[AgentSummary]:
    """Every agent of the ledger, by agent id: O(A), one row each."""
    return [AgentSummary(a, n, f, last, ft, lt, lo, act, bytes(h)) for a, n, f, last, ft, lt, lo, act, h in conn.execute(
        "SELECT * FROM agents ORDER BY agent_id")]


def agent_calls(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    """Resolved cross-agent links per (caller, callee) agent pair: the call graph, O(edges)."""
    return {(a, b): int(n) for a, b, n in conn.execute("SELECT caller, callee, calls FROM agent_calls")}


def recent_calls(conn: sqlite3.Connection, limit: int) -> list[tuple[int, str, int, str]]:
    """The newest ``limit`` resolved links as (caller_seq, caller, callee_seq, callee), oldest
    first: seeks on ``links_resolved`` and the entries' primary key, O(limit log n)."""
    rows = conn.execute(
        "SELECT l.to_seq, t.agent_id, l.from_seq, f.agent_id FROM links AS l INDEXED BY links_resolved "
        "JOIN entries AS f ON f.seq = l.from_seq JOIN entries AS t ON t.seq = l.to_seq "
        "WHERE l.to_seq IS NOT NULL ORDER BY l.from_seq DESC, l.position DESC LIMIT ?", (limit,)).fetchall()
    return [(int(a), b, int(c), d) for a, b, c, d in reversed(rows)]


def entries_since(conn: sqlite3.Connection, since: int) -> int:
    """How many entries have ledger time >= ``since`` (µs): O(k) on ``entries_time``."""
    return int(conn.execute("SELECT COUNT(*) FROM entries INDEXED BY entries_time WHERE time >= ?",
                            (since,)).fetchone()[0])


def finding_counts_by_agent(conn: sqlite3.Connection, kind: str) -> dict[str, int]:
    """How many findings of ``kind`` name each agent (``findings_kind``: O(findings of that kind))."""
    return {a: int(n) for a, n in conn.execute(
        "SELECT agent_id, COUNT(*) FROM findings WHERE kind = ? AND agent_id IS NOT NULL GROUP BY agent_id", (kind,))}


def recent_checkpoints(conn: sqlite3.Connection, limit: int) -> list[Checkpoint]:
    """The newest ``limit`` checkpoint records of a trusted key, whatever their status, newest first."""
    return [c for c in (_checkpoint(row) for row in conn.execute(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY topic_offset DESC LIMIT ?",  # noqa: S608
        (limit,))) if c is not None]


def recent_foreign(conn: sqlite3.Connection, topic: str, limit: int) -> list[ForeignRecord]:
    """The newest ``limit`` foreign records of ``topic``, oldest first (a primary-key range)."""
    rows = conn.execute("SELECT * FROM foreign_records WHERE topic = ? ORDER BY topic_offset DESC LIMIT ?",
                        (topic, limit)).fetchall()
    return [_foreign(row) for row in reversed(rows)]


def entry_findings(conn: sqlite3.Connection, seq: int) -> list[tuple[str, str]]:
    """(kind, detail) of the index's findings about entry ``seq``, oldest first."""
    return list(conn.execute("SELECT kind, detail FROM findings WHERE seq_from = ? ORDER BY topic_offset, finding_id",
                             (seq,)))


def finding_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """How many findings the index recorded, by kind (findings are incidents: few)."""
    return dict(conn.execute("SELECT kind, COUNT(*) FROM findings GROUP BY kind ORDER BY kind"))


def first_anchored_checkpoint(conn: sqlite3.Connection, seq: int, accepted: Iterable[str]) -> Checkpoint | None:
    """The smallest verified checkpoint including entry ``seq`` that has an anchor whose
    status is in ``accepted``: the tightest RFC 3161 time bound for that entry. Walks the
    covering index ``checkpoints_verified_body`` (no checkpoint row is read until the match;
    an index written before it existed falls back to ``checkpoints_verified``)."""
    states = list(accepted)
    sql = (f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints c {{hint}} WHERE status = 'verified' AND tree_size > ? "
           f"AND EXISTS (SELECT 1 FROM anchors a WHERE a.body_sha256 = c.body_sha256 AND a.status IN "
           f"({','.join('?' * len(states))})) ORDER BY tree_size LIMIT 1")
    try:
        row = conn.execute(sql.format(hint="INDEXED BY checkpoints_verified_body"), (seq, *states)).fetchone()
    except sqlite3.OperationalError:  # no such index: an index built by an older version
        row = conn.execute(sql.format(hint=""), (seq, *states)).fetchone()
    return _checkpoint(row)


def links_of(conn: sqlite3.Connection, seq: int, direction: Direction = "out") -> list[Link]:
    """Links of entry ``seq``: ``out`` its action's links (to_seq None while unresolved),
    ``in`` the resolved links of later entries that name it, ``both`` out then in."""
    if direction not in ("out", "in", "both"):
        raise ValueError(f"direction must be 'out', 'in' or 'both', got {direction!r}")
    out: list[Link] = []
    columns = "from_seq, position, to_agent_id, to_event_id, relation, to_seq"
    if direction in ("out", "both"):
        out += [Link(*r) for r in conn.execute(
            f"SELECT {columns} FROM links WHERE from_seq = ? ORDER BY position", (seq,))]  # noqa: S608
    if direction in ("in", "both"):
        out += [Link(*r) for r in conn.execute(
            f"SELECT {columns} FROM links WHERE to_seq = ? ORDER BY from_seq, position", (seq,))]  # noqa: S608
    return out


def _checkpoint(row: tuple | None) -> Checkpoint | None:
    if row is None:
        return None
    offset, size, root, head, created, origin, key_id, body, signature, status, finding = row
    return Checkpoint(offset, size, bytes(root), bytes(head), created, origin, key_id, bytes(body), bytes(signature),
                      status, finding)


def covering_checkpoint(conn: sqlite3.Connection, seq: int) -> Checkpoint | None:
    """The first (smallest) verified checkpoint that includes entry ``seq`` (tree_size > seq)."""
    return _checkpoint(conn.execute(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE status = 'verified' AND tree_size > ? "  # noqa: S608
        "ORDER BY tree_size LIMIT 1", (seq,)).fetchone())


def latest_checkpoint(conn: sqlite3.Connection) -> Checkpoint | None:
    """The newest verified checkpoint (its size is the tile tree's)."""
    return _checkpoint(conn.execute(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE status = 'verified' "  # noqa: S608
        "ORDER BY tree_size DESC LIMIT 1").fetchone())


def checkpoint_at(conn: sqlite3.Connection, tree_size: int) -> Checkpoint | None:
    """The verified checkpoint of exactly ``tree_size`` entries, if there is one."""
    return _checkpoint(conn.execute(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE status = 'verified' AND tree_size = ?",  # noqa: S608
        (tree_size,)).fetchone())


def verified_checkpoints_after(conn: sqlite3.Connection, tree_size: int, limit: int) -> list[Checkpoint]:
    """Up to ``limit`` verified checkpoints larger than ``tree_size``, smallest first (one per size)."""
    rows = conn.execute(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE status = 'verified' AND tree_size > ? "  # noqa: S608
        "GROUP BY tree_size ORDER BY tree_size LIMIT ?", (tree_size, limit)).fetchall()
    return [c for c in map(_checkpoint, rows) if c is not None]


def verified_checkpoints(conn: sqlite3.Connection) -> list[Checkpoint]:
    """Every verified checkpoint, smallest tree first (O(k): one per checkpoint interval)."""
    return [c for c in (_checkpoint(row) for row in conn.execute(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE status = 'verified' "  # noqa: S608
        "ORDER BY tree_size, topic_offset")) if c is not None]


def checkpoints_of_size(conn: sqlite3.Connection, tree_size: int) -> list[Checkpoint]:
    """Every indexed checkpoint record claiming ``tree_size`` entries, whatever its status."""
    return [c for c in (_checkpoint(row) for row in conn.execute(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE tree_size = ? ORDER BY topic_offset",  # noqa: S608
        (tree_size,))) if c is not None]


def anchors_of(conn: sqlite3.Connection, checkpoint: Checkpoint) -> list[Anchor]:
    """The RFC 3161 anchors over ``checkpoint``'s body, in topic order."""
    digest = hashlib.sha256(checkpoint.body).digest()
    return [Anchor(o, s, bytes(b), tsa, g, c, st, f) for o, s, b, tsa, g, c, st, f in conn.execute(
        "SELECT topic_offset, tree_size, body_sha256, tsa, gen_time, created_at, status, finding FROM anchors "
        "WHERE body_sha256 = ? ORDER BY topic_offset", (digest,))]


def note_lines_of(conn: sqlite3.Connection, body: bytes, config: CheckerConfig) -> list[NoteLine]:
    """The signed-note lines of configured keys over the checkpoint ``body``, checked by the
    Checker (verified or failed), in topic order."""
    out = []
    for role, name, key_id, signature, status in conn.execute(
            "SELECT role, name, key_id, signature, status FROM note_signatures WHERE body_sha256 = ? "
            "AND status IN ('verified', 'failed') ORDER BY topic_offset", (hashlib.sha256(body).digest(),)):
        rec = {"role": role, "name": name, "key_id": bytes(key_id), "signature": bytes(signature)}
        key = note_signature_key(rec, config)
        if key is not None:
            out.append(NoteLine(role, key, note_signature_line(rec), status == "verified"))
    return out


def witness_sizes(conn: sqlite3.Connection, config: CheckerConfig) -> dict[str, int]:
    """Each configured witness's largest tree size with a verified cosignature: one index
    lookup per witness, never a scan."""
    out = {}
    for v in config.witnesses:
        row = conn.execute("SELECT MAX(tree_size) FROM note_signatures WHERE role = 'witness' AND status = 'verified' "
                           "AND name = ? AND key_id = ?", (v.name, v.key_id)).fetchone()
        if row[0] is not None:
            out[v.name] = int(row[0])
    return out


def foreign_count(conn: sqlite3.Connection, topic: str) -> int:
    """How many records of ``topic`` are foreign (a range of the table's primary key)."""
    return int(conn.execute("SELECT COUNT(*) FROM foreign_records WHERE topic = ?", (topic,)).fetchone()[0])


def foreign_records(conn: sqlite3.Connection, topic: str | None = None, after_offset: int = -1,
                    limit: int = DEFAULT_LIMIT) -> list[ForeignRecord]:
    """Records that are not part of the ledger (never given a seq), in topic offset order."""
    where, args = "topic_offset > ?", [after_offset]
    if topic is not None:
        where = "topic = ? AND " + where
        args.insert(0, topic)
    return [_foreign(row) for row in conn.execute(
        f"SELECT * FROM foreign_records WHERE {where} ORDER BY topic, topic_offset "  # noqa: S608
        f"LIMIT {int(limit)}", args)]


def _foreign(row: tuple) -> ForeignRecord:
    t, o, k, d, s, h, key, a, e, size, digest = row
    return ForeignRecord(t, o, k, d, s, None if h is None else bytes(h), key, a, e, size, bytes(digest))


# --- raw record bytes (from Kafka, by offset) -----------------------------------------------

class RecordFetcher:
    """Committed records of partition 0 of a topic by offset, over one Kafka consumer kept
    open between calls (a consumer costs ~15 ms to create and close: an index read holds one).
    No consumer group, nothing committed; one seek per run of nearby offsets."""

    def __init__(self, bootstrap: str, topic: str, *, timeout: float = 10.0, role: str = "reader") -> None:
        from confluent_kafka import Consumer

        from ledgerstream.core.kafka_security import kafka_config

        self.topic, self.timeout = topic, timeout
        self._consumer = Consumer(kafka_config(bootstrap, role, {
            "group.id": f"ledgerstream-reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
            "isolation.level": "read_committed", "enable.partition.eof": True,
            "fetch.max.bytes": 16 * 1024 * 1024, "max.partition.fetch.bytes": 1024 * 1024,
            # prefetch freely (bounded): "queued.min.messages": 1 made each fetch wait its turn, 3 s for
            # 20 records 50 apart against 60 ms now; the records exist, so no broker-side fetch wait
            "queued.max.messages.kbytes": 16 * 1024, "fetch.wait.max.ms": 10,
        }))

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> "RecordFetcher":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def fetch(self, offsets: Iterable[int]) -> dict[int, bytes]:
        """The records at ``offsets``; ConfigError if one is missing."""
        from confluent_kafka import KafkaError, TopicPartition

        wanted = sorted(set(int(o) for o in offsets))
        out: dict[int, bytes] = {}
        consumer, topic, timeout = self._consumer, self.topic, self.timeout
        i = 0
        while i < len(wanted):
            consumer.assign([TopicPartition(topic, 0, wanted[i])])
            deadline = time.monotonic() + timeout
            seek_again = False
            while i < len(wanted) and not seek_again:
                msgs = consumer.consume(64, timeout=0.005)
                if not msgs and time.monotonic() > deadline:
                    raise ConfigError(f"no record at offset {wanted[i]} of {topic} within {timeout:.0f}s")
                for msg in msgs:
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            raise ConfigError(f"{topic} has no committed record at offset {wanted[i]}")
                        raise ConfigError(f"error reading {topic}: {err}")
                    offset = msg.offset()
                    if offset > wanted[i]:
                        raise ConfigError(f"{topic} has no committed record at offset {wanted[i]}")
                    if offset == wanted[i]:
                        out[offset] = msg.value() or b""
                        i += 1
                        deadline = time.monotonic() + timeout
                        if i < len(wanted) and wanted[i] - offset > 64:
                            seek_again = True  # far ahead: seek instead of reading what lies between
                            break
                    if i == len(wanted):
                        break
        return out


def fetch_records(bootstrap: str, topic: str, offsets: Iterable[int], *, timeout: float = 10.0,
                  role: str = "reader") -> dict[int, bytes]:
    """:meth:`RecordFetcher.fetch` over a consumer of its own (closed afterwards)."""
    wanted = list(offsets)
    if not wanted:
        return {}
    with RecordFetcher(bootstrap, topic, timeout=timeout, role=role) as fetcher:
        return fetcher.fetch(wanted)


def raw_entries(conn: sqlite3.Connection, entries: Iterable[Entry], bootstrap: str, entries_topic: str, *,
                fetcher: RecordFetcher | None = None) -> dict[int, bytes]:
    """The LedgerEntry record bytes of ``entries``, by seq, fetched from Kafka (over
    ``fetcher`` if given) and checked against the digests in the index (ConfigError if a
    record differs)."""
    entries = list(entries)
    offsets = [e.topic_offset for e in entries]
    fetched = fetcher.fetch(offsets) if fetcher is not None else fetch_records(bootstrap, entries_topic, offsets)
    out = {}
    for e in entries:
        raw = fetched[e.topic_offset]
        if hashlib.sha256(raw).digest() != e.record_sha256:
            raise ConfigError(f"the record at offset {e.topic_offset} of {entries_topic} is not the one indexed "
                              f"as entry {e.seq}: reindex")
        out[e.seq] = raw
    return out


def raw_entry(conn: sqlite3.Connection, seq: int, bootstrap: str, entries_topic: str) -> bytes | None:
    """The LedgerEntry record bytes of entry ``seq`` (None if it is not indexed)."""
    entry = entry_by_seq(conn, seq)
    if entry is None:
        return None
    return raw_entries(conn, [entry], bootstrap, entries_topic)[seq]
