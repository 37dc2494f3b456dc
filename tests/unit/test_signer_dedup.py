"""The signer's fixed-memory dedup window against a second implementation: the plain
ordered dict of the last ``horizon`` events the signer used before (a model of the
documented rule, docs/signer.md "Dedup"), under random traffic, tiny horizons (wrap-around
at every step) and forced hash collisions (probing and backward-shift deletion)."""
from __future__ import annotations

import random
import tracemalloc
import zlib
from collections import OrderedDict

import pytest

import numpy as np

from ledgerstream.signer_worker.dedup import Columns, DedupWindow, Known

pytestmark = pytest.mark.unit
#: the compiled table (signer_worker/_dedup_table.c) and the Python reference, each against the rules
NATIVE = pytest.mark.parametrize("native", [True, False], ids=["c", "python"])


class Model:
    """The rule: the last ``horizon`` sequenced events by event id, oldest forgotten first."""

    def __init__(self, horizon: int) -> None:
        self.horizon = horizon
        self.events: OrderedDict[str, Known] = OrderedDict()

    def add(self, event_id: str, known: Known) -> None:
        self.events[event_id] = known
        if len(self.events) > self.horizon:
            self.events.popitem(last=False)


def _known(i: int, rng: random.Random) -> Known:
    return Known(f"agent-{rng.randrange(5)}", i, rng.randbytes(32), rng.randbytes(32), f"tool:{rng.randrange(3)}")


def _run(window: DedupWindow, rng: random.Random, steps: int, ids: int) -> None:
    model = Model(window.horizon)
    for seq in range(steps):
        # the sequencer adds only ids it does not know (within the horizon); an id may come
        # back once it has left the window
        event_id = f"evt-{rng.randrange(ids)}"
        while event_id in model.events:
            event_id = f"evt-{rng.randrange(ids)}"
        known = _known(seq, rng)
        window.add(event_id, known)
        model.add(event_id, known)
        for probe in {event_id, *(f"evt-{rng.randrange(ids)}" for _ in range(3))}:
            assert window.get(probe) == model.events.get(probe), (seq, probe)
        assert len(window) == len(model.events)
    assert window.knowns() == list(model.events.values())
    for i in range(ids):
        assert window.get(f"evt-{i}") == model.events.get(f"evt-{i}")


def _columns(events: list[tuple[str, Known]]) -> Columns:
    return Columns.of(events[0][1].seq, [e for e, _ in events], [k.agent_id for _, k in events],
                   [k.action_type for _, k in events], b"".join(k.entry_hash for _, k in events),
                   b"".join(k.payload_hash for _, k in events))


