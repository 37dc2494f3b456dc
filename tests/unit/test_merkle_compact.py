"""merkle.CompactRange against RFC 9162's recursive MTH (tests/support/rfc9162_checker.py,
written from the RFC's text) and the RFC 9162 / CT vectors of tests/vectors/merkle."""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from ledgerstream.core.merkle import EMPTY_ROOT, CompactRange, MerkleTree, leaf_hash
from support import rfc9162_checker as rfc9162

pytestmark = pytest.mark.unit


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(hashlib.sha256(b"leaf %d" % i).digest()) for i in range(n)]


def test_root_after_every_append_is_the_rfc_mth() -> None:
    leaves = _leaves(300)
    cr = CompactRange()
    assert cr.root() == EMPTY_ROOT and cr.size == 0
    for i, leaf in enumerate(leaves):
        assert cr.append(leaf) == i
        assert cr.size == i + 1
        assert len(cr.hashes) == (i + 1).bit_count()
        assert cr.root() == rfc9162.mth_from_leaf_hashes(leaves[:i + 1])


def test_hashes_are_the_perfect_subtrees_largest_first() -> None:
    leaves = _leaves(13)  # 13 = 8 + 4 + 1
    cr = CompactRange()
    for leaf in leaves:
        cr.append(leaf)
    want = [rfc9162.mth_from_leaf_hashes(leaves[0:8]), rfc9162.mth_from_leaf_hashes(leaves[8:12]), leaves[12]]
    assert list(cr.hashes) == want


def test_restored_range_continues_like_the_original() -> None:
    rng = random.Random(7)
    tree = MerkleTree()
    cr = CompactRange()
    for _ in range(5):
        for leaf in _leaves(rng.randrange(1, 200)):
            cr.append(leaf)
            tree.append(leaf)
        restored = CompactRange(cr.size, cr.hashes)
        extra = _leaves(rng.randrange(1, 50))
        for leaf in extra:
            restored.append(leaf)
            cr.append(leaf)
            tree.append(leaf)
        assert restored.root() == cr.root() == tree.root()


def test_tree_vectors() -> None:
    """tests/vectors/merkle/tree.json: the RFC 6962 / CT reference leaves ("", 00, 10, 2021,
    ...) and the root at every size."""
    data = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "merkle" / "tree.json").read_text())
    roots = {r["size"]: r["root"] for r in data["roots"]}
    cr = CompactRange()
    assert cr.root().hex() == roots[0]
    for i, leaf in enumerate(data["leaves"]):
        cr.append(leaf_hash(bytes.fromhex(leaf)))
        assert cr.hashes[-1].hex() == data["leaf_hashes"][i] or (i + 1) % 2 == 0
        if i + 1 in roots:
            assert cr.root().hex() == roots[i + 1], i + 1
    assert cr.size == len(data["leaves"]) and len(roots) > 5


@pytest.mark.parametrize("size,hashes", [(3, [bytes(32)]), (1, []), (0, [bytes(32)]), (2, [bytes(31)])])
def test_inconsistent_restores_are_refused(size: int, hashes: list[bytes]) -> None:
    with pytest.raises(ValueError):
        CompactRange(size, hashes)


def test_a_negative_size_is_refused() -> None:
    with pytest.raises(ValueError):
        CompactRange(-1, [])


def test_bad_leaves_are_refused() -> None:
    cr = CompactRange()
    with pytest.raises(ValueError):
        cr.append(b"short")
    assert cr.size == 0
