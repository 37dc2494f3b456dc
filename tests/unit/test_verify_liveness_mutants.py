"""`stalled` (core/verify/liveness.py) on the cases its mutation run showed untested
(docs/mutation.md). Expected behaviour is docs/alerts.md's `stalled` section: actions wait
and the signer made no progress for `--stall-seconds` (default 60), or verified entries are
not covered by a new checkpoint for `--checkpoint-overdue-seconds` (default 120); one alert
per episode, re-armed when progress resumes; seq_from/seq_to name the entries concerned."""
from __future__ import annotations

import pytest

from ledgerstream.core.verify import Kind, LivenessSample, StallMonitor

pytestmark = pytest.mark.unit


def sample(now: float, *, actions_end: int = 0, signer_committed: int | None = 0, entries_end: int = 0,
           verified: int = 0, checkpoint_size: int = 0) -> LivenessSample:
    return LivenessSample(now, actions_end, signer_committed, entries_end, verified, checkpoint_size)


def kinds(found: list) -> list[Kind]:
    return [f.kind for f in found]


# --- the ledger head -----------------------------------------------------------------------------

def test_the_default_stall_is_60_seconds_of_waiting_actions() -> None:
    mon = StallMonitor()
    assert mon.observe(sample(1000, actions_end=4, signer_committed=1)) == []
    assert mon.observe(sample(1060, actions_end=4, signer_committed=1)) == []  # 60 s: not over 60
    assert kinds(mon.observe(sample(1060.5, actions_end=4, signer_committed=1))) == [Kind.STALLED]


def test_the_stall_finding_counts_the_waiting_actions() -> None:
    mon = StallMonitor(stall_seconds=10, checkpoint_overdue_seconds=10_000)
    mon.observe(sample(0, actions_end=9, signer_committed=5, entries_end=5, verified=5))
    [f] = mon.observe(sample(11, actions_end=9, signer_committed=5, entries_end=5, verified=5))
    assert f.kind == Kind.STALLED and f.evidence["waiting"] == "4"  # 9 actions, 5 taken by the signer
    assert f.evidence["actions_end"] == "9" and f.evidence["entries_end"] == "5"


def test_each_stall_episode_raises_one_alert_and_progress_rearms_it() -> None:
    mon = StallMonitor(stall_seconds=10, checkpoint_overdue_seconds=10_000)
    mon.observe(sample(0, actions_end=9, signer_committed=5))
    assert kinds(mon.observe(sample(11, actions_end=9, signer_committed=5))) == [Kind.STALLED]
    assert mon.observe(sample(30, actions_end=9, signer_committed=5)) == []  # the same episode
    assert mon.observe(sample(31, actions_end=9, signer_committed=6)) == []  # progress: re-armed
    assert mon.observe(sample(41, actions_end=9, signer_committed=6)) == []  # 10 s: not over 10
    assert kinds(mon.observe(sample(42, actions_end=9, signer_committed=6))) == [Kind.STALLED]


def test_the_wait_is_counted_from_when_actions_started_waiting() -> None:
    """An idle pipeline with nothing to sign is not stalled; the clock starts when actions
    arrive and the signer does not take them, and stops when nothing waits any more."""
    mon = StallMonitor(stall_seconds=10, checkpoint_overdue_seconds=10_000)
    assert mon.observe(sample(0, actions_end=5, signer_committed=5)) == []
    assert mon.observe(sample(100, actions_end=5, signer_committed=5)) == []
    assert mon.observe(sample(100, actions_end=6, signer_committed=5)) == []
    assert mon.observe(sample(110, actions_end=6, signer_committed=5)) == []  # waiting 10 s
    assert kinds(mon.observe(sample(111, actions_end=6, signer_committed=5))) == [Kind.STALLED]


def test_without_signer_offsets_new_actions_since_the_last_entry_are_waiting() -> None:
    mon = StallMonitor(stall_seconds=10, checkpoint_overdue_seconds=10_000)
    mon.observe(sample(0, actions_end=3, signer_committed=None, entries_end=7))
    assert mon.observe(sample(2, actions_end=7, signer_committed=None, entries_end=7)) == []
    [f] = mon.observe(sample(13, actions_end=7, signer_committed=None, entries_end=7))
    assert f.kind == Kind.STALLED and f.evidence["waiting"] == "4"  # 7 - 3 arrived since entries_end moved
    # the entries end moves: progress, and what arrived before it no longer waits
    assert mon.observe(sample(14, actions_end=7, signer_committed=None, entries_end=8)) == []
    assert mon.observe(sample(100, actions_end=7, signer_committed=None, entries_end=8)) == []


# --- checkpoints ---------------------------------------------------------------------------------

def test_the_default_checkpoint_overdue_time_is_120_seconds() -> None:
    mon = StallMonitor()
    assert mon.observe(sample(1000, verified=10, checkpoint_size=5)) == []
    assert mon.observe(sample(1120, verified=10, checkpoint_size=5)) == []  # 120 s: not over 120
    assert kinds(mon.observe(sample(1120.5, verified=10, checkpoint_size=5))) == [Kind.STALLED]


def test_an_overdue_checkpoint_finding_names_the_uncovered_entries() -> None:
    mon = StallMonitor(stall_seconds=10_000, checkpoint_overdue_seconds=30)
    mon.observe(sample(0, verified=100, checkpoint_size=100))
    mon.observe(sample(1, verified=150, checkpoint_size=100))
    [f] = mon.observe(sample(32, verified=160, checkpoint_size=100))
    # entries 100 .. 159 are verified but in no checkpoint
    assert (f.kind, f.seq_from, f.seq_to) == (Kind.STALLED, 100, 159)
    assert f.evidence["checkpoint_size"] == "100"


