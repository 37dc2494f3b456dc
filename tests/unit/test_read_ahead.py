"""core/read_ahead.py's rule on its own (D48), against a recorder of the two consumer calls it
makes; the same rule over the real broker: tests/integration/test_index_follower.py and
tests/integration/test_verifier_checkpoint_order.py."""
from __future__ import annotations

from typing import Any

import pytest

from ledgerstream.core.read_ahead import CheckpointReadAhead

pytestmark = pytest.mark.unit


class Calls:
    """Records incremental_unassign / incremental_assign as (name, [(topic, partition, offset)])."""

    def __init__(self) -> None:
        self.log: list[tuple[str, list[tuple[str, int, int]]]] = []

    def incremental_unassign(self, tps: Any) -> None:
        self.log.append(("unassign", [(tp.topic, tp.partition, tp.offset) for tp in tps]))

    def incremental_assign(self, tps: Any) -> None:
        self.log.append(("assign", [(tp.topic, tp.partition, tp.offset) for tp in tps]))


def test_records_within_the_read_ahead_or_at_the_entries_end_are_handed_over() -> None:
    calls = Calls()
    ahead = CheckpointReadAhead(calls, "x.checkpoints", 4)  # type: ignore[arg-type]
    assert ahead.admit(1, entries_at_end=False) and ahead.admit(0, entries_at_end=True)
    assert ahead.admit(-3, entries_at_end=True)  # at the end nothing is held back
    assert calls.log == [] and (ahead.held, ahead.holds) == (False, 0)


def test_the_first_record_beyond_holds_the_topic_and_every_later_one_is_dropped() -> None:
    calls = Calls()
    ahead = CheckpointReadAhead(calls, "x.checkpoints", 4)  # type: ignore[arg-type]
    assert not ahead.admit(0, entries_at_end=False)
    assert calls.log == [("unassign", [("x.checkpoints", 0, -1001)])] and ahead.held
    assert not ahead.admit(5, entries_at_end=True)  # fetched before the hold: dropped all the same
    assert ahead.holds == 1 and len(calls.log) == 1


def test_a_held_topic_is_read_again_from_the_given_offset_at_half_or_at_the_entries_end() -> None:
    calls = Calls()
    ahead = CheckpointReadAhead(calls, "x.checkpoints", 4)  # type: ignore[arg-type]
    assert not ahead.release(0, True, 7)  # nothing held: nothing to do
    ahead.admit(0, entries_at_end=False)
    assert not ahead.release(3, False, 7) and ahead.held  # 3 still wait: more than half of 4
    assert ahead.release(2, False, 7) and not ahead.held
    assert calls.log[-1] == ("assign", [("x.checkpoints", 0, 7)])
    ahead.admit(-1, entries_at_end=False)
    assert ahead.release(4, True, 11) and calls.log[-1] == ("assign", [("x.checkpoints", 0, 11)])
    assert ahead.holds == 2


def test_a_read_ahead_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CheckpointReadAhead(Calls(), "x.checkpoints", 0)  # type: ignore[arg-type]


def test_a_verifier_refuses_a_read_ahead_below_one(tmp_path: Any) -> None:
    from ledgerstream.core import mldsa
    from ledgerstream.core.config import Topics
    from ledgerstream.core.errors import ConfigError
    from ledgerstream.core.verify import CheckerConfig
    from ledgerstream.verifier_worker.settings import VerifierSettings

    common = dict(id="v1", home=tmp_path, bootstrap="127.0.0.1:9", topics=Topics.with_prefix("x."),
                  checker=CheckerConfig.from_keys([mldsa.PrivateKey.from_seed(bytes(32)).public_key()]))
    assert VerifierSettings(**common).checkpoint_read_ahead == 256  # docs/verifiers.md
    with pytest.raises(ConfigError, match="--checkpoint-read-ahead must be at least 1"):
        VerifierSettings(**common, checkpoint_read_ahead=0)
