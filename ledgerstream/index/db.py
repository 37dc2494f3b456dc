"""The index database: one SQLite file in WAL mode, written by one follower, read by anyone.

Every row is derived from the topics alone (record bytes, their offsets and what the
Checker concluded about them): no wall-clock time of indexing, no row ids that depend on
how the records were batched. Deleting the database and indexing again gives the same
rows. The tables ``meta`` and ``checker_journal`` hold the follower's resume state (the
Checker's state and journal, serialized exactly as a verifier stores them), which is not
part of the read model.

Tables (docs/index.md has the column-by-column description):

=================== =========================================================================
``entries``         one row per entry the Checker integrated as seq N (the genuine ledger)
``missing``         seqs the Checker integrated as a gap placeholder (no record was seen)
``links``           the action's links, both directions; ``to_seq`` once the Checker resolved it
``checkpoints``     signed checkpoints under a trusted key, with their verification status
``anchors``         RFC 3161 anchors (``TimestampAnchor`` records) of checkpoints
``foreign_records`` records of either topic that are not part of the ledger (never given a seq)
``findings``        every finding the Checker raised, keyed by a stable id
``agents``          per agent: entries, first and latest seq, times, latest action (O(A) reads)
``agent_calls``     per caller -> callee agent pair: resolved cross-agent links (the call graph)
``meta``            key/value: schema version, trust, topics, Checker state, sizes
``checker_journal`` the Checker's append-only journal (``verifier_worker.store.journal_line``)
=================== =========================================================================
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any, Sequence

from ledgerstream.core.errors import ConfigError

log = logging.getLogger("ledgerstream.index")


class IndexOutdated(ConfigError):
    """The index on disk cannot be continued (an older layout, files missing): it is a derived
    view, so ``index run`` rebuilds it from Kafka (``--reindex``) instead of stopping."""


#: 2: the Checker's per-entry state lives in index/history.py's files, not in checker_journal
#: 3: the ``agents`` and ``agent_calls`` summaries (the dashboard's overview without a scan)
SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS checker_journal (
    id   INTEGER PRIMARY KEY,
    line TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS entries (
    seq               INTEGER PRIMARY KEY,
    event_id          TEXT UNIQUE,          -- NULL only when an earlier seq holds the same event id
    event_id_reused   TEXT,                 -- that event id, for such a later entry
    entry_hash        BLOB NOT NULL,
    topic_offset      INTEGER NOT NULL UNIQUE,
    record_size       INTEGER NOT NULL,
    record_sha256     BLOB NOT NULL,        -- of the raw LedgerEntry record (checks a fetch by offset)
    agent_id          TEXT NOT NULL,
    agent_seq         INTEGER NOT NULL,
    session_id        TEXT,
    action_type       TEXT NOT NULL,
    time              INTEGER NOT NULL,     -- received_at: ledger time, µs since the epoch
    occurred_at       INTEGER NOT NULL,     -- the agent's own clock, µs
    key_id            TEXT NOT NULL,
    signed            INTEGER NOT NULL,     -- 1: per-entry signature; 0: covered by checkpoints only
    payload_hash      BLOB NOT NULL,
    checkpoint_size   INTEGER,              -- tree size of the first verified checkpoint covering it
    checkpoint_offset INTEGER               -- that checkpoint's offset on the checkpoints topic
);
CREATE INDEX IF NOT EXISTS entries_agent_seq ON entries(agent_id, agent_seq);
CREATE INDEX IF NOT EXISTS entries_agent ON entries(agent_id, seq);
CREATE INDEX IF NOT EXISTS entries_session ON entries(session_id, seq);
CREATE INDEX IF NOT EXISTS entries_action_time ON entries(action_type, time);
CREATE INDEX IF NOT EXISTS entries_time ON entries(time);
CREATE INDEX IF NOT EXISTS entries_event_reused ON entries(event_id_reused) WHERE event_id_reused IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_uncovered ON entries(seq) WHERE checkpoint_size IS NULL;

CREATE TABLE IF NOT EXISTS missing (
    seq        INTEGER PRIMARY KEY,
    entry_hash BLOB                         -- known from the next entry's prev_hash for a one-entry gap
);

CREATE TABLE IF NOT EXISTS links (
    from_seq     INTEGER NOT NULL,
    position     INTEGER NOT NULL,          -- index in the action's links
    to_agent_id  TEXT NOT NULL,
    to_event_id  TEXT NOT NULL,
    relation     TEXT NOT NULL,
    to_seq       INTEGER,                   -- set when the Checker resolved the link (its call graph edge)
    PRIMARY KEY (from_seq, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS links_to_seq ON links(to_seq) WHERE to_seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS links_to_event ON links(to_event_id);
CREATE INDEX IF NOT EXISTS links_resolved ON links(from_seq) WHERE to_seq IS NOT NULL;
CREATE TABLE IF NOT EXISTS agents (
    agent_id     TEXT PRIMARY KEY,
    entries      INTEGER NOT NULL,          -- entries of the ledger with this agent_id
    first_seq    INTEGER NOT NULL,
    last_seq     INTEGER NOT NULL,          -- its chain head
    first_time   INTEGER NOT NULL,          -- received_at of its first entry, µs
    last_time    INTEGER NOT NULL,          -- received_at of its latest entry, µs
    last_occurred_at INTEGER NOT NULL,      -- the agent's own clock at its latest action, µs
    last_action  TEXT NOT NULL,
    head_hash    BLOB NOT NULL              -- entry_hash of its latest entry
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agent_calls (
    caller       TEXT NOT NULL,             -- the agent a link names (the linked-to entry's agent)
    callee       TEXT NOT NULL,             -- the agent whose action carries the link
    calls        INTEGER NOT NULL,          -- resolved links between them
    PRIMARY KEY (caller, callee)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS checkpoints (
    topic_offset INTEGER PRIMARY KEY,
    tree_size    INTEGER NOT NULL,
    root_hash    BLOB NOT NULL,
    chain_head   BLOB NOT NULL,
    created_at   INTEGER NOT NULL,          -- the signer's time in the signed body, µs
    origin       TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    body         BLOB NOT NULL,
    body_sha256  BLOB NOT NULL,
    signature    BLOB NOT NULL,
    status       TEXT NOT NULL,             -- pending | verified | unconfirmed | failed
    finding      TEXT                       -- kind of the Checker's finding about it, if any
);
CREATE INDEX IF NOT EXISTS checkpoints_verified ON checkpoints(tree_size) WHERE status = 'verified';
-- covering: the first anchored checkpoint above a seq is found without reading checkpoint rows (3.7 KB each)
CREATE INDEX IF NOT EXISTS checkpoints_verified_body ON checkpoints(tree_size, body_sha256) WHERE status = 'verified';
CREATE INDEX IF NOT EXISTS checkpoints_size ON checkpoints(tree_size);
CREATE INDEX IF NOT EXISTS checkpoints_pending ON checkpoints(topic_offset) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS checkpoints_body ON checkpoints(body_sha256);

CREATE TABLE IF NOT EXISTS anchors (
    topic_offset INTEGER PRIMARY KEY,
    tree_size    INTEGER NOT NULL,
    body_sha256  BLOB NOT NULL,
    tsa          TEXT NOT NULL,
    gen_time     INTEGER,                   -- the token's genTime, µs, as read (ordering only)
    created_at   INTEGER NOT NULL,
    status       TEXT NOT NULL,             -- pending | verified | unchecked | failed | orphan
    finding      TEXT
);
CREATE INDEX IF NOT EXISTS anchors_body ON anchors(body_sha256);
CREATE INDEX IF NOT EXISTS anchors_pending ON anchors(topic_offset) WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS note_signatures (
    topic_offset INTEGER PRIMARY KEY,
    tree_size    INTEGER NOT NULL,
    body_sha256  BLOB NOT NULL,
    role         TEXT NOT NULL,             -- log | witness
    name         TEXT NOT NULL,             -- the signature line's key name
    key_id       BLOB NOT NULL,             -- its 4-byte signed-note key ID
    signature    BLOB NOT NULL,
    key_type     TEXT,                      -- the configured key's kind (core/note.py); NULL: unknown key
    status       TEXT NOT NULL,             -- pending | verified | unknown_key | failed
    finding      TEXT
);
CREATE INDEX IF NOT EXISTS note_signatures_body ON note_signatures(body_sha256);
CREATE INDEX IF NOT EXISTS note_signatures_pending ON note_signatures(topic_offset) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS note_signatures_witness ON note_signatures(name, key_id, tree_size) WHERE role = 'witness' AND status = 'verified';

CREATE TABLE IF NOT EXISTS foreign_records (
    topic         TEXT NOT NULL,            -- entries | checkpoints
    topic_offset  INTEGER NOT NULL,
    kind          TEXT NOT NULL,            -- the finding kind that made it foreign
    detail        TEXT NOT NULL,
    claimed_seq   INTEGER,                  -- what the record claims, if it decodes (never adopted)
    entry_hash    BLOB,
    key_id        TEXT,
    agent_id      TEXT,
    event_id      TEXT,
    record_size   INTEGER NOT NULL,
    record_sha256 BLOB NOT NULL,
    PRIMARY KEY (topic, topic_offset)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS findings (
    finding_id   TEXT PRIMARY KEY,          -- verifier_worker.alerting.alert_id(finding, "index")
    kind         TEXT NOT NULL,
    severity     TEXT NOT NULL,
    seq_from     INTEGER,
    seq_to       INTEGER,
    agent_id     TEXT,
    topic        TEXT,
    topic_offset INTEGER,
    detail       TEXT NOT NULL,
    evidence     TEXT NOT NULL              -- JSON object
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS findings_kind ON findings(kind);
CREATE INDEX IF NOT EXISTS findings_seq ON findings(seq_from);
"""

