"""A verifier worker's per-entry memory on disk: flat RSS and a restart in seconds at any size.

The Checker needs, for every earlier entry, its hash and the Merkle tree (in files, see
``core/spilled.py``), which entry carries an event id and each agent's head (links and the
agent chain). Unlike the ledger index, a verifier has no table of entries to answer the last
two from, so it keeps them in tables of its own in ``state.sqlite``, next to the Checker's
state: one SQLite commit makes a batch durable (:meth:`VerifierHistory.write` inside it).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from ledgerstream.core.spilled import SpilledHistory
from ledgerstream.core.verify import AgentHead
from ledgerstream.core.verify.history import CheckpointBody

#: the newest call-graph edges kept in memory and in each saved state: what graph.json shows
#: (every agent pair is counted)
GRAPH_EDGES = 1_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (id INTEGER PRIMARY KEY, line TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, agent_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agents (agent_id TEXT PRIMARY KEY, next_agent_seq INTEGER NOT NULL,
                                   entry_hash BLOB NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bodies (body_sha256 BLOB PRIMARY KEY, tree_size INTEGER NOT NULL,
                                   body BLOB NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;
"""


class VerifierHistory(SpilledHistory):
    """Hashes and tree levels in files; event ids, agent heads and checkpoint bodies in tables."""

    graph_edges = GRAPH_EDGES

    def __init__(self, conn: sqlite3.Connection, directory: Path, size: int, *, fsync: bool = True) -> None:
        super().__init__(directory, size, fsync=fsync)
        self._conn = conn
        self._dirty_agents: set[str] = set()

    def event(self, event_id: str) -> tuple[int, str] | None:
        known = self._events.get(event_id)
        if known is not None:
            return known
        row = self._conn.execute("SELECT seq, agent_id FROM events WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else (int(row[0]), row[1])

    def agent(self, agent_id: str) -> AgentHead | None:
        head = self._agents.get(agent_id)
        if head is None:
            row = self._conn.execute("SELECT next_agent_seq, entry_hash, seq FROM agents WHERE agent_id = ?",
                                     (agent_id,)).fetchone()
            if row is None:
                return None
            head = self._agents[agent_id] = (int(row[0]), bytes(row[1]), int(row[2]))
        return head

    def set_agent(self, agent_id: str, head: AgentHead) -> None:
        super().set_agent(agent_id, head)
        self._dirty_agents.add(agent_id)

    def checkpoint_body(self, body_hash: bytes) -> CheckpointBody | None:
        known = self._bodies.get(body_hash)
        if known is not None:
            return known
        row = self._conn.execute("SELECT tree_size, body, created_at FROM bodies WHERE body_sha256 = ?",
                                 (body_hash,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]), int(row[2]))

    def write(self) -> None:
        """Write what was integrated since the last commit, inside the caller's transaction."""
        self._conn.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?)",
                               [(ev, seq, agent) for ev, (seq, agent) in self._events.items()])
        self._conn.executemany("INSERT OR REPLACE INTO agents VALUES (?, ?, ?, ?)",
                               [(a, *self._agents[a]) for a in self._dirty_agents])
        self._conn.executemany("INSERT OR REPLACE INTO bodies VALUES (?, ?, ?, ?)",
                               [(h, *body) for h, body in self._bodies.items()])

    def committed(self) -> None:
        self._dirty_agents.clear()
        super().committed()
