"""core/interpreter.py: the hot loops' interpreter settings, and that a library call hands
the caller's settings back."""
from __future__ import annotations

import gc
import sys

import pytest

from ledgerstream.core import interpreter


def _young_passes_while_allocating(n: int) -> int:
    """Young-generation collector passes while ``n`` short-lived dicts are kept alive in
    a list (net container allocations, as a batch of decoded records)."""
    before = gc.get_stats()[0]["collections"]
    kept = [{"seq": i} for i in range(n)]
    passes = gc.get_stats()[0]["collections"] - before
    del kept
    return passes


def test_tuned_applies_both_settings_and_restores_the_callers() -> None:
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    with interpreter.tuned(0.0005):
        assert sys.getswitchinterval() == pytest.approx(0.0005)
        assert gc.get_threshold() == interpreter.GC_THRESHOLDS
    assert sys.getswitchinterval() == interval and gc.get_threshold() == thresholds


def test_tuned_restores_the_callers_settings_after_an_exception() -> None:
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    with pytest.raises(RuntimeError), interpreter.tuned(0.002):
        raise RuntimeError("the loop failed")
    assert sys.getswitchinterval() == interval and gc.get_threshold() == thresholds


def test_the_collector_makes_far_fewer_passes_over_a_batch() -> None:
    gc.collect()
    with interpreter.tuned(sys.getswitchinterval()):
        gc.collect()
        tuned = _young_passes_while_allocating(20_000)
    thresholds = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's default, whatever an earlier test left
    try:
        gc.collect()
        default = _young_passes_while_allocating(20_000)
    finally:
        gc.set_threshold(*thresholds)
    # the default: a pass per ~700 net allocations, so ~28 here; tuned: none
    assert tuned == 0 and default >= 10


def test_the_signer_process_runs_tuned(tmp_path) -> None:
    """``python -m ledgerstream.signer_worker`` tunes its interpreter before anything else
    (here it then stops at a missing key, with exit code 2)."""
    from ledgerstream.signer_worker.__main__ import SWITCH_INTERVAL_S, main

    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    try:
        assert main(["--home", str(tmp_path), "--bootstrap", "127.0.0.1:1", "--key", str(tmp_path / "none.pem")]) == 2
        assert gc.get_threshold() == interpreter.GC_THRESHOLDS
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
