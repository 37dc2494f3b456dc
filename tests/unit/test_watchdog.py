"""The watchdog ends a process whose loop stops beating, and only then."""
from __future__ import annotations

import threading
import time

import pytest

from ledgerstream.core.watchdog import EXIT_WATCHDOG, Watchdog

pytestmark = pytest.mark.unit


class Exits:
    def __init__(self) -> None:
        self.codes: list[int] = []
        self.called = threading.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.called.set()


def test_silence_longer_than_the_limit_exits_with_status_4_and_says_what_it_was_doing(caplog) -> None:
    exits = Exits()
    dog = Watchdog(0.4, "signer", exit=exits).start()
    dog.beat("commit_transaction")
    assert exits.called.wait(3), "the watchdog never fired"
    assert exits.codes == [EXIT_WATCHDOG] == [4]
    assert any("commit_transaction" in r.getMessage() and "no progress" in r.getMessage() for r in caplog.records)


def test_regular_beats_and_pauses_keep_it_quiet() -> None:
    exits = Exits()
    dog = Watchdog(0.4, "signer", exit=exits).start()
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        dog.beat()
        time.sleep(0.05)
    with dog.paused("a long bounded step"):
        time.sleep(1.2)
    time.sleep(0.2)
    dog.stop()
    assert exits.codes == []


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Watchdog(0, "x")
