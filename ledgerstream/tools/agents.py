"""Per-agent summary of the ledger: how many entries, seq range, last activity, chain head.

Only entries of the ledger count: from the ledger index when there is one (its ``agents``
summary, one row per agent: :func:`from_index`), else from one read of both topics through
the core Checker (``core/adoption.py``), so a record signed by another key, a fork or a
replayed copy never shows up as an agent's action.
"""
from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from typing import Any, Iterable

from ledgerstream.core.adoption import adopt
from ledgerstream.core.config import Topics
from ledgerstream.core.topic_reader import read_partition
from ledgerstream.core.verify import CheckerConfig
from ledgerstream.index import query


@dataclass
class AgentRow:
    agent_id: str
    entries: int
    first_seq: int
    last_seq: int
    last_activity_us: int
    chain_head: str

    def as_dict(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "entries": self.entries, "first_seq": self.first_seq,
                "last_seq": self.last_seq, "last_activity": iso_time(self.last_activity_us),
                "chain_head": self.chain_head}


def iso_time(micros: int) -> str:
    return dt.datetime.fromtimestamp(micros / 1e6, tz=dt.timezone.utc).isoformat(timespec="milliseconds")


def summarize(entries: Iterable[dict[str, Any]]) -> list[AgentRow]:
    """Fold LedgerEntry records (in ledger order) into one row per agent, sorted by agent id.

    ``last_activity`` is when the agent's latest entry (highest seq) happened: its action's
    ``occurred_at``, the agent's own clock.
    """
    rows: dict[str, AgentRow] = {}
    for entry in entries:
        action = entry["action"]
        agent = action["agent_id"]
        row = rows.get(agent)
        if row is None:
            rows[agent] = AgentRow(agent, 1, entry["seq"], entry["seq"], action["occurred_at"],
                                   bytes(entry["entry_hash"]).hex())
            continue
        row.entries += 1
        row.first_seq = min(row.first_seq, entry["seq"])
        if entry["seq"] >= row.last_seq:
            row.last_seq = entry["seq"]
            row.chain_head = bytes(entry["entry_hash"]).hex()
            row.last_activity_us = action["occurred_at"]
    return [rows[k] for k in sorted(rows)]


def ledger_entries(bootstrap: str, topics: Topics, config: CheckerConfig, *, with_checkpoints: bool = True
                   ) -> tuple[list[dict[str, Any]], int]:
    """The ledger's entries (the records the core adopts), in seq order, and how many other
    records the entries topic holds (forks, copies, other keys, undecodable)."""
    entries: list[dict[str, Any]] = []
    checkpoints = list(read_partition(bootstrap, topics.checkpoints)) if with_checkpoints else []
    run = adopt(read_partition(bootstrap, topics.entries), checkpoints, config, lambda c: entries.append(c.entry))
    return entries, len(run.foreign)


def from_index(conn: sqlite3.Connection) -> list[AgentRow]:
    """The same rows from the ledger index's ``agents`` summary: O(A), never the topic."""
    return [AgentRow(a.agent_id, a.entries, a.first_seq, a.last_seq, a.last_occurred_at, a.head_hash.hex())
            for a in query.agents(conn)]
