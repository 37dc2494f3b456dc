"""index/history.py: the index Checker's per-entry state on disk.

Oracles: an RFC 9162 Merkle tree computed here from the leaves (tests/support/rfc9162_checker.py,
no project Merkle code), the in-memory Checker over the same records, and Python's own
allocation tracing for "memory does not grow with the ledger"."""
from __future__ import annotations

import gc
import os
import random
import shutil
import tracemalloc
from pathlib import Path
from typing import Callable

import pytest

from ledgerstream.core import mldsa
from ledgerstream.core.verify import Checker, CheckerConfig
from ledgerstream.core import spilled
from ledgerstream.index.core import IndexCore
from ledgerstream.index.db import IndexOutdated
from ledgerstream.core.spilled import SpilledHashes, SpilledTree, SpillIncomplete
from ledgerstream.index.paths import IndexPaths
from support.ledger_builder import LedgerBuilder, entry_bytes
from support.rfc9162_checker import mth_from_leaf_hashes, verify_consistency, verify_inclusion
from test_index_core import genuine_ledger

pytestmark = pytest.mark.unit

KEY = mldsa.PrivateKey.from_seed(bytes(range(32)))
CONFIG = CheckerConfig.from_keys([KEY.public_key()])


@pytest.fixture(autouse=True)
def small_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spilled, "TAIL_BYTES", 5 * 32)  # reads cross the file / memory boundary


def test_spilled_tree_roots_and_proofs_match_rfc9162_across_reopens(tmp_path: Path) -> None:
    rng = random.Random(7)
    leaves: list[bytes] = []
    tree = SpilledTree(tmp_path, 0, fsync=False)
    for n in range(1, 600):
        leaf = rng.randbytes(32)
        leaves.append(leaf)
        tree.append(leaf)
        if rng.random() < 0.05:  # a clean restart at this size
            for level in tree.spilled_levels():
                level.sync()
                level.close()
            tree = SpilledTree(tmp_path, n, fsync=False)
        m = rng.randint(1, n)
        assert tree.root(m) == mth_from_leaf_hashes(leaves[:m])
        i = rng.randrange(m)
        verify_inclusion(leaves[i], i, m, tree.inclusion_proof(i, m), mth_from_leaf_hashes(leaves[:m]))  # raises
        verify_consistency(m, n, mth_from_leaf_hashes(leaves[:m]), mth_from_leaf_hashes(leaves),
                                  tree.consistency_proof(m, n))


def test_what_a_crash_left_beyond_the_commit_is_cut_off(tmp_path: Path) -> None:
    leaves = [os.urandom(32) for _ in range(100)]
    tree = SpilledTree(tmp_path, 0, fsync=False)
    for leaf in leaves[:60]:
        tree.append(leaf)
    for level in tree.spilled_levels():
        level.sync()  # committed at 60
    for leaf in leaves[60:]:
        tree.append(leaf)
    for level in tree.spilled_levels():
        level.flush()  # written, never committed: the process dies here
        level.close()
    tree = SpilledTree(tmp_path, 60, fsync=False)
    assert (tmp_path / "level-0").stat().st_size == 60 * 32 and (tmp_path / "level-2").stat().st_size == 15 * 32
    assert tree.size == 60 and tree.root() == mth_from_leaf_hashes(leaves[:60])
    other = [os.urandom(32) for _ in range(40)]  # a different continuation after the restart
    for leaf in other:
        tree.append(leaf)
    assert tree.root() == mth_from_leaf_hashes(leaves[:60] + other)


def test_a_file_shorter_than_the_committed_state_is_refused(tmp_path: Path) -> None:
    hashes = SpilledHashes(tmp_path / "hashes", 0, fsync=False)
    hashes += os.urandom(64)
    hashes.sync()
    hashes.close()
    with pytest.raises(SpillIncomplete, match="holds 2 hashes, the committed state 3"):
        SpilledHashes(tmp_path / "hashes", 3, fsync=False)


