"""The benchmark ledger's event ids: UUIDv7 (time ordered, as ledgerstream's producers make
them) or random UUIDv4, checked with the standard library's ``uuid`` parser."""
from __future__ import annotations

import uuid

import pytest

from ledgerstream.core.wire import codec
from ledgerstream.tools.bench_ledger import EVENT_IDS, action_record

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kind, version", [("uuid7", 7), ("uuid4", 4)])
def test_benchmark_actions_carry_the_chosen_kind_of_event_id(kind: str, version: int) -> None:
    ids = [codec.decode(action_record(i, "agent-1", EVENT_IDS[kind]), expect="ActionEvent")[1]["event_id"] for i in range(200)]
    assert all(uuid.UUID(e).version == version for e in ids)
    assert len(set(ids)) == len(ids)
    if kind == "uuid7":
        assert ids == sorted(ids)  # time ordered: the index's event-id column gets appends
    else:
        assert ids != sorted(ids)
