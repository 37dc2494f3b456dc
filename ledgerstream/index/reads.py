"""Answers for ``show`` and ``prove`` from the index and its tiles: O(log n), never a topic scan.

An entry is read by seq from SQLite, its record fetched from Kafka by offset (and checked
against the digest indexed); proofs and roots come from the tiles, which hold the tree of
the newest verified checkpoint. The index only holds entries the core ``Checker`` accepted,
so a forged record on the topic is never shown as entry N.

A question the index cannot answer yet is never answered from stale data: if the ledger has
the entry (its newest genuine entry is read from the topic's tail, a few records) and the
follower runs, :meth:`IndexedLedger.require` waits up to ``wait`` seconds; otherwise it says
why (:class:`NotIndexed`).
"""
from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ledgerstream.core import merkle, records
from ledgerstream.core.wire import codec
from ledgerstream.core.config import Topics
from ledgerstream.core.errors import ConfigError, LedgerstreamError
from ledgerstream.core.tiles import TileReader
from ledgerstream.core.verify import CheckerConfig
from ledgerstream.core.verify.checkpoints import NoteLine
from ledgerstream.index import query
from ledgerstream.index.db import get_meta, open_db
from ledgerstream.index.paths import IndexPaths
from ledgerstream.index.status import NoGenuineEntry, follower_alive, newest_seq

#: how often a waiting read looks at the index again
POLL_SECONDS = 0.2
#: anchor statuses whose RFC 3161 token a checkpoint is exported and listed with
#: ("unchecked": the index has no TSA CA to check it against)
ACCEPTED_ANCHORS = ("verified", "unchecked")


class NotIndexed(LookupError):
    """The index cannot answer (yet): the message says what is missing and what to do."""


