"""ledgerstream.core.merkle: the cases that mutation testing (docs/mutation.md) found unpinned.

Every expected value here comes from RFC 9162 section 2.1 computed with hashlib directly
(MTH, PATH and PROOF transcribed as recursion on lists, or the hash chain a full tree's
border path gives), never from the module itself.
"""
from __future__ import annotations

import hashlib

import pytest

from ledgerstream.core.errors import ProofError, RootMismatch
from ledgerstream.core.merkle import MerkleTree, leaf_hash, verify_consistency, verify_inclusion
from support.rfc9162_checker import mth as _mth, subproof as _subproof

pytestmark = pytest.mark.unit


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


ENTRIES = [f"mutation entry {i}".encode() for i in range(1100)]


@pytest.fixture(scope="module")
def big_tree() -> MerkleTree:
    tree = MerkleTree()
    for entry in ENTRIES:
        tree.append(leaf_hash(entry))
    return tree


@pytest.mark.parametrize(("size1", "size2"), [(512, 600), (512, 1100), (1024, 1100), (513, 1100)])
def test_consistency_from_an_old_size_that_is_a_power_of_two_above_256(big_tree, size1: int, size2: int) -> None:
    """size1 == 1 << shift decides whether the old root is sent in the proof; compared with
    ``is``, it holds only for the small ints CPython caches (up to 256)."""
    want = _subproof(size1, ENTRIES[:size2], True)
    assert big_tree.consistency_proof(size1, size2) == want
    root1, root2 = _mth(ENTRIES[:size1]), _mth(ENTRIES[:size2])
    assert big_tree.root(size1) == root1 and big_tree.root(size2) == root2
    verify_consistency(size1, size2, root1, root2, want)


HUGE = 2 ** 300  # a tree this large has proofs of 300 hashes: lengths no small-int cache holds
SIBLINGS = [_h(b"sibling %d" % i) for i in range(300)]
LEAF = _h(b"\x00" + b"leaf")


def test_inclusion_proof_of_300_hashes_for_the_first_leaf_of_a_2_pow_300_tree() -> None:
    # PATH(0, D[2**300]) is the right sibling at every level, leaf side first (RFC 9162 2.1.3.1)
    root = LEAF
    for sibling in SIBLINGS:
        root = _h(b"\x01" + root + sibling)
    verify_inclusion(LEAF, 0, HUGE, SIBLINGS, root)


def test_inclusion_proof_of_300_hashes_for_the_last_leaf_of_a_2_pow_300_tree() -> None:
    root = LEAF
    for sibling in SIBLINGS:
        root = _h(b"\x01" + sibling + root)
    verify_inclusion(LEAF, HUGE - 1, HUGE, SIBLINGS, root)


def test_inclusion_of_the_lone_last_leaf_of_a_2_pow_300_plus_1_tree() -> None:
    # PATH(2**300, D[2**300 + 1]) = [MTH(D[0:2**300])]: the verifier meets fn == sn, both even
    left = _h(b"a complete left subtree of 2**300 leaves")
    verify_inclusion(LEAF, HUGE, HUGE + 1, [left], _h(b"\x01" + left + LEAF))


def test_consistency_from_2_pow_300_plus_1_to_2_pow_300_plus_2() -> None:
    # D = 2**300 leaves with root A, then x and y. RFC 9162 2.1.4.1:
    # PROOF(2**300 + 1, D[2**300 + 2]) = SUBPROOF(1, [x, y], false) : MTH(D[0:2**300]) = [Lx, Ly, A]
    a, lx, ly = _h(b"A"), _h(b"\x00x"), _h(b"\x00y")
    root1 = _h(b"\x01" + a + lx)
    root2 = _h(b"\x01" + a + _h(b"\x01" + lx + ly))
    verify_consistency(HUGE + 1, HUGE + 2, root1, root2, [lx, ly, a])


def test_consistency_proof_of_300_hashes_from_size_1_to_2_pow_300() -> None:
    # PROOF(1, D[2**300]) = the roots of D[1:2], D[2:4], ..., D[2**299:2**300] (RFC 9162 2.1.4.1)
    root2 = LEAF
    for sibling in SIBLINGS:
        root2 = _h(b"\x01" + root2 + sibling)
    verify_consistency(1, HUGE, LEAF, root2, SIBLINGS)


def test_equal_sizes_above_256_need_an_empty_proof_and_equal_roots(big_tree) -> None:
    """RFC 9162 2.1.4.2: size1 == size2 is consistent with an empty proof and equal roots,
    also for sizes that are equal ints but not the same object."""
    size, again = 300, int("300")
    root = _mth(ENTRIES[:size])
    verify_consistency(size, again, root, root, [])
    assert big_tree.consistency_proof(size, again) == []
    with pytest.raises(RootMismatch):
        verify_consistency(size, again, root, _mth(ENTRIES[:size + 1]), [])


@pytest.mark.parametrize("size", [5, 300])
def test_indexes_at_or_past_the_tree_size_are_refused(big_tree, size: int) -> None:
    """A tree of n leaves has leaves 0..n-1 only (RFC 9162 2.1.3.1 defines PATH(m, D[n])
    for 0 <= m < n): index n, n + 1 and beyond are errors, not empty leaves or paths."""
    tree = MerkleTree()
    for entry in ENTRIES[:size]:
        tree.append(leaf_hash(entry))
    for index in (int(str(size)), size + 1, size + 7):
        with pytest.raises(ValueError):
            tree.leaf(index)
        with pytest.raises(ValueError):
            tree.inclusion_proof(index)
        with pytest.raises(ValueError):
            big_tree.inclusion_proof(index, size)


def test_hashes_longer_than_32_bytes_are_refused() -> None:
    """RFC 6962 hashes are SHA-256: a 33-byte leaf hash, root or proof node is malformed."""
    tree = MerkleTree()
    with pytest.raises(ValueError):
        tree.append(bytes(33))
    assert tree.size == 0
    leaf, sibling = _h(b"\x00a"), _h(b"\x00b")
    root = _h(b"\x01" + leaf + sibling)
    verify_inclusion(leaf, 0, 2, [sibling], root)
    for args in ((leaf + b"\x00", 0, 2, [sibling], root), (leaf, 0, 2, [sibling + b"\x00"], root),
                 (leaf, 0, 2, [sibling], root + b"\x00")):
        with pytest.raises(ProofError, match="must be 32 bytes"):
            verify_inclusion(*args)
    with pytest.raises(ProofError, match="must be 32 bytes"):
        verify_consistency(1, 2, leaf, root + b"\x00", [sibling])


class _LevelLog(MerkleTree):
    def __init__(self) -> None:
        super().__init__()
        self.created: list[int] = []

    def _new_level(self, level: int) -> bytearray:
        self.created.append(level)
        return super()._new_level(level)


def test_each_level_is_created_once_when_the_first_subtree_of_its_height_completes() -> None:
    """n leaves hold complete subtrees of heights 0 .. floor(log2 n): _new_level (which
    index/history.py's SpilledTree backs with a file it opens empty) must be asked for
    heights 1, 2, ... once each, as 2, 4, 8, ... leaves are reached, and never again."""
    tree = _LevelLog()
    for n in range(1, 1100):
        tree.append(_h(b"\x00%d" % n))
        assert tree.created == list(range(1, n.bit_length())), n
