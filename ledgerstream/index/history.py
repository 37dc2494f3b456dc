"""The index Checker's per-entry memory, on disk: flat RSS and a restart in seconds at any size.

The index already stores every entry in SQLite, so its Checker's
:class:`~ledgerstream.core.verify.History` (a :class:`~ledgerstream.core.spilled.SpilledHistory`) is:

- entry hashes and the Merkle tree's levels in append-only files of 32-byte hashes
  (``HISTORY_DIR/hashes``, ``HISTORY_DIR/level-<k>``), with only an unflushed tail in memory
  and every other read an ``os.pread``;
- event ids and agent heads answered from the ``entries`` table, with the entries integrated
  since the last commit (not yet rows) in memory, and a bounded cache of agent heads.

Crash safety follows the database: the files are flushed and fsynced before each commit
and cut back at open to the committed size, which the state in the database records; whatever
a crash left beyond it is discarded.

A batch is committed on the index's writer thread while the Checker is fed the next one
(decision D50). :meth:`IndexHistory.seal` starts such a commit: what the batch added moves to
an in-flight generation, still answered from memory until :meth:`IndexHistory.committed`; the
database is read through its own connection, which sees committed rows only.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable

from ledgerstream.core.spilled import SpilledHistory, SpillIncomplete
from ledgerstream.core.verify import AgentHead
from ledgerstream.core.verify.history import CheckpointBody
from ledgerstream.index.db import IndexOutdated


class IndexHistory(SpilledHistory):
    """The :class:`~ledgerstream.core.verify.History` of the index's Checker: hashes and tree
    levels in files, everything else answered from the index's own tables."""

    graph_edges = 0  # the index keeps every edge in its links table

    def __init__(self, conn: sqlite3.Connection, directory: Path, size: int, *, fsync: bool = True) -> None:
        try:
            super().__init__(directory, size, fsync=fsync)
        except SpillIncomplete as exc:
            raise IndexOutdated(f"{exc} (rebuild: ledgerstream index run --reindex)") from exc
        self._conn = conn
        self._sealed_events: dict[str, tuple[int, str]] = {}
        self._sealed_bodies: dict[bytes, CheckpointBody] = {}
        self._touched: set[str] = set()  # agents whose head was set since the last seal

    def seal(self) -> Callable[[], None]:
        """The batch fed so far is being committed: its hashes are written out, its events,
        bodies and agent heads stay answered from memory until :meth:`committed`. Returns
        the fsync of the written files, for the committing thread to call before it commits."""
        if self._sealed_events or self._sealed_bodies:
            raise RuntimeError("IndexHistory.seal: the previous batch is not committed yet")
        self._sealed_events, self._events = self._events, {}
        self._sealed_bodies, self._bodies = self._bodies, {}
        self._touched = set()
        files = self.files()
        for f in files:
            f.flush()

        def fsync() -> None:
            for f in files:
                f.fsync()
        return fsync

    def sync(self) -> None:
        self.seal()()

    def committed(self) -> None:
        """The sealed batch's rows are in the database now: drop what they answer. Heads set
        since the seal are not committed and stay (the cache is trimmed to them)."""
        self._sealed_events, self._sealed_bodies = {}, {}
        if len(self._agents) > self.agent_cache:
            self._agents = {a: self._agents[a] for a in self._touched}

    def set_agent(self, agent_id: str, head: AgentHead) -> None:
        super().set_agent(agent_id, head)
        self._touched.add(agent_id)

    def event(self, event_id: str) -> tuple[int, str] | None:
        known = self._events.get(event_id) or self._sealed_events.get(event_id)
        if known is not None:
            return known
        row = self._conn.execute(
            "SELECT seq, agent_id FROM entries WHERE event_id = ?1 OR event_id_reused = ?1 ORDER BY seq DESC LIMIT 1",
            (event_id,)).fetchone()
        return None if row is None else (int(row[0]), row[1])

    def checkpoint_body(self, body_hash: bytes) -> CheckpointBody | None:
        known = self._bodies.get(body_hash) or self._sealed_bodies.get(body_hash)
        if known is not None:
            return known
        row = self._conn.execute("SELECT tree_size, body, created_at FROM checkpoints WHERE body_sha256 = ? "
                                 "AND status != 'pending' ORDER BY topic_offset LIMIT 1", (body_hash,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]), int(row[2]))

    def agent(self, agent_id: str) -> AgentHead | None:
        head = self._agents.get(agent_id)
        if head is None:
            row = self._conn.execute("SELECT agent_seq, entry_hash, seq FROM entries WHERE agent_id = ? "
                                     "ORDER BY seq DESC LIMIT 1", (agent_id,)).fetchone()
            if row is None:
                return None
            head = self._agents[agent_id] = (int(row[0]) + 1, bytes(row[1]), int(row[2]))
        return head
