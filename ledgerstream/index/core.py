"""The pure part of the index follower: ledger records in, rows and tiles out (no Kafka).

:class:`IndexCore` owns the core :class:`~ledgerstream.core.verify.Checker`, the SQLite
database and the :class:`~ledgerstream.core.tiles.TileWriter`. :meth:`IndexCore.process`
takes one batch of ``(role, offset, raw)`` records as a verifier's reader delivers them
(both topics, each in offset order, interleaved) and feeds them to the Checker exactly as
``VerifierRuntime.process`` does: runs of one topic go to ``feed_checked(check_entries(...))``
(what ``feed_entries`` does, with the checked records observed on the way) or to
``feed_checkpoints``. What the Checker integrated is read from its journal
(``drain_journal``), which is also what is saved to resume it.

Which record is entry N? The Checker integrates the *tentative* head (or its fork
candidate) once the next entry or a checkpoint confirms its place, and journals
``{"e": [seq, entry_hash], "a": agent, ...}``. The record is the one checked with that
seq and hash at the lowest offset; every other entries record ends up **foreign**: rejected
by steps 1-3 (undecodable, hash_mismatch, unknown_key, bad_signature), a replayed copy
(duplicate), the losing side of a fork, or an out-of-order entry. Foreign records are kept
in ``foreign_records`` with the kind and offset, never adopted and never given a seq.

Commit order of one batch, so that ``kill -9`` anywhere leaves no gap or duplicate:

1. feed the Checker (memory only);
2. in one SQLite transaction (not yet committed): the rows, the Checker's journal lines
   and state, the next offsets;
3. the tiles, up to each newly verified checkpoint, each with that checkpoint's signed
   note as the tiles' ``checkpoint`` file (``TileWriter`` writes files atomically and the
   checkpoint last; re-appending leaves it already holds is a byte-for-byte comparison);
4. ``on_findings`` (the alerts hook: at least once, like a verifier's alerts);
5. COMMIT: the commit point. Killed before it, the follower restores the previous state
   and reads the same records again from Kafka; the tiles written in 3 are found and
   compared, not rewritten.

Steps 2-5 run on the index's writer thread while the caller feeds the Checker the next
batch (:meth:`IndexCore.feed`, decision D50); one commit is in flight at most, and they
happen in batch order. The rows are prepared on the caller's thread (they need the Checker
and the records it holds); while a commit runs, only the writer thread uses ``conn`` and the
tiles, and the Checker's history reads committed rows through its own connection, with the
in-flight batch's events and heads in memory (index/history.py).

Tiles are appended only at the sizes of verified checkpoints (each size separately), so
the tile files depend on the ledger alone, not on how records were batched: a rebuild
from Kafka gives the same bytes.
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from ledgerstream.core.errors import ConfigError, TimestampError
from ledgerstream.core.spilled import durable_journal
from ledgerstream.core.tiles import TILE_HEIGHT, TileConflict, TileWriter
from ledgerstream.core.timestamp import token_gen_time
from ledgerstream.core.verify import (CHECKPOINTS, ENTRIES, CheckedCheckpoint, CheckedEntry, Checker,
                                      CheckerConfig, Finding, SignaturePool, check_checkpoint_record,
                                      check_entries, check_entry)
from ledgerstream.core.verify.checkpoints import checkpoint_note, note_signature_key
from ledgerstream.index import query
from ledgerstream.index.db import (META_UPSERT, WalCheckpointer, attach_stage, get_meta, load_staged, meta_row,
                                   open_db, set_meta, staged_rows, staged_select)
from ledgerstream.index.history import IndexHistory
from ledgerstream.index.paths import IndexPaths
from ledgerstream.core.alerting import alert_id

log = logging.getLogger("ledgerstream.index")

#: the "verifier id" of the index in finding ids (``alert_id``)
INDEX_ID = "index"

#: (role, offset, raw bytes), role "entries" or "checkpoints": what a batch holds
Record = tuple[str, int, bytes]
FindingsHook = Callable[[list[Finding]], None]


def log_findings(findings: list[Finding]) -> None:
    """Log each finding (also done by ``index/alerts.py``'s publisher before it signs them)."""
    for f in findings:
        log.warning("FINDING %s %s: %s", f.severity.value, f.kind.value, f.detail)


def trust_fingerprint(config: CheckerConfig) -> dict[str, Any]:
    """What the Checker's verdicts depend on. An index built under other trust is refused
    (its foreign / accepted split would differ from a rebuild): reindex instead."""
    approvers = config.approvers
    return {
        "trusted_keys": sorted(config.trusted_keys),
        "tsa_ca_sha256": hashlib.sha256(config.tsa_ca).hexdigest() if config.tsa_ca else None,
        "approvers": None if approvers is None else {
            "m": approvers.m, "keys": {a: k.key_id for a, k in sorted(approvers.approvers.items())}},
        "link_grace_seconds": config.link_grace_seconds,
        "link_grace_entries": config.link_grace_entries,
        "clock_skew_seconds": config.clock_skew_seconds,
        "origin": config.origin,
    }


@dataclass
class BatchResult:
    entries: int = 0                 # entries indexed (given a seq) by this batch
    foreign: int = 0                 # records found foreign by this batch
    findings: list[Finding] = field(default_factory=list)
    tiles_size: int = 0              # tile tree size after the batch
    indexed_size: int = 0            # entries [0, indexed_size) are indexed


@dataclass
class _Rows:
    """One commit, prepared on the feeding thread for the writer thread."""
    size: int                                       # the Checker's tree size: entries [0, size) indexed
    about: dict[tuple[str, int], Finding]           # the batch's findings by (topic, offset)
    foreign: list[tuple]
    queued: set[int]                                # checkpoint-topic offsets the Checker still holds
    entries: list[tuple] = field(default_factory=list)
    entries_staged: bytes = b""                         # staged_rows(entries, ENTRY_WIDTH)
    links: list[tuple] = field(default_factory=list)
    missing: list[tuple] = field(default_factory=list)
    edges: list[list] = field(default_factory=list)
    verified: list[list] = field(default_factory=list)
    checkpoints: list[tuple] = field(default_factory=list)
    anchors: list[tuple] = field(default_factory=list)
    notes: list[tuple] = field(default_factory=list)
    findings: list[tuple] = field(default_factory=list)
    journal: list[tuple[str]] = field(default_factory=list)
    meta: list[tuple[str, str]] = field(default_factory=list)
    alerts: list[Finding] = field(default_factory=list)   # for the findings hook (on the writer thread)
    fsync: Callable[[], None] = lambda: None


def _tap(checked: Iterable[CheckedEntry], into: list[CheckedEntry]) -> Iterator[CheckedEntry]:
    for c in checked:
        into.append(c)
        yield c


def _where(f: Finding) -> tuple[str, int] | None:
    topic, offset = f.evidence.get("topic"), f.evidence.get("offset")
    if topic is None or offset is None:
        return None
    try:
        return topic, int(offset)
    except ValueError:
        return None


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class IndexCore:
    """One index: its database, tiles and Checker. Not thread-safe; one per directory
    (the follower holds a lock file, the TileWriter its own)."""

    def __init__(self, paths: IndexPaths, config: CheckerConfig, *, on_findings: FindingsHook = log_findings,
                 signatures: SignaturePool | None = None, fsync: bool = True, tile_height: int = TILE_HEIGHT,
                 topics: Mapping[str, str] | None = None) -> None:
        self.paths = paths
        self.config = config
        self.on_findings = on_findings
        self._signatures = signatures
        self._broken = False
        self._inflight: Future[int] | None = None
        paths.index_dir.mkdir(parents=True, exist_ok=True)
        self.conn = open_db(paths.db)
        attach_stage(self.conn)
        self._reads = open_db(paths.db, readonly=True)  # the Checker's history: committed rows only
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="index-commit")
        self._checkpoints = WalCheckpointer(paths.db, self.conn)
        try:
            self._check_identity(trust_fingerprint(config), dict(topics) if topics else None)
            self.checker = self._restore_checker(fsync)
            # checked, not rejected, not yet integrated nor found foreign: by (seq, entry_hash) the
            # first one (the candidate to become that entry), and the later copies
            self._pending: dict[tuple[int, bytes], CheckedEntry] = {}
            self._copies: list[CheckedEntry] = []
            for checked in self._restore_pending(self.checker.export_state()):
                self._hold(checked)
            self.tiles_size: int = get_meta(self.conn, "tiles_size", 0)
            self._notes: dict[int, bytes] = {}
            self.tiles = TileWriter(paths.tiles_dir, checkpoint=self._note, fsync=fsync, height=tile_height)
        except BaseException:
            if hasattr(self, "history"):
                self.history.close()
            self._writer.shutdown()
            self._checkpoints.close()
            self._reads.close()
            self.conn.close()
            raise
        try:
            self._catch_up_tiles()
        except BaseException:
            self.close()
            raise
        self.foreign = self.conn.execute("SELECT COUNT(*) FROM foreign_records").fetchone()[0]
        self._indexed_size = self.checker.tree.size

    # --- opening ---------------------------------------------------------------------------
    def _check_identity(self, trust: dict[str, Any], topics: dict[str, str] | None) -> None:
        saved_trust, saved_topics = get_meta(self.conn, "trust"), get_meta(self.conn, "topics")
        if saved_trust is not None and saved_trust != trust:
            raise ConfigError(f"the index in {self.paths.index_dir} was built with other trusted keys / TSA CA / "
                              f"approvers / link grace than now: reindex (ledgerstream index run --reindex)")
        if topics is not None and saved_topics is not None and saved_topics != topics:
            raise ConfigError(f"the index in {self.paths.index_dir} follows topics {saved_topics}, not {topics}: "
                              "reindex (ledgerstream index run --reindex) or use another --home")
        self.conn.execute("BEGIN IMMEDIATE")
        set_meta(self.conn, "trust", trust)
        if topics is not None:
            set_meta(self.conn, "topics", topics)
        self.conn.execute("COMMIT")

    def _restore_checker(self, fsync: bool) -> Checker:
        """The Checker as last committed: its :class:`IndexHistory` cut back to the committed
        size, then ``Checker.restore`` over the state and the journal records that are not
        per entry (holes, checkpoint bodies, verified checkpoints: a few per checkpoint)."""
        state = get_meta(self.conn, "checker")
        self.history = IndexHistory(self._reads, self.paths.history_dir, state["integrated"] if state else 0,
                                    fsync=fsync)
        if state is None:
            return Checker(self.config, history=self.history)
        lines = self.conn.execute("SELECT line FROM checker_journal ORDER BY id")
        try:
            return Checker.restore(self.config, state, (json.loads(line) for (line,) in lines), history=self.history)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"the index state in {self.paths.db} is unusable: {exc} (reindex)") from exc

    def _restore_pending(self, state: Mapping[str, Any]) -> list[CheckedEntry]:
        """The records the Checker holds whole (tentative head, fork candidate): one of them
        becomes the next indexed entry."""
        out = []
        for key in ("tentative", "candidate"):
            item = state.get(key)
            if item:
                checked = check_entry((int(item[0]), base64.b64decode(item[1])), self.config)
                if checked.rejection is None:
                    out.append(checked)
        return out

    def _hold(self, c: CheckedEntry) -> None:
        key = (c.seq, bytes(c.entry_hash))
        if key in self._pending:
            self._copies.append(c)
        else:
            self._pending[key] = c

    def _catch_up_tiles(self) -> None:
        """Tiles behind the database (a deleted or restored tiles folder): append them again,
        checkpoint by checkpoint, exactly as they were first written."""
        if self.tiles.size >= self.tiles_size:
            return
        log.info("tiles in %s are at size %d, the index at %d: rebuilding them from the index",
                 self.paths.tiles_dir, self.tiles.size, self.tiles_size)
        rows = self.conn.execute(
            "SELECT tree_size, origin, key_id, body, signature FROM checkpoints WHERE status = 'verified' "
            "AND tree_size > ? AND tree_size <= ? ORDER BY tree_size", (self.tiles.size, self.tiles_size)).fetchall()
        size = self.tiles.size
        for tree_size, origin, key_id, body, signature in rows:
            self._append_tiles(size, tree_size, self._full_note(origin, key_id, body, signature))
            size = tree_size
        if self.tiles.size != self.tiles_size:
            raise ConfigError(f"cannot rebuild the tiles in {self.paths.tiles_dir} to size {self.tiles_size} "
                              "from the index: reindex")

    # --- views -----------------------------------------------------------------------------
    @property
    def indexed_size(self) -> int:
        """Entries [0, indexed_size) are indexed and committed (rows, or ``missing`` rows for a gap)."""
        return self._indexed_size

    def findings_by_kind(self) -> dict[str, int]:
        """Committed findings per kind (readable while a commit is in flight)."""
        return dict(self._reads.execute("SELECT kind, COUNT(*) FROM findings GROUP BY kind ORDER BY kind"))

    @property
    def next_offset(self) -> dict[str, int]:
        return dict(self.checker.next_offset)

    def close(self) -> None:
        """Close after the commit in flight (a failed one is logged: the next start resumes
        from the last commit)."""
        try:
            self.drain()
        except Exception:
            log.exception("index: the last batch could not be committed")
        finally:
            self._writer.shutdown()
            self._checkpoints.close()
            self.tiles.close()
            self.history.close()
            self._reads.close()
            self.conn.close()

    # --- one batch -------------------------------------------------------------------------
    def process(self, batch: Sequence[Record]) -> BatchResult:
        """Feed one batch and commit what it gives (module docstring: commit order); returns
        once it is committed. Any exception leaves this object unusable: the process must
        restart from the commit."""
        result = self.feed(batch)
        self.drain()
        return result

    def feed(self, batch: Sequence[Record]) -> BatchResult:
        """Feed one batch to the Checker, then hand what it gives to the writer thread, which
        commits it while the caller reads and feeds the next batch (decision D50: SQLite's
        inserts, commit and WAL checkpoints overlap the Checker's work). One commit is in
        flight at most: this waits for the previous one before handing this one over. The
        result's sizes are set once its commit is done (:meth:`drain`)."""
        self._usable()
        self._broken = True
        ch = self.checker
        entries: list[CheckedEntry] = []
        checkpoints: list[CheckedCheckpoint] = []
        findings: list[Finding] = []
        for role, group in itertools.groupby(batch, key=lambda record: record[0]):
            run = [(offset, raw) for _, offset, raw in group]
            if role == ENTRIES:
                fresh = [r for r in run if r[0] >= ch.next_offset[ENTRIES]]
                if fresh:  # exactly Checker.feed_entries, with the checked records observed
                    findings += ch.feed_checked(_tap(check_entries(fresh, ch.config, self._signatures, None,
                                                                   ch.stats), entries))
            elif role == CHECKPOINTS:
                fresh = [r for r in run if r[0] >= ch.next_offset[CHECKPOINTS]]
                checkpoints += [check_checkpoint_record(r, ch.config) for r in fresh]
                findings += ch.feed_checkpoints(fresh)
            else:
                raise ValueError(f"unknown topic role {role!r}")
        result = BatchResult(findings=findings)
        self._hand_off(entries, checkpoints, findings, result, bool(entries or checkpoints))
        self._broken = False
        return result

    def drain(self) -> None:
        """Wait until the commit in flight is done; its failure is raised here (and leaves
        this object unusable)."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return
        try:
            self.foreign += inflight.result()
        except BaseException:
            self._broken = True
            raise
        self.history.committed()

    def expire_checkpoints(self, before_offset: int) -> BatchResult:
        """Judge the checkpoint-topic records below ``before_offset`` that still wait for
        entries; call only once every entry committed before them has been fed (the follower:
        at the entries' end, for records read ``checkpoint_wait_seconds`` earlier, as a
        verifier does). A checkpoint among them claims entries the ledger lacks
        (``checkpoint_root_mismatch``, status failed); the records queued behind it are
        evaluated, so one such checkpoint cannot stop the tiles. Committed like a batch,
        and returns once it is."""
        self._usable()
        waiting = self.checker.queued_checkpoints
        self._broken = True
        result = BatchResult(findings=self.checker.expire_checkpoints(before_offset))
        self._hand_off([], [], result.findings, result,
                       bool(result.findings) or self.checker.queued_checkpoints != waiting)
        self._broken = False
        self.drain()
        return result

    def _usable(self) -> None:
        if self._broken:
            raise RuntimeError("a previous batch failed: restart from the committed state")

    def _hand_off(self, entries: list[CheckedEntry], checkpoints: list[CheckedCheckpoint],
                  findings: list[Finding], result: BatchResult, changed: bool) -> None:
        """Prepare this commit's rows here (while the previous commit may still run), then,
        once that one is done, seal the history and submit them to the writer."""
        rows = self._prepare(entries, checkpoints, findings, result) if changed else None
        self.drain()
        if rows is None:
            result.tiles_size, result.indexed_size = self.tiles_size, self.indexed_size
            return
        rows.fsync = self.history.seal()  # its files never fall behind the state the commit records
        self._inflight = self._writer.submit(self._write, rows, result)

    def _prepare(self, entries: list[CheckedEntry], checkpoints: list[CheckedCheckpoint],
                 findings: list[Finding], result: BatchResult) -> "_Rows":
        """Everything of a commit that needs the Checker or this object's memory, on the
        caller's thread: the rows and the state (none of it read by a commit in flight)."""
        ch = self.checker
        journal = ch.drain_journal()
        state = ch.export_state()
        about: dict[tuple[str, int], Finding] = {}
        for f in findings:
            where = _where(f)
            if where is not None:
                about.setdefault(where, f)
        foreign: list[tuple] = []
        for c in entries:
            if c.rejection is not None:
                foreign.append(_foreign_entry(c, c.rejection.kind.value, c.rejection.detail))
            else:
                self._hold(c)
        rows = _Rows(size=ch.tree.size, about=about, foreign=foreign,
                     queued={int(item[0]) for item in state.get("queue") or []})
        self._checkpoint_rows(checkpoints, rows)
        self._journal_rows(journal, rows)
        rows.entries_staged = staged_rows(rows.entries, ENTRY_WIDTH)  # here: the writer is the busier thread
        self._settle_pending(state, about, foreign)
        rows.findings = [_finding_row(f) for f in findings]
        rows.journal = [(line,) for line in durable_journal(journal)]  # the history keeps the rest
        rows.meta = [meta_row("checker", state), meta_row("indexed_size", ch.tree.size),
                     meta_row("next_offset", dict(ch.next_offset)), meta_row("last_checkpoint", ch.last_checkpoint)]
        result.entries = len(rows.entries)
        result.foreign = len(foreign)
        rows.alerts = list(findings)
        return rows

    def _write(self, rows: "_Rows", result: BatchResult) -> int:
        """The commit itself, on the writer thread (the only user of ``self.conn``, the tiles
        and ``tiles_size`` while it runs); returns the foreign records it stored."""
        conn = self.conn
        load_staged(conn, rows.entries_staged)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR IGNORE INTO checkpoints VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows.checkpoints)
            conn.executemany("INSERT OR IGNORE INTO anchors VALUES (?,?,?,?,?,?,?,?)", rows.anchors)
            conn.executemany("INSERT OR IGNORE INTO note_signatures VALUES (?,?,?,?,?,?,?,?,?,?)", rows.notes)
            targets = self._write_entries(rows)
            cosigned = self._settle_checkpoints(rows.queued, rows.about)
            conn.executemany("INSERT OR IGNORE INTO foreign_records VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows.foreign)
            conn.executemany("INSERT OR IGNORE INTO findings VALUES (?,?,?,?,?,?,?,?,?,?)", rows.findings)
            conn.executemany("INSERT INTO checker_journal(line) VALUES (?)", rows.journal)
            conn.executemany(META_UPSERT, rows.meta)
            self._append_tiles_of(targets)  # before the commit point
            if self.tiles_size in cosigned and self.tiles_size not in dict(targets):
                self._republish_note()
            set_meta(conn, "tiles_size", self.tiles_size)
            if rows.alerts:
                self.on_findings(rows.alerts)  # at least once: before the commit point
            rows.fsync()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._checkpoints.kick()
        self._indexed_size = rows.size
        result.tiles_size, result.indexed_size = self.tiles_size, rows.size
        return len(rows.foreign)

    def _checkpoint_rows(self, checkpoints: list[CheckedCheckpoint], rows: "_Rows") -> None:
        for c in checkpoints:
            raw = bytes(c.raw)
            if c.rejection is not None:
                rec = c.record or {}
                rows.foreign.append((CHECKPOINTS, c.offset, c.rejection.kind.value, c.rejection.detail, None, None,
                                     rec.get("key_id"), None, None, len(raw), _sha256(raw)))
            elif c.name == "Checkpoint":
                r = c.record
                body = bytes(r["body"])
                rows.checkpoints.append((c.offset, r["tree_size"], bytes(r["root_hash"]), bytes(r["chain_head"]),
                                         r["created_at"], r["origin"], r["key_id"], body, _sha256(body),
                                         bytes(r["signature"]), "pending", None))
            elif c.name == "NoteSignature":
                r = c.record
                key = note_signature_key(r, self.config)
                rows.notes.append((c.offset, r["tree_size"], bytes(r["body_hash"]), r["role"], r["name"],
                                   bytes(r["key_id"]), bytes(r["signature"]), key.kind if key else None, "pending",
                                   None))
            else:
                r = c.record
                try:
                    gen = token_gen_time(bytes(r["timestamp"]["token"]))
                    gen_us = int(gen.timestamp()) * 1_000_000 + gen.microsecond
                except (TimestampError, ValueError, TypeError, KeyError):
                    gen_us = None
                rows.anchors.append((c.offset, r["tree_size"], bytes(r["body_hash"]), r["timestamp"]["tsa"], gen_us,
                                     r["created_at"], "pending", None))

    def _journal_rows(self, journal: list[dict[str, Any]], rows: "_Rows") -> None:
        """Rows for what the Checker integrated: entries (the records it chose), their links,
        gaps, call-graph edges and the checkpoints it verified."""
        for rec in journal:
            if "e" in rec:
                seq, hex_hash = rec["e"]
                if "a" not in rec:
                    rows.missing.append((seq, None if hex_hash is None else bytes.fromhex(hex_hash)))
                    continue
                c = self._take(seq, bytes.fromhex(hex_hash))
                rows.entries.append(_entry_row(c))
                for position, link in enumerate(c.entry["action"].get("links") or []):
                    rows.links.append((seq, position, link["agent_id"], link["event_id"],
                                       link.get("relation") or "caused_by", None))
            elif "g" in rec:
                rows.edges.append(rec["g"])
            elif "c" in rec:
                rows.verified.append(rec["c"])

    def _write_entries(self, rows: "_Rows") -> list[tuple[int, tuple]]:
        """Insert the journal's rows; returns (size, signed note) of each newly verified
        checkpoint, in order."""
        conn = self.conn
        entry_rows = rows.entries
        if conn.execute(INSERT_ENTRIES).rowcount != len(entry_rows):
            entry_rows = self._reused_event_ids(entry_rows)
        conn.executemany("INSERT INTO links VALUES (?,?,?,?,?,?)", rows.links)
        conn.executemany("INSERT OR REPLACE INTO missing VALUES (?,?)", rows.missing)
        conn.executemany(
            "INSERT INTO agents VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(agent_id) DO UPDATE SET "
            "entries = entries + excluded.entries, last_seq = excluded.last_seq, last_time = excluded.last_time, "
            "last_occurred_at = excluded.last_occurred_at, last_action = excluded.last_action, "
            "head_hash = excluded.head_hash", _agent_rows(entry_rows))
        calls: dict[tuple[str, str], int] = {}
        for _from_seq, from_agent, _to_seq, to_agent, _relation in rows.edges:  # the linked-to agent called
            calls[(to_agent, from_agent)] = calls.get((to_agent, from_agent), 0) + 1
        conn.executemany("INSERT INTO agent_calls VALUES (?,?,?) ON CONFLICT(caller, callee) DO UPDATE SET "
                         "calls = calls + excluded.calls", [(a, b, n) for (a, b), n in calls.items()])
        conn.executemany(
            "UPDATE links SET to_seq = ?1 WHERE from_seq = ?2 AND to_agent_id = ?3 AND relation = ?4 "
            "AND to_seq IS NULL AND to_event_id = (SELECT COALESCE(event_id, event_id_reused) FROM entries "
            "WHERE seq = ?1)", [(to_seq, from_seq, to_agent, relation)
                                for from_seq, _from_agent, to_seq, to_agent, relation in rows.edges])
        targets = []
        for size, root_hex, head_hex, created_at in rows.verified:
            row = conn.execute(
                "SELECT topic_offset, origin, key_id, body, signature FROM checkpoints WHERE status = 'pending' "
                "AND tree_size = ? AND root_hash = ? AND chain_head = ? AND created_at = ? ORDER BY topic_offset "
                "LIMIT 1", (size, bytes.fromhex(root_hex), bytes.fromhex(head_hex), created_at)).fetchone()
            if row is None:
                raise RuntimeError(f"the Checker verified a checkpoint of size {size} the index has not stored")
            offset, origin, key_id, body, signature = row
            conn.execute("UPDATE checkpoints SET status = 'verified' WHERE topic_offset = ?", (offset,))
            conn.execute("UPDATE entries SET checkpoint_size = ?, checkpoint_offset = ? "
                         "WHERE seq < ? AND checkpoint_size IS NULL", (size, offset, size))
            targets.append((size, (origin, key_id, bytes(body), bytes(signature))))
        return targets

    def _reused_event_ids(self, entry_rows: list[tuple]) -> list[tuple]:
        """An event id already indexed (the signer sequences an event again once it is past
        its dedup horizon) stays with the first entry; :data:`INSERT_ENTRIES` skipped the later
        ones, inserted here with that id in ``event_id_reused`` (``entries.event_id`` is
        unique). Returns the batch's rows as stored."""
        stored = {seq for (seq,) in self.conn.execute("SELECT seq FROM entries WHERE seq BETWEEN ? AND ?",
                                                      (entry_rows[0][0], entry_rows[-1][0]))}
        out, reused = [], []
        for row in entry_rows:
            if row[0] not in stored:
                log.warning("entry %d reuses event id %r of an earlier entry (past the signer's dedup horizon): "
                            "indexed under event_id_reused", row[0], row[1])
                row = (row[0], None, row[1], *row[3:])
                reused.append(row)
            out.append(row)
        self.conn.executemany(f"INSERT INTO entries VALUES ({','.join('?' * len(entry_rows[0]))})", reused)
        return out

    def _take(self, seq: int, entry_hash: bytes) -> CheckedEntry:
        """The record integrated as ``seq``: checked with that seq and hash, lowest offset."""
        chosen = self._pending.pop((seq, entry_hash), None)
        if chosen is None:
            raise RuntimeError(f"the Checker integrated entry {seq} from a record the index has not seen")
        return chosen

    def _settle_pending(self, state: Mapping[str, Any], about: Mapping[tuple[str, int], Finding],
                        foreign: list[tuple]) -> None:
        """Checked records the Checker neither integrated nor holds (as tentative head or
        fork candidate) are foreign: it never integrates them later."""
        keep = {int(state[key][0]) for key in ("tentative", "candidate") if state.get(key)}
        held = sorted([*self._pending.values(), *self._copies], key=lambda c: c.offset)
        self._pending, self._copies = {}, []
        for c in held:
            if c.offset in keep:
                self._hold(c)
                continue
            f = about.get((ENTRIES, c.offset))
            if f is not None:
                foreign.append(_foreign_entry(c, f.kind.value, f.detail))
            else:  # the side of a fork the chain did not continue from (reported when the fork was seen)
                foreign.append(_foreign_entry(c, "fork", f"entry {c.seq} lost a fork: the chain continued from "
                                              "another entry with that seq"))

    def _settle_checkpoints(self, queued: set[int], about: Mapping[tuple[str, int], Finding]) -> set[int]:
        """Checkpoints, anchors and note signatures the Checker has evaluated (not among the
        ``queued`` offsets) get their status; returns the tree sizes of note signatures now verified."""
        conn = self.conn
        for (offset,) in conn.execute("SELECT topic_offset FROM checkpoints WHERE status = 'pending'").fetchall():
            if offset in queued:
                continue
            f = about.get((CHECKPOINTS, offset))
            conn.execute("UPDATE checkpoints SET status = ?, finding = ? WHERE topic_offset = ?",
                         ("failed" if f else "unconfirmed", f.kind.value if f else None, offset))
        for offset, body_sha256 in conn.execute(
                "SELECT topic_offset, body_sha256 FROM anchors WHERE status = 'pending'").fetchall():
            if offset in queued:
                continue
            f = about.get((CHECKPOINTS, offset))
            if f is not None:
                status = "failed"
            elif not conn.execute("SELECT 1 FROM checkpoints WHERE body_sha256 = ? AND status != 'pending'",
                                  (body_sha256,)).fetchone():
                status = "orphan"
            else:
                status = "verified" if self.config.tsa_ca is not None else "unchecked"
            conn.execute("UPDATE anchors SET status = ?, finding = ? WHERE topic_offset = ?",
                         (status, f.kind.value if f else None, offset))
        verified: set[int] = set()
        for offset, size, key_type in conn.execute(
                "SELECT topic_offset, tree_size, key_type FROM note_signatures WHERE status = 'pending'").fetchall():
            if offset in queued:
                continue
            f = about.get((CHECKPOINTS, offset))
            status = "failed" if f else "unknown_key" if key_type is None else "verified"
            if status == "verified":
                verified.add(size)
            conn.execute("UPDATE note_signatures SET status = ?, finding = ? WHERE topic_offset = ?",
                         (status, f.kind.value if f else None, offset))
        return verified

    # --- tiles -----------------------------------------------------------------------------
    def _note(self, size: int, root: bytes, last: bytes) -> bytes:
        return self._notes.pop(size)

    def _full_note(self, origin: str, key_id: str, body: bytes, signature: bytes) -> bytes:
        """The checkpoint as a signed note with every verified line the index has for it."""
        record = {"origin": origin, "key_id": key_id, "body": body, "signature": signature}
        return checkpoint_note(record, query.note_lines_of(self.conn, body, self.config), self.config)

    def _republish_note(self) -> None:
        """A cosignature on the tiles' checkpoint arrived after its tiles: add it to the file."""
        row = self.conn.execute(
            "SELECT origin, key_id, body, signature FROM checkpoints WHERE status = 'verified' AND tree_size = ? "
            "ORDER BY topic_offset LIMIT 1", (self.tiles_size,)).fetchone()
        if row is not None:
            self.tiles.republish(self._full_note(row[0], row[1], bytes(row[2]), bytes(row[3])))

    def _append_tiles_of(self, targets: list[tuple[int, tuple]]) -> None:
        """The tiles of the checkpoints a batch verified (in order), in one append up to the
        largest the entries reach, with the partial tiles of each smaller one (decision D51):
        the same files as appending up to each in turn."""
        reached: list[tuple[int, tuple]] = []  # the sizes appending each in turn would go through
        for size, checkpoint in targets:
            if size > (reached[-1][0] if reached else self.tiles_size):
                reached.append((size, checkpoint))
        while reached:
            size, checkpoint = reached.pop()
            self._append_tiles(self.tiles_size, size, self._full_note(*checkpoint), [s for s, _ in reached])
            if self.tiles_size == size:
                return

    def _append_tiles(self, start: int, size: int, note: bytes, marks: Sequence[int] = ()) -> None:
        """Append leaves [start, size) (``start`` may be below the tiles' durable size after a
        crash: those are compared) with ``note`` as the checkpoint of ``size`` and the partial
        tiles of the sizes in ``marks`` too."""
        rows = self.conn.execute(
            "SELECT seq, entry_hash FROM entries WHERE seq >= ?1 AND seq < ?2 UNION ALL "
            "SELECT seq, entry_hash FROM missing WHERE seq >= ?1 AND seq < ?2 ORDER BY seq", (start, size)).fetchall()
        if len(rows) != size - start or any(h is None for _, h in rows) or (rows and rows[0][0] != start):
            log.error("tiles stop at %d: entries [%d, %d) of the verified checkpoint %d are not all known",
                      self.tiles_size, start, size, size)
            return
        self._notes[size] = note
        try:
            self.tiles.append([h for _, h in rows], start=start, marks=marks)
        except TileConflict as exc:
            raise ConfigError(f"the tiles in {self.paths.tiles_dir} hold another log than this index ({exc}): "
                              "delete them or reindex") from exc
        finally:
            self._notes.pop(size, None)
        self.tiles_size = size


#: columns of the ``entries`` table (:func:`_entry_row`)
ENTRY_WIDTH = 18
#: the staged entry rows (``load_staged``). An entry whose event id is already indexed is skipped
#: (``_reused_event_ids``): the unique index's own check finds it, where a lookup before the insert
#: read the same random pages of that index a second time (decision D51).
INSERT_ENTRIES = "INSERT INTO entries " + staged_select(ENTRY_WIDTH) + " ON CONFLICT(event_id) DO NOTHING"


def _entry_row(c: CheckedEntry) -> tuple:
    e, raw = c.entry, bytes(c.raw)
    a = e["action"]
    return (e["seq"], a["event_id"], None, bytes(c.entry_hash), c.offset, len(raw), _sha256(raw), a["agent_id"],
            e["agent_seq"], a.get("session_id"), a["action_type"], e["received_at"], a["occurred_at"], e["key_id"],
            int(e.get("signature") is not None), bytes(a["payload_hash"]), None, None)


def _agent_rows(entry_rows: list[tuple]) -> list[list]:
    """One ``agents`` row per agent in a batch of entry rows (seq order): its count, first and
    latest entry, for an upsert that adds the count and moves the head."""
    agents: dict[str, list] = {}
    for entry in entry_rows:  # columns of _entry_row
        seq, entry_hash, agent, action, t, occurred = entry[0], entry[3], entry[7], entry[10], entry[11], entry[12]
        row = agents.get(agent)
        if row is None:
            agents[agent] = [agent, 1, seq, seq, t, t, occurred, action, entry_hash]
        else:
            row[1] += 1
            row[3:] = [seq, row[4], t, occurred, action, entry_hash]
    return list(agents.values())


def _foreign_entry(c: CheckedEntry, kind: str, detail: str) -> tuple:
    raw, e = bytes(c.raw), c.entry
    action = (e or {}).get("action") or {}
    claimed = None if e is None else bytes(e["entry_hash"])
    return (ENTRIES, c.offset, kind, detail, None if e is None else e["seq"], claimed,
            None if e is None else e.get("key_id"), action.get("agent_id"), action.get("event_id"),
            len(raw), _sha256(raw))


def _finding_row(f: Finding) -> tuple:
    where = _where(f)
    return (alert_id(f, INDEX_ID), f.kind.value, f.severity.value, f.seq_from, f.seq_to, f.agent_id,
            where[0] if where else None, where[1] if where else None, f.detail,
            json.dumps(dict(f.evidence), sort_keys=True, separators=(",", ":")))