def test_reopened_after_every_batch_the_index_agrees_with_the_memory_checker(tmp_path: Path) -> None:
    """Links resolved at once and later, across batches: their targets come from the database."""
    _, recs = genuine_ledger()
    memory = Checker(CONFIG)
    want = [f.kind.value for role, offset, raw in recs.items for f in memory.feed(role, offset, raw)]
    got: list[str] = []
    for start in range(0, len(recs.items), 7):
        core = IndexCore(IndexPaths.of(tmp_path), CONFIG, fsync=False)
        got += [f.kind.value for f in core.process(recs.items[start:start + 7]).findings]
        core.close()
    assert got == want == []
    core = IndexCore(IndexPaths.of(tmp_path), CONFIG, fsync=False)
    assert core.checker.tree.root() == memory.tree.root() and len(memory.graph.edges) > 20
    assert not core.checker.graph.edges  # not kept in memory: the database's links table has them
    assert core.conn.execute("SELECT COUNT(*) FROM links WHERE to_seq IS NOT NULL").fetchone()[0] == len(memory.graph.edges)
    core.close()


def test_missing_history_files_ask_for_a_rebuild(tmp_path: Path) -> None:
    _, recs = genuine_ledger()
    paths = IndexPaths.of(tmp_path)
    core = IndexCore(paths, CONFIG, fsync=False)
    core.process(recs.items[:300])
    core.close()
    shutil.rmtree(paths.history_dir)
    with pytest.raises(IndexOutdated, match="--reindex"):
        IndexCore(paths, CONFIG, fsync=False)


def _traced_growth(feed: Callable[[list[tuple[str, int, bytes]]], object], raws: list[bytes],
                   warm: int) -> int:
    """Bytes Python still holds after feeding ``raws[warm:]``, over what it held after ``raws[:warm]``."""
    def batches(a: int, z: int) -> None:
        for start in range(a, z, 1000):
            feed([("entries", i, raws[i]) for i in range(start, min(start + 1000, z))])

    tracemalloc.start()
    try:
        batches(0, warm)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        batches(warm, len(raws))
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_ledger(tmp_path: Path) -> None:
    """8,000 more entries: the in-memory Checker keeps ~300 bytes for each (hash, Merkle nodes,
    event index), the index's keeps none of them (they are in its files and database)."""
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    raws = [entry_bytes(b.entry(f"agent-{i % 20}")) for i in range(10_000)]
    memory = Checker(CONFIG)
    in_memory = _traced_growth(lambda batch: memory.feed_entries([(o, r) for _, o, r in batch]), raws, 2000)
    core = IndexCore(IndexPaths.of(tmp_path), CONFIG, fsync=False)
    try:
        on_disk = _traced_growth(core.process, raws, 2000)
    finally:
        core.close()
    assert in_memory > 8_000 * 150, in_memory  # the measure sees per-entry state when there is some
    assert on_disk < 100_000, on_disk


def test_a_sealed_batch_is_answered_from_memory_until_committed_and_uncommitted_heads_survive(
        tmp_path: Path) -> None:
    """D50: a batch being committed on the writer thread is sealed: its hashes are on disk (not
    yet fsynced), its events and checkpoint bodies answered from memory (the read connection
    sees no rows of it) until ``committed``; heads set after the seal are the only truth about
    them, so the cache trim at that commit keeps them."""
    from ledgerstream.index import db
    from ledgerstream.index.history import IndexHistory

    conn = db.open_db(tmp_path / "index.sqlite")  # no rows: what is answered comes from memory
    history = IndexHistory(conn, tmp_path / "history", 0, fsync=False)
    history.agent_cache = 1
    try:
        for i in range(3):
            history.append(bytes([i]) * 32)
        history.add_event("ev-a", 0, "planner")
        history.add_checkpoint_body(b"\x01" * 32, (3, b"body", 5))
        history.set_agent("planner", (1, b"\x02" * 32, 0))
        fsync = history.seal()
        assert (tmp_path / "history" / "hashes").stat().st_size == 3 * 32  # written out by the seal
        history.add_event("ev-b", 3, "coder")
        history.set_agent("coder", (1, b"\x03" * 32, 3))
        assert history.event("ev-a") == (0, "planner")
        assert history.checkpoint_body(b"\x01" * 32) == (3, b"body", 5)
        with pytest.raises(RuntimeError):
            history.seal()  # one batch in flight at most
        fsync()
        history.committed()
        assert history.event("ev-a") is None and history.checkpoint_body(b"\x01" * 32) is None  # rows' job now
        assert history.event("ev-b") == (3, "coder")
        assert history.agent("coder") == (1, b"\x03" * 32, 3)  # set after the seal: kept by the trim
        assert history.agent("planner") is None  # committed before: trimmed (2 heads > a cache of 1)
    finally:
        history.close()
        conn.close()