def _load_like_adds(rng: random.Random, *, horizon: int, runs: tuple[int, ...], ids: int, first: int = 0,
                    str_hash: bool = True, native: bool = True) -> None:
    """A snapshot's runs loaded at once into an empty window answer exactly like the same
    events added one by one (the reference path), then keep doing so under new traffic."""
    events, seq = [], first
    for _ in range(sum(runs)):  # ids may repeat: an id sequenced again past an older, shorter horizon
        events.append((f"evt-{rng.randrange(ids)}", _known(seq, rng)))
        seq += 1
    bulk = DedupWindow(horizon, str_hash=str_hash, native=native)
    one_by_one = DedupWindow(horizon, str_hash=str_hash, native=native)
    at = 0
    chunks = []
    for size in runs:
        chunks.append(_columns(events[at:at + size]))
        at += size
    bulk.load(chunks)
    for event_id, known in events:
        one_by_one.add(event_id, known)
    every = max(1, horizon // 50)  # a full comparison costs O(horizon); a divergence persists
    for step in range(3 * horizon):
        if step % every == 0 or step == 3 * horizon - 1:
            assert len(bulk) == len(one_by_one) and bulk.knowns() == one_by_one.knowns()
            for i in range(ids):
                assert bulk.get(f"evt-{i}") == one_by_one.get(f"evt-{i}"), (step, i)
        fresh = (f"new-{step}", _known(seq + step, rng))
        bulk.add(*fresh)
        one_by_one.add(*fresh)


@pytest.mark.parametrize("horizon, runs, first", [(10, (4, 3), 0), (10, (7, 9, 5), 3), (64, (20, 20, 30), 1000),
                                                   (1000, (400, 700), 5)])
@pytest.mark.parametrize("str_hash", [True, False], ids=["siphash", "blake2b"])
@NATIVE
def test_loading_a_snapshot_window_matches_adding_one_by_one(horizon: int, runs: tuple[int, ...], first: int,
                                                             str_hash: bool, native: bool) -> None:
    _load_like_adds(random.Random(horizon), horizon=horizon, runs=runs, ids=sum(runs) // 2 + 3, first=first,
                    str_hash=str_hash, native=native)


def test_a_jump_between_runs_restarts_the_loaded_window() -> None:
    rng = random.Random(5)
    before = [(f"a{i}", _known(i, rng)) for i in range(4)]
    after = [(f"b{i}", _known(10 + i, rng)) for i in range(3)]
    window = DedupWindow(20)
    window.load([_columns(before), _columns(after)])
    assert window.get("a1") is None and window.get("b2") == after[2][1] and len(window) == 3


@pytest.mark.parametrize("str_hash", [True, False], ids=["siphash", "blake2b"])
@pytest.mark.parametrize("horizon", [1, 2, 3, 7, 64, 1000])
@NATIVE
def test_matches_the_ordered_dict_rule(horizon: int, str_hash: bool, native: bool) -> None:
    rng = random.Random(horizon)
    _run(DedupWindow(horizon, str_hash=str_hash, native=native), rng, steps=max(3000, 5 * horizon),
         ids=2 * horizon + 5)


@pytest.mark.parametrize("buckets", [1, 3, 17])
@NATIVE
def test_colliding_fingerprints_are_told_apart_and_deleted_in_place(buckets: int, native: bool, monkeypatch) -> None:
    """Every id lands on one of ``buckets`` slot fingerprints: long probe chains, matches
    decided by the second fingerprint, deletions that shift entries back across the table end."""

    def weak(self: DedupWindow, event_id: str) -> tuple[int, int]:
        h = zlib.crc32(event_id.encode())
        return (h % buckets) * 0x9E3779B97F4A7C15 % (1 << 64) or 1, h

    monkeypatch.setattr(DedupWindow, "_hash", weak)
    monkeypatch.setattr(DedupWindow, "_hash_many", lambda self, ids: tuple(
        np.array(column, dtype=np.uint64) for column in zip(*(weak(self, e) for e in ids))))
    rng = random.Random(buckets)
    _run(DedupWindow(50, native=native), rng, steps=2000, ids=120)
    _load_like_adds(rng, horizon=50, runs=(30, 40, 25), ids=70, native=native)


def test_a_gap_in_seqs_restarts_the_window() -> None:
    rng = random.Random(1)
    window = DedupWindow(4)
    for seq in range(3):
        window.add(f"e{seq}", _known(seq, rng))
    later = _known(10, rng)
    window.add("e10", later)
    assert window.get("e1") is None and window.get("e10") == later and len(window) == 1


def test_event_ids_are_kept_until_a_snapshot_covers_them() -> None:
    rng = random.Random(2)
    window = DedupWindow(5)
    knowns = [_known(seq, rng) for seq in range(8)]
    for seq, k in enumerate(knowns):
        window.add(f"e{seq}", k)
    # seqs 3..7 are in the window; ids older than the window are never asked for
    # (the window's ring wraps between seqs 4 and 5: the copies join its two ends)
    assert window.columns_since(0).events() == [(f"e{s}", knowns[s]) for s in range(3, 8)]
    assert window.columns_since(6).events() == [(f"e{s}", knowns[s]) for s in (6, 7)]
    assert window.columns_since(6).first_seq == 6 and len(window.columns_since(8)) == 0
    window.release_ids(6)
    assert window.columns_since(0).events() == [(f"e{s}", knowns[s]) for s in (6, 7)]
    loaded = DedupWindow(5)
    loaded.load([_columns([(f"e{s}", knowns[s]) for s in range(8)])])  # a snapshot's window: its ids are written
    assert loaded.columns_since(0).events() == [] and loaded.get("e4") == knowns[4] and loaded.get("e2") is None
    window.forget_ids()
    window.add("e8", _known(8, rng))
    assert window.columns_since(0).events() == [] and window.get("e8") is not None


@pytest.mark.parametrize("most", [1, 3, 7, 100])
def test_columns_split_into_consecutive_runs(most: int) -> None:
    rng = random.Random(most)
    events = [(f"e{s}", _known(40 + s, rng)) for s in range(7)]
    runs = _columns(events).split(most)
    assert [len(r) for r in runs] == [min(most, 7 - i) for i in range(0, 7, most)]
    assert [r.first_seq for r in runs] == [40 + i for i in range(0, 7, most)]
    assert [e for r in runs for e in r.events()] == events


def test_memory_is_fixed_at_start() -> None:
    """Once the window is allocated (its first event), a hundred horizons of traffic allocate
    nothing that stays."""
    rng = random.Random(3)
    window = DedupWindow(1000, keep_ids=False)
    knowns = [_known(seq, rng) for seq in range(100_000)]
    window.add("event-0", knowns[0])
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for seq, k in enumerate(knowns[1:], 1):
            window.add(f"event-{seq}", k)
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, grown
    assert len(window) == 1000 and window.get("event-98999") is None and window.get("event-99000") == knowns[99_000]


def test_a_snapshot_load_holds_one_runs_id_strings_at_a_time() -> None:
    """The recovery load hashes the ids run by run: its peak of Python allocations stays well
    below the size of every id string at once, which (as a million small objects freed
    together) would stay in the process's RSS after the load."""
    rng = random.Random(5)
    runs, per_run, pad = 10, 10_000, "x" * 400
    columns = []
    for r in range(runs):
        events = [(f"{pad}-{r * per_run + i}", _known(r * per_run + i, rng)) for i in range(per_run)]
        columns.append(_columns(events))
    all_ids = sum(len(e) + 49 for c in columns for e in c.event_ids)  # bytes as str objects (compact ASCII)
    window = DedupWindow(runs * per_run)
    window._allocate()  # the window itself is fixed memory, counted elsewhere (test above)
    tracemalloc.start()
    try:
        window.load(columns)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < all_ids * 0.75, (peak, all_ids)
    assert window.get(f"{pad}-0").seq == 0 and window.get(f"{pad}-{runs * per_run - 1}").seq == runs * per_run - 1


def test_a_horizon_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        DedupWindow(0)


def test_an_id_sequenced_again_names_its_newest_entry_until_that_one_leaves() -> None:
    """Recovery over a ledger written with a shorter horizon can meet an id twice in the window."""
    rng = random.Random(4)
    window = DedupWindow(4)
    knowns = [_known(seq, rng) for seq in range(7)]
    ids = ["x", "a", "x", "b", "c", "d", "e"]
    for seq in range(3):
        window.add(ids[seq], knowns[seq])
    assert window.get("x") == knowns[2]
    for seq in range(3, 6):  # seq 0 and 1 leave: "x" still names seq 2
        window.add(ids[seq], knowns[seq])
        assert window.get("x") == knowns[2]
    window.add(ids[6], knowns[6])  # seq 2 leaves
    assert window.get("x") is None and window.get("e") == knowns[6]


def test_the_compiled_table_is_built_and_used() -> None:
    from ledgerstream.signer_worker import dedup

    assert dedup._dedup_table is not None  # setup.sh builds it (setup.py)
    window = DedupWindow(8)
    window.add("e", _known(0, random.Random(0)))
    assert window._table is not None and DedupWindow(8, native=False)._table is None


@pytest.mark.parametrize("horizon, colliding", [(5, False), (64, False), (50, True)])
def test_the_compiled_table_writes_the_same_bytes_as_the_python_reference(horizon: int, colliding: bool,
                                                                          monkeypatch) -> None:
    """Adds (ids coming back after leaving the window), evictions, a restart after a jump in
    seqs: both windows hold byte-identical columns and slots after every step."""
    if colliding:  # long probe chains and backward shifts across the table's end
        monkeypatch.setattr(DedupWindow, "_hash", lambda self, e: (
            (zlib.crc32(e.encode()) % 3) * 0x9E3779B97F4A7C15 % (1 << 64) or 1, zlib.crc32(e.encode())))
    rng = random.Random(horizon)
    windows = [DedupWindow(horizon, native=True), DedupWindow(horizon, native=False)]
    live: OrderedDict[str, None] = OrderedDict()
    seq = 0
    for step in range(20 * horizon):
        if step == 10 * horizon:
            seq += 3  # a jump: the window restarts there
            live.clear()
        event_id = f"evt-{rng.randrange(3 * horizon)}"
        while event_id in live:
            event_id = f"evt-{rng.randrange(3 * horizon)}"
        known = _known(seq, rng)
        for window in windows:
            window.add(event_id, known)
        live[event_id] = None
        if len(live) > horizon:
            live.popitem(last=False)
        seq += 1
        c, py = windows
        for name in ("_slot_key", "_slot_seq", "_h1", "_fp", "_entry", "_payload", "_agent", "_action"):
            assert getattr(c, name) == getattr(py, name), (step, name)
        assert (c.start, c.end) == (py.start, py.end)


@pytest.mark.parametrize("bad", [
    {"seq": -1}, {"h1": 0}, {"entry_hash": b"short"}, {"payload_hash": "x" * 32}, {"agent": 2**32},
])
def test_the_compiled_table_refuses_bad_arguments_without_writing(bad: dict) -> None:
    window = DedupWindow(4)
    window.add("e", _known(0, random.Random(0)))
    before = bytes(window._slot_key), bytes(window._entry)
    args = {"seq": 1, "h1": 5, "fp": 6, "entry_hash": bytes(32), "payload_hash": bytes(32), "agent": 0, "action": 0}
    with pytest.raises((ValueError, OverflowError, TypeError)):
        window._table.insert(*{**args, **bad}.values())
    assert (bytes(window._slot_key), bytes(window._entry)) == before
    with pytest.raises(ValueError):
        window._table.evict(-1)
    with pytest.raises(ValueError, match="mask"):
        type(window._table)(window._slot_key, window._slot_seq, window._h1, window._fp, window._entry,
                            window._payload, window._agent, window._action, 6, 4)
    with pytest.raises(ValueError, match="bytes"):
        type(window._table)(window._slot_key, window._slot_seq, window._h1, window._fp, window._entry,
                            window._payload, window._agent, window._action, window._mask, 5)