def test_each_overdue_episode_raises_one_alert_and_a_new_checkpoint_rearms_it() -> None:
    mon = StallMonitor(stall_seconds=10_000, checkpoint_overdue_seconds=30)
    mon.observe(sample(0, verified=10, checkpoint_size=0))
    assert mon.observe(sample(30, verified=10, checkpoint_size=0)) == []  # 30 s: not over 30
    assert kinds(mon.observe(sample(31, verified=10, checkpoint_size=0))) == [Kind.STALLED]
    assert mon.observe(sample(90, verified=20, checkpoint_size=0)) == []  # the same episode
    assert mon.observe(sample(91, verified=20, checkpoint_size=20)) == []  # covered: re-armed
    assert mon.observe(sample(92, verified=25, checkpoint_size=20)) == []  # uncovered from 92
    assert mon.observe(sample(122, verified=25, checkpoint_size=20)) == []
    assert kinds(mon.observe(sample(123, verified=25, checkpoint_size=20))) == [Kind.STALLED]


def test_entries_all_covered_by_the_newest_checkpoint_are_never_overdue() -> None:
    mon = StallMonitor(stall_seconds=10_000, checkpoint_overdue_seconds=30)
    for t in range(0, 1000, 100):
        assert mon.observe(sample(t, verified=50, checkpoint_size=50)) == []


def test_a_checkpoint_that_covers_only_part_starts_a_new_overdue_clock() -> None:
    mon = StallMonitor(stall_seconds=10_000, checkpoint_overdue_seconds=30)
    mon.observe(sample(0, verified=10, checkpoint_size=0))
    assert mon.observe(sample(25, verified=20, checkpoint_size=10)) == []  # a checkpoint at 25
    assert mon.observe(sample(55, verified=20, checkpoint_size=10)) == []  # 30 s since it
    assert kinds(mon.observe(sample(56, verified=20, checkpoint_size=10))) == [Kind.STALLED]


# --- real offsets ---------------------------------------------------------------------------------

def offsets(*per_partition: int) -> int:
    """What a worker observes: the sum over the partitions, a new int object every time."""
    return sum(per_partition)


def test_a_stall_is_found_at_real_offsets_too() -> None:
    """Offsets and sizes are large numbers in a real ledger; the same value observed twice is
    the same progress (no progress), however the number was computed."""
    mon = StallMonitor(stall_seconds=10, checkpoint_overdue_seconds=10_000)
    mon.observe(sample(0, actions_end=offsets(6000, 4000), signer_committed=offsets(4500, 4500)))
    assert mon.observe(sample(5, actions_end=offsets(6000, 4000), signer_committed=offsets(4500, 4500))) == []
    [f] = mon.observe(sample(11, actions_end=offsets(6000, 4000), signer_committed=offsets(4500, 4500)))
    assert f.kind == Kind.STALLED and f.evidence["waiting"] == "1000"


def test_an_overdue_checkpoint_is_found_at_real_sizes_too() -> None:
    mon = StallMonitor(stall_seconds=10_000, checkpoint_overdue_seconds=30)
    mon.observe(sample(0, verified=offsets(9000, 1000), checkpoint_size=offsets(4000, 5000)))
    assert mon.observe(sample(20, verified=offsets(9000, 1000), checkpoint_size=offsets(4000, 5000))) == []
    [f] = mon.observe(sample(31, verified=offsets(9000, 1000), checkpoint_size=offsets(4000, 5000)))
    assert (f.kind, f.seq_from, f.seq_to) == (Kind.STALLED, 9000, 9999)


def test_a_covered_ledger_is_never_overdue_at_real_sizes() -> None:
    mon = StallMonitor(stall_seconds=10_000, checkpoint_overdue_seconds=30)
    for t in range(0, 1000, 100):
        assert mon.observe(sample(t, verified=offsets(5000, 5000), checkpoint_size=offsets(9000, 1000))) == []


def test_committed_offsets_read_ahead_of_the_end_mean_nothing_waits() -> None:
    """The end and the committed offsets are read one after the other, so the committed sum can
    be ahead of the end read just before; then no action waits (docs/alerts.md: actions wait
    when the committed offsets are *behind* their end), however long it lasts."""
    mon = StallMonitor(stall_seconds=10, checkpoint_overdue_seconds=10_000)
    for t in range(0, 100, 5):
        assert mon.observe(sample(t, actions_end=offsets(40, 50), signer_committed=offsets(50, 50))) == []


def test_a_liveness_sample_is_an_immutable_value() -> None:
    s = sample(0, actions_end=1)
    with pytest.raises(AttributeError):
        s.actions_end = 2  # type: ignore[misc]


def test_the_overdue_clock_starts_when_entries_become_uncovered_at_real_sizes() -> None:
    """A fully covered ledger (verified == checkpoint_size, large numbers computed anew each
    time) starts no clock: it starts when newer entries are verified, not before."""
    mon = StallMonitor(stall_seconds=10_000, checkpoint_overdue_seconds=30)
    assert mon.observe(sample(0, verified=offsets(2500, 2500), checkpoint_size=offsets(4000, 1000))) == []
    assert mon.observe(sample(25, verified=offsets(2510, 2500), checkpoint_size=offsets(4000, 1000))) == []
    assert mon.observe(sample(50, verified=offsets(2520, 2500), checkpoint_size=offsets(4000, 1000))) == []
    assert mon.observe(sample(55, verified=offsets(2520, 2500), checkpoint_size=offsets(4000, 1000))) == []
    [f] = mon.observe(sample(56, verified=offsets(2520, 2500), checkpoint_size=offsets(4000, 1000)))
    assert (f.kind, f.seq_from, f.seq_to) == (Kind.STALLED, 5000, 5019)
