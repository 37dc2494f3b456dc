"""Per-agent summary of the ledger: how many entries, seq range, last activity, chain head.

Reads the single-partition ``entries`` topic from its beginning (assign + seek, a fresh
random group, read_committed: the signer writes in transactions) and folds every
``LedgerEntry`` into one row per agent.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Iterable

from ledgerstream.core import codec
from ledgerstream.core.errors import DecodeError

log = logging.getLogger("ledgerstream.tools.agents")


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

    ``last_activity`` is when the agent's latest entry happened (the action's occurred_at).
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
        row.last_activity_us = max(row.last_activity_us, action["occurred_at"])
    return [rows[k] for k in sorted(rows)]


def read_entries(bootstrap: str, topic: str, timeout: float = 60.0) -> tuple[list[dict[str, Any]], int]:
    """Every decodable LedgerEntry of ``topic`` and the number of records that were not."""
    from ledgerstream.producers.topic_reader import read_all

    entries, bad = [], 0
    for msg in read_all(bootstrap, topic, timeout=timeout):
        try:
            entries.append(codec.decode(msg.value(), expect="LedgerEntry")[1])
        except DecodeError as exc:
            bad += 1
            log.warning("%s@%d is not a LedgerEntry: %s", topic, msg.offset(), exc)
    return entries, bad
