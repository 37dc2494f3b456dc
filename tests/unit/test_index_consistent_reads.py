"""``IndexedLedger.consistent``: an answer built from several queries reads one committed state
of the index, even while the follower commits (SQLite WAL read transactions). Without it,
``checkpoints list`` once printed a checkpoint with both witnesses' cosignatures verified
and ``witnessed: false``: the witnessed size was read before the follower's commit, the
cosignatures after it."""
from __future__ import annotations

from pathlib import Path

import pytest

from ledgerstream.core.config import Topics
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
