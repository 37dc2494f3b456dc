"""ledgerstream.core.merkle against a naive RFC 9162 reference and the RFC 6962 known values.

The reference (tests/support/rfc9162_checker.py: mth, path, proof, subproof) transcribes RFC
9162 sections 2.1.1 (MTH), 2.1.3.1 (PATH) and 2.1.4.1 (PROOF/SUBPROOF) literally, recursing
on lists of entries, with no shared code with the module. Every size 0..70, every leaf index and every (m, n) pair is cross-checked, and each
good proof is mutated the way transparency-dev/merkle's verify_test.go does.
"""
from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable

import pytest

from ledgerstream.core import merkle
from ledgerstream.core.errors import ProofError, RootMismatch
from support.rfc9162_checker import _largest_power_of_two_below as _split, mth as ref_mth, path as ref_path, proof as ref_proof
from ledgerstream.core.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

pytestmark = pytest.mark.unit

MAX_SIZE = 70

# The 8-entry reference tree of certificate-transparency / transparency-dev/merkle.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (index, size, proof) and (size1, size2, proof) from transparency-dev/merkle proof/verify_test.go.
CT_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CT_CONSISTENCY = [
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]

# Distinct entries, so no two subtrees share a hash and every mutation changes the result.
ENTRIES = CT_LEAVES + [f"ledgerstream entry {i}".encode() for i in range(len(CT_LEAVES), 1100)]


# ---- proof shapes, from the reference's recursion ----------------------------------------

def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def path_shape(m: int, n: int) -> tuple[bool, ...]:
    """Which side each PATH(m, D[n]) hash sits on (True: left), leaf first.

    The verifier's work is a function of this shape alone, so two (index, size) pairs with
    the same shape accept exactly the same proofs: such a mutation is not a bad proof.
    """
    if n == 1:
        return ()
    k = _split(n)
    if m < k:
        return path_shape(m, k) + (False,)
    return path_shape(m - k, n - k) + (True,)


def proof_shape(m: int, n: int, b: bool = True) -> tuple[object, ...]:
    """Like path_shape for SUBPROOF: where the seed comes from, then the sides."""
    if m == n:
        return ("root1" if b else "proof",)
    k = _split(n)
    if m <= k:
        return proof_shape(m, k, b) + (False,)
    return proof_shape(m - k, n - k, False) + (True,)


# ---- helpers --------------------------------------------------------------------------

def _flip(h: bytes, bit: int = 3) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


def _rejects(call: Callable[[], object]) -> bool:
    try:
        call()
    except ProofError:
        return True
    return False


def _tree(n: int) -> MerkleTree:
    tree = MerkleTree()
    for entry in ENTRIES[:n]:
        tree.append(leaf_hash(entry))
    return tree


FULL = _tree(MAX_SIZE)
LEAF_HASHES = [leaf_hash(e) for e in ENTRIES]
REF_ROOTS = [ref_mth(ENTRIES[:n]) for n in range(MAX_SIZE + 2)]