#: the read model, for comparisons and exports: table -> ORDER BY of a deterministic dump
DATA_TABLES: dict[str, str] = {
    "entries": "seq",
    "missing": "seq",
    "links": "from_seq, position",
    "checkpoints": "topic_offset",
    "anchors": "topic_offset",
    "foreign_records": "topic, topic_offset",
    "findings": "finding_id",
    "agents": "agent_id",
    "agent_calls": "caller, callee",
}


#: the writer's page cache (KiB). The entries table has eight indexes, three keyed by random
#: or interleaved values (event id, agent, session); with SQLite's default 2 MiB each batch
#: re-reads and rewrites most of their leaf pages. Bounded, so the follower's RSS stays flat.
WRITER_CACHE_KIB = 64 * 1024
#: WAL pages before an automatic checkpoint (SQLite: 1,000): fewer, larger checkpoints of
#: pages that many batches dirty again; the WAL file stays under ~40 MB.
WAL_AUTOCHECKPOINT_PAGES = 10_000
#: with a :class:`WalCheckpointer`, the writer checkpoints itself only past this many WAL
#: pages (~400 MB): a backstop should the checkpointer fall behind
WAL_BACKSTOP_PAGES = 100_000


def open_db(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """The index database (created with its schema unless ``readonly``).

    Writers use WAL with ``synchronous=NORMAL``: a killed process loses nothing committed
    (a power loss may lose the newest transactions, which the follower then redoes from
    Kafka). Readers open it read-only and never block the writer. Measured at 500k
    entries, the writer's cache and checkpoint settings with 5,000-record batches took
    the follower from 34.2 to 27.0 s (decision D41)."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        return conn
    path.parent.mkdir(parents=True, exist_ok=True)
    # used by the follower's writer thread too, never by two threads at once (index/core.py)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    conn.execute("BEGIN")
    _create(conn)
    version = get_meta(conn, "schema_version")
    if version is None:
        set_meta(conn, "schema_version", SCHEMA_VERSION)
    elif version != SCHEMA_VERSION:
        conn.execute("ROLLBACK")
        conn.close()
        raise IndexOutdated(f"{path} has index schema version {version}, this version writes {SCHEMA_VERSION}: "
                            "delete the index (index run --reindex) to rebuild it from Kafka")
    conn.execute("COMMIT")
    return conn


class WalCheckpointer:
    """WAL checkpoints on a thread of their own, with their own connection: copying the WAL's
    pages into the database and its two fsyncs then overlap the writer's next batch instead of
    running inside its COMMIT (at 4.75M random event ids, 30 of the 58 µs SQLite spent per
    entry were the commit, half of that fsync; decision D50). :meth:`kick` after each commit;
    the writer's own automatic checkpoint stays as a backstop (``WAL_BACKSTOP_PAGES``)."""

    def __init__(self, path: Path, writer: sqlite3.Connection) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA synchronous = NORMAL")
        writer.execute(f"PRAGMA wal_autocheckpoint = {WAL_BACKSTOP_PAGES}")
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="index-wal-checkpoint", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:  # the writer's backstop still checkpoints
                log.warning("index: WAL checkpoint failed: %s", exc)

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join()
        self._conn.close()


def _create(conn: sqlite3.Connection) -> None:
    """Each statement of SCHEMA inside the caller's transaction (``executescript`` would commit)."""
    statement = ""
    for line in SCHEMA.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""


def get_meta(conn: sqlite3.Connection, key: str, default: Any = None) -> Any:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return default if row is None else json.loads(row[0])


#: one ``meta`` row written (parameters: :func:`meta_row`)
META_UPSERT = "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"


def meta_row(key: str, value: Any) -> tuple[str, str]:
    """The parameters of :data:`META_UPSERT`: ``value`` serialized now (it may change later)."""
    return key, json.dumps(value, separators=(",", ":"), sort_keys=True)


def set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
    conn.execute(META_UPSERT, meta_row(key, value))


#: the schema of the writer's connection that :func:`load_staged` fills
STAGE = "stage"


def attach_stage(conn: sqlite3.Connection) -> None:
    """Give the writer's connection the (in-memory) schema :func:`load_staged` replaces."""
    conn.execute(f"ATTACH DATABASE ':memory:' AS {STAGE}")


def staged_rows(rows: Sequence[Sequence[Any]], width: int) -> bytes:
    """The rows as a serialized SQLite database with one table ``rows`` of ``width`` untyped
    columns: SQLite's own binding of each value (type, bytes, text holding U+0000), done on
    the calling thread. On the writer's, :func:`load_staged` and ``INSERT INTO t`` +
    :func:`staged_select` then insert the batch in one SQLite step, with the GIL released
    throughout: ``executemany`` on the writer takes the GIL back after every row and waits
    for it while the follower's thread runs Python (decision D50); a JSON array unpacked by
    ``json_each`` cost 21 against 0.4 µs per 18-column row here (decision D51)."""
    stage = sqlite3.connect(":memory:", isolation_level=None)
    try:
        columns = ", ".join(f"c{i}" for i in range(width))
        stage.execute(f"CREATE TABLE rows ({columns})")
        stage.executemany(f"INSERT INTO rows VALUES ({', '.join('?' * width)})", rows)
        return stage.serialize()
    finally:
        stage.close()


def load_staged(conn: sqlite3.Connection, data: bytes) -> None:
    """Replace the connection's :data:`STAGE` schema with :func:`staged_rows`' database
    (outside a transaction)."""
    conn.deserialize(data, name=STAGE)


def staged_select(width: int) -> str:
    """``SELECT`` of the staged rows, in the order they were given."""
    columns = ", ".join(f"c{i}" for i in range(width))
    return f"SELECT {columns} FROM {STAGE}.rows WHERE true ORDER BY rowid"  # WHERE: an upsert may follow


def dump(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    """Every row of the read model, in a fixed order (for determinism checks and exports)."""
    return {table: conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()  # noqa: S608 - fixed names
            for table, order in DATA_TABLES.items()}
