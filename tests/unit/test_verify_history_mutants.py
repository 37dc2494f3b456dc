"""MemoryHistory (core/verify/history.py) on the cases its mutation run showed untested
(docs/mutation.md): what the Checker remembers per integrated entry, answered as the
History protocol's docstrings say. Tree roots are RFC 9162 section 2.1.1 MTH computed here
with hashlib over leaf = SHA-256(0x00 || entry_hash) (docs/spec.md section 5)."""
from __future__ import annotations

import hashlib

import pytest

from ledgerstream.core.verify import MemoryHistory

pytestmark = pytest.mark.unit


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, recursively: k is the largest power of two smaller than n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def hashes(n: int) -> list[bytes]:
    return [hashlib.sha256(b"entry %d" % i).digest() for i in range(n)]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 13])
def test_hash_at_gives_back_each_appended_hash_and_the_tree_is_over_them(n: int) -> None:
    h = MemoryHistory()
    for x in hashes(n):
        h.append(x)
    assert [h.hash_at(seq) for seq in range(n)] == hashes(n)
    assert h.tree.size == n and h.tree.root() == mth(hashes(n))


def test_an_unknown_entry_is_kept_as_zeros() -> None:
    h = MemoryHistory()
    h.append(hashes(1)[0])
    h.append(bytes(32))  # a seq in a gap: its hash is unknown
    h.append(hashes(3)[2])
    assert h.hash_at(1) == bytes(32) and h.hash_at(2) == hashes(3)[2]
    assert h.tree.root() == mth([hashes(1)[0], bytes(32), hashes(3)[2]])


def test_events_agents_and_checkpoint_bodies_are_remembered_newest_first() -> None:
    h = MemoryHistory()
    assert h.event("e1") is None and h.agent("a") is None and h.checkpoint_body(b"\x01" * 32) is None
    h.add_event("e1", 3, "a")
    h.add_event("e1", 7, "b")  # the newest entry carrying the event
    h.set_agent("a", (2, b"\x02" * 32, 5))
    h.set_agent("a", (3, b"\x03" * 32, 9))
    h.add_checkpoint_body(b"\x01" * 32, (4, b"body\n", 99))
    assert h.event("e1") == (7, "b") and h.event("e2") is None
    assert h.agent("a") == (3, b"\x03" * 32, 9) and h.agent("b") is None
    assert h.checkpoint_body(b"\x01" * 32) == (4, b"body\n", 99)
    assert h.persistent is False and h.graph_edges is None


def test_copy_into_gives_an_empty_history_everything() -> None:
    source = MemoryHistory()
    for x in hashes(6):
        source.append(x)
    source.add_event("e1", 1, "a")
    source.add_event("e2", 4, "b")
    source.set_agent("a", (1, hashes(6)[1], 1))
    source.set_agent("b", (2, hashes(6)[4], 4))
    source.add_checkpoint_body(b"\x05" * 32, (6, b"cp\n", 7))
    target = MemoryHistory()
    source.copy_into(target)
    assert [target.hash_at(s) for s in range(6)] == hashes(6)
    assert target.tree.size == 6 and target.tree.root() == mth(hashes(6))
    assert (target.event("e1"), target.event("e2")) == ((1, "a"), (4, "b"))
    assert (target.agent("a"), target.agent("b")) == ((1, hashes(6)[1], 1), (2, hashes(6)[4], 4))
    assert target.checkpoint_body(b"\x05" * 32) == (6, b"cp\n", 7)