@dataclass
class IndexedLedger:
    """A read-only view of the index of one ledger (``open`` returns None without one)."""

    conn: sqlite3.Connection
    paths: IndexPaths
    bootstrap: str
    topics: Topics
    config: CheckerConfig | None

    @classmethod
    def open(cls, paths: IndexPaths, bootstrap: str, topics: Topics,
             config: CheckerConfig | None) -> "IndexedLedger | None":
        """The index at ``paths`` if it exists and follows ``topics``; None otherwise."""
        if not paths.db.exists():
            return None
        conn = open_db(paths.db, readonly=True)
        followed = get_meta(conn, "topics")
        if followed is not None and (followed.get("entries"), followed.get("checkpoints")) != (
                topics.entries, topics.checkpoints):
            conn.close()
            return None
        return cls(conn, paths, bootstrap, topics, config)

    _fetchers: dict[str, query.RecordFetcher] = field(default_factory=dict, init=False, repr=False)

    @contextmanager
    def consistent(self) -> Iterator[None]:
        """Every query inside reads one committed state of the index (a read transaction):
        answers built from several queries never mix two of the follower's commits."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        for fetcher in self._fetchers.values():
            fetcher.close()
        self._fetchers.clear()
        self.conn.close()

    def records(self, topic: str | None = None) -> query.RecordFetcher:
        """Records of ``topic`` (default: the entries topic) by offset, over one consumer per
        topic for this view's life: listing k checkpoints costs k fetches, not k consumers."""
        topic = topic or self.topics.entries
        if topic not in self._fetchers:
            self._fetchers[topic] = query.RecordFetcher(self.bootstrap, topic)
        return self._fetchers[topic]

    # --- waiting for a lagging index -----------------------------------------------------
    def require(self, ready: Callable[[], bool], what: str, needed_seq: int, wait: float,
                absent: Callable[[int], str] | None = None) -> None:
        """Return once ``ready()``; wait up to ``wait`` s while the ledger has entry
        ``needed_seq`` and the follower runs. LookupError if the ledger has no such entry
        (message ``absent(ledger size)``), :class:`NotIndexed` if the index does not catch up."""
        if ready():
            return
        try:
            newest = newest_seq(self.bootstrap, self.topics, self.config)
        except (LedgerstreamError, NoGenuineEntry) as exc:
            raise NotIndexed(f"{what} is not in the index (indexed {query.indexed_size(self.conn)} entries) "
                             f"and the ledger's end cannot be read: {exc}") from exc
        if newest is None or needed_seq > newest:
            size = 0 if newest is None else newest + 1
            raise LookupError(absent(size) if absent else f"no entry with seq {needed_seq} (ledger has {size} entries)")
        deadline = time.monotonic() + wait
        while follower_alive(self.paths) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            if ready():
                return
        running = "running" if follower_alive(self.paths) else "not running"
        raise NotIndexed(f"{what} is in the ledger but not in the index yet (indexed {query.indexed_size(self.conn)} "
                         f"of {newest + 1} entries, tiles up to {query.tiles_size(self.conn)}; index follower "
                         f"{running}): start 'ledgerstream index run' or pass a longer --wait")

    # --- reads ---------------------------------------------------------------------------
    def row(self, seq: int, wait: float) -> query.Entry:
        """Indexed entry ``seq`` (its row only: hashes, offset, ids)."""
        self.require(lambda: query.indexed_size(self.conn) > seq, f"entry {seq}", seq, wait)
        row = query.entry_by_seq(self.conn, seq)
        if row is None:  # a gap the Checker reported: seq is indexed as missing
            raise LookupError(f"entry {seq} is missing from the ledger (the index recorded a gap there)")
        return row

    def entry(self, seq: int, wait: float) -> tuple[query.Entry, dict[str, Any]]:
        """Indexed entry ``seq`` and its decoded LedgerEntry record (fetched by offset)."""
        row = self.row(seq, wait)
        raw = query.raw_entries(self.conn, [row], self.bootstrap, self.topics.entries, fetcher=self.records())[seq]
        return row, codec.decode(raw, expect="LedgerEntry")[1]

    def _tiles(self, size: int, wait: float) -> TileReader:
        """Tiles holding the tree of ``size`` entries (the newest verified checkpoint's size
        must have reached it)."""
        self.require(lambda: query.tiles_size(self.conn) >= size,
                     f"a verified checkpoint of at least {size} entries", size - 1, wait,
                     lambda ledger: f"tree size {size} must be <= {ledger} (ledger size)")
        return TileReader(self.paths.tiles_dir, query.tiles_size(self.conn))

    def inclusion(self, seq: int, tree_size: int | None, wait: float) -> dict[str, Any]:
        """``prove inclusion --json``: entry ``seq`` in the tree of ``tree_size`` (default:
        the newest verified checkpoint)."""
        row = self.row(seq, wait)  # the proof needs the indexed entry hash, not the record
        if tree_size is None:
            self.require(lambda: query.tiles_size(self.conn) > seq, f"a verified checkpoint covering seq {seq}",
                         seq, wait)
            tree_size = query.tiles_size(self.conn)
        if tree_size <= seq:
            raise LookupError(f"tree size {tree_size} must be > {seq}")
        tiles = self._tiles(tree_size, wait)
        leaf = merkle.leaf_hash(records.merkle_leaf_input(row.entry_hash))
        if tiles.node(0, seq) != leaf:
            raise ConfigError(f"the tiles in {self.paths.tiles_dir} disagree with the index at seq {seq}: reindex")
        return {"leaf_index": seq, "tree_size": tree_size, "leaf_hash": leaf.hex(), "entry_hash": row.entry_hash.hex(),
                "root_hash": tiles.root(tree_size).hex(),
                "audit_path": [h.hex() for h in tiles.inclusion_proof(seq, tree_size)]}

    def consistency(self, first: int, second: int, wait: float) -> dict[str, Any]:
        """``prove consistency --json`` between trees of ``first`` <= ``second`` entries."""
        tiles = self._tiles(second, wait)
        return {"first_size": first, "second_size": second, "first_root": tiles.root(first).hex(),
                "second_root": tiles.root(second).hex(),
                "consistency_path": [h.hex() for h in tiles.consistency_proof(first, second)]}


    # --- checkpoints -----------------------------------------------------------------------
    def anchor_records(self, checkpoint: query.Checkpoint) -> list[dict[str, Any]]:
        """The TimestampAnchor records (token included) the Checker accepted for ``checkpoint``,
        fetched from the checkpoints topic by offset, in topic order."""
        anchors = [a for a in query.anchors_of(self.conn, checkpoint) if a.status in ACCEPTED_ANCHORS]
        fetched = self.records(self.topics.checkpoints).fetch([a.topic_offset for a in anchors]) if anchors else {}
        return [codec.decode(fetched[a.topic_offset], expect="TimestampAnchor")[1] for a in anchors]

    def note_lines(self, checkpoint: query.Checkpoint) -> list[NoteLine]:
        """The checked signed-note lines of configured keys over ``checkpoint``."""
        return [] if self.config is None else query.note_lines_of(self.conn, checkpoint.body, self.config)

    @property
    def witnessed_size(self) -> int:
        """The largest tree size the configured quorum of witnesses has cosigned (the cosignatures
        the index's Checker verified)."""
        return 0 if self.config is None else self.config.witnessed_size(query.witness_sizes(self.conn, self.config))

    def checkpoints(self) -> list[query.Checkpoint]:
        """The verified checkpoints, smallest first: forged or failed ones are never listed."""
        return query.verified_checkpoints(self.conn)

    def checkpoint(self, tree_size: int, wait: float) -> query.Checkpoint:
        """The verified checkpoint of exactly ``tree_size`` entries; LookupError naming the
        finding if the only ones of that size failed, or if there is none."""
        self.require(lambda: query.indexed_size(self.conn) >= tree_size, f"checkpoint {tree_size}", tree_size - 1,
                     wait, lambda ledger: f"no checkpoint with tree size {tree_size} (ledger has {ledger} entries)")
        deadline = time.monotonic() + wait
        while True:
            found = query.checkpoints_of_size(self.conn, tree_size)
            verified = [c for c in found if c.status == "verified"]
            if verified:
                return verified[0]
            if not any(c.status == "pending" for c in found) or time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)  # its root is checked once the tiles reach its size
        if found:
            why = ", ".join(f"{c.status}{f' ({c.finding})' if c.finding else ''}" for c in found)
            raise LookupError(f"the checkpoint of tree size {tree_size} is not verified: {why}")
        known = [c.tree_size for c in self.checkpoints()][-10:]
        raise LookupError(f"no checkpoint with tree size {tree_size}; known sizes: {known}")


def trust_of(home: Path) -> CheckerConfig | None:
    """The verifier's trust for ``home`` (HOME/keys, TSA CA, policy); None without a trusted key."""
    from ledgerstream.core.verify import checker_config

    try:
        return checker_config(home)
    except ConfigError:
        return None


def open_for(home: Path, bootstrap: str, topics: Topics) -> IndexedLedger | None:
    """The index under ``home`` (HOME/index, HOME/tiles) for this ledger, if there is one; its
    end is judged under :func:`trust_of` ``home`` (or by the newest decodable entry)."""
    return IndexedLedger.open(IndexPaths.of(home), bootstrap, topics, trust_of(home))
