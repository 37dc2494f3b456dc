"""``IndexedLedger.consistent``: an answer built from several queries reads one committed state
of the index, even while the follower commits (SQLite WAL read transactions). Without it,
``checkpoints list`` once printed a checkpoint with both witnesses' cosignatures verified
and ``witnessed: false``: the witnessed size was read before the follower's commit, the
cosignatures after it."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ledgerstream.core.config import Topics
from ledgerstream.core.wire import codec
from ledgerstream.index import query
from ledgerstream.index.db import open_db, set_meta
from ledgerstream.index.paths import IndexPaths
from ledgerstream.index.reads import IndexedLedger

pytestmark = pytest.mark.unit


def test_reads_inside_see_one_commit_and_later_reads_see_the_next(tmp_path: Path) -> None:
    paths = IndexPaths.of(tmp_path)
    writer = open_db(paths.db)

    def commit(size: int) -> None:
        writer.execute("BEGIN")
        set_meta(writer, "indexed_size", size)
        writer.execute("COMMIT")

    commit(10)
    ledger = IndexedLedger.open(paths, "127.0.0.1:9", Topics.with_prefix("t."), None)
    assert ledger is not None
    try:
        with ledger.consistent():
            assert query.indexed_size(ledger.conn) == 10
            commit(20)  # the follower commits while the answer is being built
            assert query.indexed_size(ledger.conn) == 10
        assert query.indexed_size(ledger.conn) == 20
        with ledger.consistent():
            commit(30)
            assert query.indexed_size(ledger.conn) == 30  # the snapshot starts at the first read
    finally:
        ledger.close()
        writer.close()


def test_listing_checkpoints_fetches_their_anchors_over_one_consumer(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # `checkpoints list` fetches every listed checkpoint's accepted anchors by offset: k
    # checkpoints cost k fetches over one consumer of the checkpoints topic, not k consumers
    # (~15 ms each to create and close)
    topics = Topics.with_prefix("t.")
    records: dict[int, bytes] = {}
    checkpoints = []
    writer = open_db(IndexPaths.of(tmp_path).db)
    writer.execute("BEGIN")
    for k in range(5):
        body = f"ledgerstream/test\n{k + 1}\n".encode()
        digest = hashlib.sha256(body).digest()
        checkpoints.append(query.Checkpoint(10 * k, k + 1, bytes(32), bytes(32), k, "o", "abcd", body, b"s",
                                            "verified", None))
        for j, status in enumerate(("verified", "failed", "unchecked")):
            offset = 10 * k + 1 + j
            records[offset] = codec.encode("TimestampAnchor", {
                "tree_size": k + 1, "body_hash": digest, "timestamp": {"tsa": f"tsa-{j}", "token": bytes([k, j])},
                "created_at": k})
            writer.execute("INSERT INTO anchors VALUES (?,?,?,?,?,?,?,?)",
                           (offset, k + 1, digest, f"tsa-{j}", None, k, status, None))
    writer.execute("COMMIT")
    opened: list[str] = []

    class Fetcher:
        def __init__(self, bootstrap: str, topic: str, **_: object) -> None:
            opened.append(topic)

        def fetch(self, offsets: list[int]) -> dict[int, bytes]:
            return {o: records[o] for o in offsets}

        def close(self) -> None:
            pass

        def __enter__(self) -> "Fetcher":
            return self

        def __exit__(self, *_: object) -> None:
            pass

    monkeypatch.setattr(query, "RecordFetcher", Fetcher)
    ledger = IndexedLedger.open(IndexPaths.of(tmp_path), "127.0.0.1:9", topics, None)
    assert ledger is not None
    try:
        got = [[(a["timestamp"]["tsa"], a["timestamp"]["token"]) for a in ledger.anchor_records(c)]
               for c in checkpoints]
    finally:
        ledger.close()
        writer.close()
    assert got == [[("tsa-0", bytes([k, 0])), ("tsa-2", bytes([k, 2]))] for k in range(5)]  # accepted only
    assert opened == [topics.checkpoints]
