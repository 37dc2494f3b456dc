"""The dashboard's answers from the ledger index: O(log n) or O(k) per answer at any size.

The dashboard's live view (``ledger.py``) follows the topics from offset 0: what it keeps
and its start-up replay grow with the ledger. When HOME has an index of these topics under
the dashboard's trusted keys, every ledger question is answered from it instead (the index
ran the core Checker: same rule, same entries):

- ``/entry/<seq>`` and ``/api/entry/<seq>`` (:class:`IndexedEntries`): the row, the record
  fetched by its offset, the core's findings about that seq, an inclusion proof from the
  tiles and the anchors of the newest verified checkpoint, through the same report
  (``checks.EntryChecker.report``);
- the overview, ``/api/head``, ``/api/checkpoints``, ``/api/agents``, ``/api/graph``
  (:class:`IndexedOverview`): the index's summaries (``agents``, ``agent_calls``) and a
  bounded number of rows each.
"""
from __future__ import annotations

import time
from typing import Any, Iterable

from ledgerstream.core.wire import codec
from ledgerstream.core.tiles import TileReader
from ledgerstream.core.verify import Kind
from ledgerstream.index import query
from ledgerstream.index.paths import IndexPaths
from ledgerstream.index.reads import ACCEPTED_ANCHORS, IndexedLedger
from ledgerstream.index.status import follower_status
from ledgerstream.tools.dashboard.ledger import ENTRY_CHECK_OF_KIND, Anchor, CheckpointInfo, Foreign, call_graph

#: a checkpoint the index calls verified had its signature verified under the trusted keys
_SIGNATURE_STATUS = "valid"


class IndexedEntries:
    """The part of :class:`~ledgerstream.tools.dashboard.ledger.LedgerView` an entry report
    reads, answered by one open index (use from one thread; close after)."""

    def __init__(self, ix: IndexedLedger) -> None:
        self.ix = ix
        self._latest = query.latest_checkpoint(ix.conn)
        self.tree = TileReader(ix.paths.tiles_dir, query.tiles_size(ix.conn))

    def has(self, seq: int) -> bool:
        return 0 <= seq < query.indexed_size(self.ix.conn)

    def locate(self, seq: int) -> tuple[int, bytes | None, int]:
        """(offset, raw record, previous seq of the same agent): LookupError for a gap."""
        row = self.ix.row(seq, 0.0)
        raw = query.raw_entries(self.ix.conn, [row], self.ix.bootstrap, self.ix.topics.entries,
                                fetcher=self.ix.records())[seq]
        previous = query.entry_by_agent_seq(self.ix.conn, row.agent_id, row.agent_seq - 1) if row.agent_seq else None
        return row.topic_offset, raw, previous.seq if previous is not None else -1

    def issues(self, seq: int) -> dict[str, str]:
        out: dict[str, str] = {}
        for kind, detail in query.entry_findings(self.ix.conn, seq):
            check = ENTRY_CHECK_OF_KIND.get(Kind(kind))
            if check is not None:
                out.setdefault(check, detail)
        return out

    def other_records(self, seq: int) -> list[Foreign]:
        return [Foreign(f.topic_offset, f.claimed_seq, f"{f.kind}: {f.detail}")
                for f in query.foreign_records(self.ix.conn, self.ix.topics.entries) if f.claimed_seq == seq]

    @property
    def witnessed_size(self) -> int:
        return self.ix.witnessed_size

    def latest_checkpoint(self) -> CheckpointInfo | None:
        c = self._latest
        if c is None:
            return None
        return CheckpointInfo(c.topic_offset, c.tree_size, c.root_hash, c.chain_head, c.created_at, c.body, c.key_id,
                              c.signature, _SIGNATURE_STATUS)

    def anchors_of(self, tree_size: int) -> list[tuple[CheckpointInfo, Anchor]]:
        cp = self.latest_checkpoint()
        if cp is None or cp.tree_size != tree_size or self._latest is None:
            return []
        anchors = [a for a in query.anchors_of(self.ix.conn, self._latest) if a.status in ACCEPTED_ANCHORS]
        fetched = self.ix.records(self.ix.topics.checkpoints).fetch([a.topic_offset for a in anchors]) if anchors else {}
        out = []
        for a in anchors:
            rec: dict[str, Any] = codec.decode(fetched[a.topic_offset], expect="TimestampAnchor")[1]
            out.append((cp, Anchor(a.tsa, bytes(rec["timestamp"]["token"]), a.topic_offset)))
        return out


