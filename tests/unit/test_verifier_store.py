"""The verifier's state folder (state.sqlite + history files): a crash loses nothing committed,
a restart reads no per-entry state, an earlier version's journal is converted, and a second
process cannot take the same folder."""
from __future__ import annotations

import gc
import json
import sqlite3
import tracemalloc
from pathlib import Path
from typing import Callable

import pytest

from ledgerstream.core import records, spilled
from ledgerstream.core.errors import ConfigError
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.core.verify import Checker, CheckerConfig
from ledgerstream.verifier_worker.store import StateStore
from support.ledger_builder import LedgerBuilder, enc, entry_bytes

pytestmark = pytest.mark.unit

KEY = PrivateKey.from_seed(bytes(range(32)))
CONFIG = CheckerConfig.from_keys([KEY.public_key()])


def fed_checker(builder: LedgerBuilder, checker: Checker, n: int, offset: int) -> int:
    records = [(offset + i, entry_bytes(e)) for i, e in enumerate(builder.many(n))]
    assert checker.feed_entries(records) == []
    assert checker.feed_checkpoints([(offset, enc("Checkpoint", builder.checkpoint()))]) == []
    return offset + n


def test_save_load_roundtrip_and_a_crash_after_more_was_appended(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash after the history's files grew but before the commit: the files are cut back to
    the committed size at load, and the reloaded checker continues exactly like one that never
    stopped (the oracle: an in-memory Checker fed the same records)."""
    monkeypatch.setattr(spilled, "TAIL_BYTES", 4 * 32)  # the uncommitted hashes reach the files
    store, builder, checker = StateStore(tmp_path, fsync=False), LedgerBuilder(KEY), None
    checker, _ = store.load(CONFIG)
    offset = fed_checker(builder, checker, 30, 0)
    store.save(checker, {"alerts": {"gap": 2}})
    saved_root, saved_position = checker.tree.root(), checker.position
    more = [(offset + i, entry_bytes(e)) for i, e in enumerate(builder.many(10))]
    checker.feed_entries(more)
    checker._history._spilled.flush()  # noqa: SLF001 (what a crash leaves: bytes past the commit)
    size_before_crash = (tmp_path / "history" / "hashes").stat().st_size
    store.close()  # no save: a kill -9 here
    assert size_before_crash > 30 * 32
    loaded, worker = StateStore(tmp_path, fsync=False).load(CONFIG)
    assert worker == {"alerts": {"gap": 2}}
    assert (loaded.position, loaded.tree.root()) == (saved_position, saved_root)
    assert loaded.next_offset["entries"] == 30 and loaded.last_checkpoint["tree_size"] == 30
    assert loaded.feed_entries(more) == []  # Kafka redelivers from the saved offset
    memory = Checker(CONFIG)
    memory.feed_entries([(i, entry_bytes(e)) for i, e in enumerate(builder.entries)])
    assert (loaded.position, loaded.tree.root(), loaded.head_hash) == (memory.position, memory.tree.root(), memory.head_hash)


def test_a_restart_reads_no_per_entry_state(tmp_path: Path) -> None:
    """Loading a verifier that has checked 6,000 entries allocates about what loading one that
    has checked 600 does (files are opened, not read), and far less than the in-memory state."""
    builder = LedgerBuilder(KEY, signing_mode="checkpoint")
    raws = [entry_bytes(builder.entry(f"agent-{i % 30}")) for i in range(6000)]

    def load_peak(n: int) -> int:
        folder = tmp_path / str(n)
        store = StateStore(folder, fsync=False)
        checker, _ = store.load(CONFIG)
        checker.feed_entries(list(enumerate(raws[:n])))
        store.save(checker, {})
        store.close()
        gc.collect()
        tracemalloc.start()
        try:
            again = StateStore(folder, fsync=False)
            loaded, _ = again.load(CONFIG)
            assert loaded.position == n and loaded.head_hash == records.entry_hash(builder.entries[n - 1])
            peak = tracemalloc.get_traced_memory()[1]
            again.close()
        finally:
            tracemalloc.stop()
        return peak

    small, large = load_peak(600), load_peak(6000)
    assert large < small + 64_000, (small, large)
    assert large < 6000 * 100, large  # what the journal held: ~100 bytes per entry


def test_an_earlier_versions_journal_is_converted_once(tmp_path: Path) -> None:
    """A folder written by the journal layout (state.json names the journal bytes it goes with,
    one JSON line per journal record, a torn line after them) becomes state.sqlite: the same
    position, root, offsets, call graph and worker extras; the old files are gone."""
    builder, old = LedgerBuilder(KEY), Checker(CONFIG)
    entries = builder.many(20, agents=("agent-a", "agent-b"))
    entries.append(builder.entry("agent-c", links=[("agent-a", entries[4]["action"]["event_id"])]))
    old.feed_entries([(i, entry_bytes(e)) for i, e in enumerate(entries)])
    old.feed_checkpoints([(0, enc("Checkpoint", builder.checkpoint()))])
    journal = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in old.drain_journal()).encode()
    (tmp_path / "journal.jsonl").write_bytes(journal + b'{"e":[99,"torn')
    (tmp_path / "state.json").write_text(json.dumps({"journal_bytes": len(journal), "checker": old.export_state(),
                                                     "worker": {"alerts": {"fork": 1}}}))
    assert StateStore(tmp_path, fsync=False).load(CONFIG)[1] == {"alerts": {"fork": 1}}  # converts; then a crash
    assert not (tmp_path / "state.json").exists() and not (tmp_path / "journal.jsonl").exists()
    store = StateStore(tmp_path, fsync=False)
    converted, extras = store.load(CONFIG)  # from state.sqlite
    assert extras == {"alerts": {"fork": 1}}
    assert (converted.position, converted.tree.root(), converted.head_hash) == (old.position, old.tree.root(), old.head_hash)
    assert converted.next_offset == old.next_offset and converted.last_checkpoint == old.last_checkpoint
    assert converted.graph.to_dict() == old.graph.to_dict() and old.graph.total_edges == 1
    more = builder.entry("agent-a", links=[("agent-b", entries[7]["action"]["event_id"])])
    later = [(len(entries), entry_bytes(more)), (len(entries) + 1, entry_bytes(builder.entry("agent-b")))]
    assert converted.feed_entries(later) == []  # its event ids and agent heads came along
    assert old.feed_entries(later) == []
    assert converted.tree.root() == old.tree.root() and converted.graph.to_dict() == old.graph.to_dict()
    assert converted.graph.total_edges == 2
    store.close()


def test_a_missing_history_file_asks_for_reverify(tmp_path: Path) -> None:
    store = StateStore(tmp_path, fsync=False)
    checker, _ = store.load(CONFIG)
    fed_checker(LedgerBuilder(KEY), checker, 5, 0)
    store.save(checker, {})
    store.close()
    (tmp_path / "history" / "hashes").write_bytes(b"")
    with pytest.raises(ConfigError, match="--reverify"):
        StateStore(tmp_path, fsync=False).load(CONFIG)


def test_no_state_means_a_fresh_checker_and_reset_forgets(tmp_path: Path) -> None:
    store = StateStore(tmp_path, fsync=False)
    checker = store.load(CONFIG)[0]
    assert checker.position == 0
    fed_checker(LedgerBuilder(KEY), checker, 5, 0)
    store.save(checker, {})
    store.close()
    assert store.load(CONFIG)[0].position == 5
    store.reset()
    assert store.load(CONFIG)[0].position == 0
    store.close()


def test_unusable_state_asks_for_reverify(tmp_path: Path) -> None:
    store = StateStore(tmp_path, fsync=False)
    store.save(store.load(CONFIG)[0], {})
    store.close()
    with sqlite3.connect(tmp_path / "state.sqlite") as conn:
        conn.execute("UPDATE meta SET value = '{not json' WHERE key = 'state'")
    with pytest.raises(ConfigError, match="--reverify"):
        store.load(CONFIG)


def test_one_holder_of_the_lock(tmp_path: Path) -> None:
    first, second = StateStore(tmp_path), StateStore(tmp_path)
    first.lock()
    with pytest.raises(ConfigError, match="another verifier process"):
        second.lock()
    first.unlock()
    second.lock()
    second.unlock()


def test_checking_more_entries_keeps_no_more_memory(tmp_path: Path) -> None:
    """8,000 more entries, saved every 1,000 as the worker does: the in-memory Checker keeps
    ~300 bytes for each (the oracle that the measure sees per-entry state), the worker's keeps
    none (they are in its files and tables)."""
    builder = LedgerBuilder(KEY, signing_mode="checkpoint")
    raws = [entry_bytes(builder.entry(f"agent-{i % 20}")) for i in range(10_000)]

    def growth(checker: Checker, save: Callable[[], None]) -> int:
        def feed(a: int, z: int) -> None:
            for start in range(a, z, 1000):
                checker.feed_entries([(i, raws[i]) for i in range(start, min(start + 1000, z))])
                save()

        tracemalloc.start()
        try:
            feed(0, 2000)
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            feed(2000, len(raws))
            gc.collect()
            return tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()

    memory = Checker(CONFIG)
    in_memory = growth(memory, lambda: None)
    store = StateStore(tmp_path, fsync=False)
    on_disk_checker, _ = store.load(CONFIG)
    try:
        on_disk = growth(on_disk_checker, lambda: store.save(on_disk_checker, {}))
        assert on_disk_checker.tree.root() == memory.tree.root()
    finally:
        store.close()
    assert in_memory > 8_000 * 150, in_memory
    assert on_disk < 100_000, on_disk
