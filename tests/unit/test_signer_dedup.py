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
                    str_hash: bool = True) -> None:
    """A snapshot's runs loaded at once into an empty window answer exactly like the same
    events added one by one (the reference path), then keep doing so under new traffic."""
    events, seq = [], first
    for _ in range(sum(runs)):  # ids may repeat: an id sequenced again past an older, shorter horizon
        events.append((f"evt-{rng.randrange(ids)}", _known(seq, rng)))
        seq += 1
    bulk, one_by_one = DedupWindow(horizon, str_hash=str_hash), DedupWindow(horizon, str_hash=str_hash)
    at = 0
    chunks = []
    for size in runs:
        chunks.append(_columns(events[at:at + size]))
        at += size
    bulk.load(chunks)
    for event_id, known in events:
        one_by_one.add(event_id, known)
    for step in range(3 * horizon):
        assert len(bulk) == len(one_by_one) and bulk.knowns() == one_by_one.knowns()
        for i in range(ids):
            assert bulk.get(f"evt-{i}") == one_by_one.get(f"evt-{i}"), (step, i)
        fresh = (f"new-{step}", _known(seq + step, rng))
        bulk.add(*fresh)
        one_by_one.add(*fresh)


@pytest.mark.parametrize("horizon, runs, first", [(10, (4, 3), 0), (10, (7, 9, 5), 3), (64, (20, 20, 30), 1000),
                                                   (1000, (400, 700), 5)])
@pytest.mark.parametrize("str_hash", [True, False], ids=["siphash", "blake2b"])
def test_loading_a_snapshot_window_matches_adding_one_by_one(horizon: int, runs: tuple[int, ...], first: int,
                                                             str_hash: bool) -> None:
    _load_like_adds(random.Random(horizon), horizon=horizon, runs=runs, ids=sum(runs) // 2 + 3, first=first,
                    str_hash=str_hash)


def test_a_jump_between_runs_restarts_the_loaded_window() -> None:
    rng = random.Random(5)
    before = [(f"a{i}", _known(i, rng)) for i in range(4)]
    after = [(f"b{i}", _known(10 + i, rng)) for i in range(3)]
    window = DedupWindow(20)
    window.load([_columns(before), _columns(after)])
    assert window.get("a1") is None and window.get("b2") == after[2][1] and len(window) == 3


@pytest.mark.parametrize("str_hash", [True, False], ids=["siphash", "blake2b"])
@pytest.mark.parametrize("horizon", [1, 2, 3, 7, 64, 1000])
def test_matches_the_ordered_dict_rule(horizon: int, str_hash: bool) -> None:
    rng = random.Random(horizon)
    _run(DedupWindow(horizon, str_hash=str_hash), rng, steps=max(3000, 5 * horizon), ids=2 * horizon + 5)


@pytest.mark.parametrize("buckets", [1, 3, 17])
def test_colliding_fingerprints_are_told_apart_and_deleted_in_place(buckets: int, monkeypatch) -> None:
    """Every id lands on one of ``buckets`` slot fingerprints: long probe chains, matches
    decided by the second fingerprint, deletions that shift entries back across the table end."""

    def weak(self: DedupWindow, event_id: str) -> tuple[int, int]:
        h = zlib.crc32(event_id.encode())
        return (h % buckets) * 0x9E3779B97F4A7C15 % (1 << 64) or 1, h

    monkeypatch.setattr(DedupWindow, "_hash", weak)
    monkeypatch.setattr(DedupWindow, "_hash_many", lambda self, ids: tuple(
        np.array(column, dtype=np.uint64) for column in zip(*(weak(self, e) for e in ids))))
    rng = random.Random(buckets)
    _run(DedupWindow(50), rng, steps=2000, ids=120)
    _load_like_adds(rng, horizon=50, runs=(30, 40, 25), ids=70)


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
    assert window.ids_since(0) == [(f"e{s}", knowns[s]) for s in range(3, 8)]
    assert window.ids_since(6) == [(f"e{s}", knowns[s]) for s in (6, 7)]
    window.release_ids(6)
    assert window.ids_since(0) == [(f"e{s}", knowns[s]) for s in (6, 7)]
    loaded = DedupWindow(5)
    loaded.load([_columns([(f"e{s}", knowns[s]) for s in range(8)])])  # a snapshot's window: its ids are written
    assert loaded.ids_since(0) == [] and loaded.get("e4") == knowns[4] and loaded.get("e2") is None
    window.forget_ids()
    window.add("e8", _known(8, rng))
    assert window.ids_since(0) == [] and window.get("e8") is not None


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