def _inclusion_mutations(i: int, n: int, proof: list[bytes], root: bytes):
    """(description, args, must_verify) for bad variants of a good inclusion proof."""
    leaf = LEAF_HASHES[i]
    for i2, n2, desc in ((i - 1, n, "index-1"), (i + 1, n, "index+1"), (i ^ 2, n, "index^2"),
                         (i, n - 1, "size-1"), (i, n + 1, "size+1"), (i, n * 2, "size*2"), (i, n // 2, "size/2")):
        same = 0 <= i2 < n2 and path_shape(i2, n2) == path_shape(i, n)
        yield desc, (leaf, i2, n2, proof, root), same
    yield "wrong leaf", (LEAF_HASHES[i + 1], i, n, proof, root), False
    yield "leaf data not hashed", (_sha256(ENTRIES[i]), i, n, proof, root), False
    yield "root of size-1", (leaf, i, n, proof, REF_ROOTS[n - 1]), False
    yield "empty root", (leaf, i, n, proof, EMPTY_ROOT), False
    yield "flipped root", (leaf, i, n, proof, _flip(root)), False
    for k in range(len(proof)):
        bad = list(proof)
        bad[k] = _flip(bad[k])
        yield f"proof[{k}] bit flipped", (leaf, i, n, bad, root), False
    yield "extra node at end", (leaf, i, n, [*proof, root], root), False
    yield "extra node at start", (leaf, i, n, [root, *proof], root), False
    yield "empty node at end", (leaf, i, n, [*proof, b""], root), False
    if proof:
        yield "last node missing", (leaf, i, n, proof[:-1], root), False
        yield "first node missing", (leaf, i, n, proof[1:], root), False
    if len(proof) > 1:
        yield "nodes swapped", (leaf, i, n, [proof[1], proof[0], *proof[2:]], root), False


def _consistency_should_verify(m: int, n: int, m2: int, n2: int, root1: bytes, root2: bytes, proof) -> bool:
    """Whether a size-mutated consistency claim is still acceptable under RFC 9162."""
    if not 0 <= m2 <= n2:
        return False
    if m2 == 0 or m2 == n2:
        return not proof and (m2 != 0 or root1 == EMPTY_ROOT) and (m2 != n2 or root1 == root2)
    return 0 < m < n and proof_shape(m2, n2) == proof_shape(m, n)


def _consistency_mutations(m: int, n: int, root1: bytes, root2: bytes, proof: list[bytes]):
    """(description, args, must_verify) for bad variants of a good consistency proof."""
    for m2, n2, desc in ((m - 1, n, "size1-1"), (m + 1, n, "size1+1"), (m ^ 2, n, "size1^2"),
                         (m, n - 1, "size2-1"), (m, n + 1, "size2+1"), (m, n * 2, "size2*2"), (m, n // 2, "size2/2")):
        yield desc, (m2, n2, root1, root2, proof), _consistency_should_verify(m, n, m2, n2, root1, root2, proof)
    if root1 != root2:
        yield "swapped roots", (m, n, root2, root1, proof), False
    yield "flipped root1", (m, n, _flip(root1), root2, proof), False
    # The empty tree is a prefix of every tree, whatever root2 is.
    yield "flipped root2", (m, n, root1, _flip(root2), proof), m == 0 < n
    for k in range(len(proof)):
        bad = list(proof)
        bad[k] = _flip(bad[k], 4)
        yield f"proof[{k}] bit flipped", (m, n, root1, root2, bad), False
    yield "extra node at end", (m, n, root1, root2, [*proof, root2]), False
    yield "extra node at start", (m, n, root1, root2, [root1, *proof]), False
    yield "empty node at end", (m, n, root1, root2, [*proof, b""]), False
    if proof:
        yield "empty proof", (m, n, root1, root2, []), False
        yield "last node missing", (m, n, root1, root2, proof[:-1]), False
        yield "first node missing", (m, n, root1, root2, proof[1:]), False
        yield "first node repeated", (m, n, root1, root2, [proof[0], *proof]), False


# ---- cross-check against the reference, every size 0..70 -------------------------------

@pytest.mark.parametrize("n", range(MAX_SIZE + 1))
def test_root_matches_reference(n: int) -> None:
    assert REF_ROOTS[n] == FULL.root(n)
    tree = _tree(n)  # the current root comes from the frontier, past roots from the cache
    assert tree.size == n
    assert tree.root() == REF_ROOTS[n]
    assert [tree.leaf(i) for i in range(n)] == LEAF_HASHES[:n]


@pytest.mark.parametrize("n", range(1, MAX_SIZE + 1))
def test_inclusion_matches_reference_and_mutations_fail(n: int) -> None:
    root = REF_ROOTS[n]
    for i in range(n):
        proof = FULL.inclusion_proof(i, n)
        assert proof == ref_path(i, ENTRIES[:n]), (i, n)
        assert _tree(n).inclusion_proof(i) == proof
        assert root_from_inclusion_proof(LEAF_HASHES[i], i, n, proof) == root
        verify_inclusion(LEAF_HASHES[i], i, n, proof, root)
        for desc, args, must_verify in _inclusion_mutations(i, n, proof, root):
            assert _rejects(lambda: verify_inclusion(*args)) != must_verify, (i, n, desc)


@pytest.mark.parametrize("n", range(MAX_SIZE + 1))
def test_consistency_matches_reference_and_mutations_fail(n: int) -> None:
    root2 = REF_ROOTS[n]
    for m in range(n + 1):
        root1 = REF_ROOTS[m]
        proof = FULL.consistency_proof(m, n)
        assert proof == (ref_proof(m, ENTRIES[:n]) if 0 < m < n else []), (m, n)
        assert _tree(n).consistency_proof(m) == proof
        verify_consistency(m, n, root1, root2, proof)
        for desc, args, must_verify in _consistency_mutations(m, n, root1, root2, proof):
            assert _rejects(lambda: verify_consistency(*args)) != must_verify, (m, n, desc)


def test_size_mutations_that_keep_the_proof_shape_are_indistinguishable() -> None:
    """A proof does not bind the tree size; the signed (size, root) pair does. Example:
    leaf 0 of a 3-leaf tree has the same proof shape as leaf 0 of a 4-leaf tree."""
    proof = FULL.inclusion_proof(0, 3)
    verify_inclusion(LEAF_HASHES[0], 0, 4, proof, REF_ROOTS[3])
    verify_consistency(1, 4, REF_ROOTS[1], REF_ROOTS[3], FULL.consistency_proof(1, 3))


def test_random_pairs_up_to_1100_leaves_match_reference() -> None:
    tree = _tree(1100)
    rng = random.Random(6962)
    for _ in range(60):
        n = rng.randint(1, 1100)
        i = rng.randrange(n)
        m = rng.randint(1, n)
        assert tree.root(n) == ref_mth(ENTRIES[:n])
        assert tree.inclusion_proof(i, n) == ref_path(i, ENTRIES[:n])
        assert tree.consistency_proof(m, n) == (ref_proof(m, ENTRIES[:n]) if m < n else [])
        verify_inclusion(LEAF_HASHES[i], i, n, tree.inclusion_proof(i, n), tree.root(n))
        verify_consistency(m, n, tree.root(m), tree.root(n), tree.consistency_proof(m, n))


# ---- RFC 6962 known values --------------------------------------------------------------

def test_hashing_primitives() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MerkleTree().root() == EMPTY_ROOT
    assert leaf_hash(b"") == _sha256(b"\x00")
    assert node_hash(b"a" * 32, b"b" * 32) == _sha256(b"\x01" + b"a" * 32 + b"b" * 32)


def test_ct_reference_tree_roots() -> None:
    tree = MerkleTree()
    for size, (entry, want) in enumerate(zip(CT_LEAVES, CT_ROOTS, strict=True), start=1):
        tree.append(leaf_hash(entry))
        assert tree.root().hex() == want, size
    assert [tree.root(s).hex() for s in range(1, 9)] == CT_ROOTS


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_ct_reference_inclusion_proofs(index: int, size: int, proof: list[str]) -> None:
    assert [h.hex() for h in FULL.inclusion_proof(index, size)] == proof
    verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, [bytes.fromhex(h) for h in proof],
                     bytes.fromhex(CT_ROOTS[size - 1]))


@pytest.mark.parametrize(("size1", "size2", "proof"), CT_CONSISTENCY)
def test_ct_reference_consistency_proofs(size1: int, size2: int, proof: list[str]) -> None:
    assert [h.hex() for h in FULL.consistency_proof(size1, size2)] == proof
    verify_consistency(size1, size2, bytes.fromhex(CT_ROOTS[size1 - 1]), bytes.fromhex(CT_ROOTS[size2 - 1]),
                       [bytes.fromhex(h) for h in proof])


# ---- verifier edge cases and errors -----------------------------------------------------

H = LEAF_HASHES[0]


@pytest.mark.parametrize(("args", "message"), [
    ((H, 0, 0, [], H), "not below tree size"),
    ((H, 1, 1, [], H), "not below tree size"),
    ((H, 5, 3, [], H), "not below tree size"),
    ((H, -1, 3, [], H), "index must be a non-negative int"),
    ((H, 0, -1, [], H), "size must be a non-negative int"),
    ((H, True, 3, [], H), "index must be a non-negative int"),
    ((H, 0, 2, [], H), "proof has 0 hashes, expected 1"),
    ((H, 0, 1, [H], H), "proof has 1 hashes, expected 0"),
    ((H, 0, 2, [H[:31]], H), "proof[0] must be 32 bytes, got 31 bytes"),
    ((H, 0, 2, ["ab" * 32], H), "proof[0] must be 32 bytes, got str"),
    ((b"", 0, 1, [], H), "leaf_hash must be 32 bytes"),
    ((H, 0, 1, [], b""), "root must be 32 bytes"),
])
def test_verify_inclusion_rejects_malformed_input_before_hashing(args, message, monkeypatch) -> None:
    monkeypatch.setattr(merkle, "node_hash", _no_hashing)
    with pytest.raises(ProofError, match=re.escape(message)) as info:
        verify_inclusion(*args)
    assert type(info.value) is ProofError


@pytest.mark.parametrize(("args", "message"), [
    ((2, 1, H, H, []), "size1 2 is larger than size2 1"),
    ((-1, 1, H, H, []), "size1 must be a non-negative int"),
    ((0, -1, H, H, []), "size2 must be a non-negative int"),
    ((0, 0, EMPTY_ROOT, EMPTY_ROOT, [H]), "proof has 1 hashes, expected 0"),
    ((0, 5, EMPTY_ROOT, H, [H]), "proof has 1 hashes, expected 0"),
    ((3, 3, H, H, [H]), "proof has 1 hashes, expected 0"),
    ((1, 2, H, H, []), "proof has 0 hashes, expected 1"),
    ((3, 8, H, H, [H] * 3), "proof has 3 hashes, expected 4"),
    ((3, 8, H, H, [H] * 3 + [b"x"]), "proof[3] must be 32 bytes"),
    ((1, 2, H[:5], H, [H]), "root1 must be 32 bytes"),
    ((1, 2, H, None, [H]), "root2 must be 32 bytes, got NoneType"),
])
def test_verify_consistency_rejects_malformed_input_before_hashing(args, message, monkeypatch) -> None:
    monkeypatch.setattr(merkle, "node_hash", _no_hashing)
    with pytest.raises(ProofError, match=re.escape(message)) as info:
        verify_consistency(*args)
    assert type(info.value) is ProofError


def _no_hashing(left: bytes, right: bytes) -> bytes:
    raise AssertionError("hashed before the input shape was checked")


def test_consistency_trivial_cases() -> None:
    r3 = REF_ROOTS[3]
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 3, EMPTY_ROOT, r3, [])
    verify_consistency(3, 3, r3, r3, [])
    with pytest.raises(RootMismatch, match="empty root"):
        verify_consistency(0, 3, r3, r3, [])
    with pytest.raises(RootMismatch, match="equal sizes with different roots") as info:
        verify_consistency(3, 3, r3, REF_ROOTS[2], [])
    assert info.value.evidence == {"expected": REF_ROOTS[2], "computed": r3}


def test_root_mismatch_carries_evidence() -> None:
    proof = FULL.inclusion_proof(2, 5)
    with pytest.raises(RootMismatch) as info:
        verify_inclusion(LEAF_HASHES[3], 2, 5, proof, REF_ROOTS[5])
    assert info.value.evidence["expected"] == REF_ROOTS[5]
    assert info.value.evidence["computed"] == root_from_inclusion_proof(LEAF_HASHES[3], 2, 5, proof)
    assert info.value.kind == "root_mismatch"
    assert REF_ROOTS[5].hex() in info.value.diagnostics()

    proof = FULL.consistency_proof(3, 7)
    with pytest.raises(RootMismatch, match="root1") as info:
        verify_consistency(3, 7, REF_ROOTS[2], REF_ROOTS[7], proof)
    assert info.value.evidence["expected"] == REF_ROOTS[2]
    with pytest.raises(RootMismatch, match="root2"):
        verify_consistency(3, 7, REF_ROOTS[3], REF_ROOTS[6], proof)


# ---- tree argument checks ---------------------------------------------------------------

def test_tree_rejects_bad_arguments() -> None:
    tree = _tree(5)
    for call in (
        lambda: tree.append(b"short"),
        lambda: tree.append("ab" * 16),
        lambda: tree.leaf(5),
        lambda: tree.leaf(-1),
        lambda: tree.root(6),
        lambda: tree.root(-1),
        lambda: tree.inclusion_proof(3, 3),
        lambda: tree.inclusion_proof(0, 0),
        lambda: tree.inclusion_proof(0, 6),
        lambda: tree.consistency_proof(4, 3),
        lambda: tree.consistency_proof(-1),
        lambda: tree.consistency_proof(1, 6),
    ):
        with pytest.raises(ValueError):
            call()
    assert tree.size == 5
    assert tree.append(LEAF_HASHES[5]) == 5
    assert tree.root() == REF_ROOTS[6]