def index_progress(paths: IndexPaths) -> dict[str, Any]:
    """How current the index's answers are, from its follower's status file: whether a follower
    runs, is caught up, and how many records it has still to read (the page says so: answers
    from a lagging or stopped index are never shown as current)."""
    status = follower_status(paths)
    if status is None:
        return {"follower": "none", "caught_up": False, "records_behind": None, "updated_at": None}
    behind = status.get("records_behind") or {}
    known = [n for n in behind.values() if isinstance(n, int)]
    return {"follower": "running" if status["alive"] else "stopped",
            "caught_up": bool(status["alive"] and status.get("caught_up")),
            "records_behind": sum(known) if known else None, "updated_at": status.get("updated_at")}


#: the dashboard's root column for each status of an indexed checkpoint
_ROOT_OF_STATUS = {"verified": "match", "pending": "pending", "unconfirmed": "unconfirmed"}
RECENT_CALLS = 50


class IndexedOverview:
    """The overview's ledger part (the readers of
    :class:`~ledgerstream.tools.dashboard.ledger.LedgerView` the API uses), answered by one
    open index: each a bounded number of rows, never a scan of the entries."""

    source = "index"

    def __init__(self, ix: IndexedLedger) -> None:
        self.ix = ix

    def head(self, now_us: int | None = None) -> dict[str, Any]:
        conn = self.ix.conn
        now_us = now_us or time.time_ns() // 1000
        size = query.indexed_size(conn)
        last = query.entry_by_seq(conn, size - 1) if size else None
        latest = query.latest_checkpoint(conn)
        foreign = query.foreign_count(conn, self.ix.topics.entries)
        return {
            "size": size, "seq": size - 1 if size else None,
            "entry_hash": last.entry_hash.hex() if last else None,
            # the root of the newest verified checkpoint (the tiles' tree), not of entries it does not cover yet
            "root": latest.root_hash.hex() if latest else None, "root_size": latest.tree_size if latest else 0,
            "last_received_at": last.time if last else None,
            # the entry records indexed (a gap has no record) and those kept out of the ledger
            "records_on_topic": size - query.missing_count(conn) + foreign, "foreign_records": foreign,
            "throughput": {"per_second_10s": round(query.entries_since(conn, now_us - 10_000_000) / 10, 2),
                           "per_second_1m": round(query.entries_since(conn, now_us - 60_000_000) / 60, 2)},
            "source": self.source,
            "index": index_progress(self.ix.paths),
        }

    def checkpoint_views(self, limit: int = 50) -> list[dict[str, Any]]:
        witnessed = self.ix.witnessed_size
        out = []
        for c in query.recent_checkpoints(self.ix.conn, limit):
            bad_signature = c.finding == Kind.CHECKPOINT_BAD_SIGNATURE.value
            out.append({"tree_size": c.tree_size, "root_hash": c.root_hash.hex(), "chain_head": c.chain_head.hex(),
                        "created_at": c.created_at, "key_id": c.key_id,
                        "signature": "invalid" if bad_signature else "valid",
                        "root": _ROOT_OF_STATUS.get(c.status, "mismatch"), "status": c.status, "finding": c.finding,
                        "offset": c.topic_offset,
                        "anchors": [{"tsa": a.tsa, "offset": a.topic_offset, "status": a.status}
                                    for a in query.anchors_of(self.ix.conn, c)],
                        "witnessed": c.status == "verified" and 0 < c.tree_size <= witnessed})
        return out

    def agent_views(self) -> list[dict[str, Any]]:
        breaks = query.finding_counts_by_agent(self.ix.conn, Kind.AGENT_CHAIN_BREAK.value)
        rows = sorted(query.agents(self.ix.conn), key=lambda a: -a.entries)
        return [{"agent_id": a.agent_id, "count": a.entries, "head_seq": a.last_seq, "head_hash": a.head_hash.hex(),
                 "last_action": a.last_action, "first_seen": a.first_time, "last_seen": a.last_time,
                 "chain_breaks": breaks.get(a.agent_id, 0)} for a in rows]

    def graph(self, verifier_edges: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
        conn = self.ix.conn
        recent = [{"caller_seq": a, "caller": b, "callee_seq": c, "callee": d}
                  for a, b, c, d in query.recent_calls(conn, RECENT_CALLS)]
        return call_graph(query.agent_calls(conn), recent, {a.agent_id for a in query.agents(conn)}, verifier_edges)

    def foreign_views(self, limit: int = 50) -> list[dict[str, Any]]:
        return [{"offset": f.topic_offset, "seq": f.claimed_seq, "reason": f"{f.kind}: {f.detail}"}
                for f in query.recent_foreign(self.ix.conn, self.ix.topics.entries, limit)]
