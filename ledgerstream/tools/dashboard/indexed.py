"""Entry pages from the ledger index: O(log n) per page at any ledger size.

The dashboard's live view (``ledger.py``) follows the topics from offset 0, so right after a
start it has not reached old entries, and what it keeps grows with the ledger. When HOME has
an index for these topics, ``/entry/<seq>`` and ``/api/entry/<seq>`` are answered from it
instead: the row, the record fetched by its offset, the core's findings about that seq, an
inclusion proof from the tiles and the anchors of the newest verified checkpoint. Same
report (``checks.EntryChecker.report``), same rule (the index ran the core Checker).
"""
from __future__ import annotations

from typing import Any

from ledgerstream.core.wire import codec
from ledgerstream.core.tiles import TileReader
from ledgerstream.core.verify import Kind
from ledgerstream.index import query
from ledgerstream.index.reads import ACCEPTED_ANCHORS, IndexedLedger
from ledgerstream.tools.dashboard.ledger import ENTRY_CHECK_OF_KIND, Anchor, CheckpointInfo, Foreign

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
        fetched = query.fetch_records(self.ix.bootstrap, self.ix.topics.checkpoints, [a.topic_offset for a in anchors])
        out = []
        for a in anchors:
            rec: dict[str, Any] = codec.decode(fetched[a.topic_offset], expect="TimestampAnchor")[1]
            out.append((cp, Anchor(a.tsa, bytes(rec["timestamp"]["token"]), a.topic_offset)))
        return out
