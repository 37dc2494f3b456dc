"""The tests' independent RFC 9162 checker (tests/support/rfc9162_checker.py) is itself
checked: it reproduces the repository's vectors (good ones pass, bad ones fail), agrees
with the signer's MerkleTree on every size up to 40, and rejects every mutated proof.
If it accepted everything, the integration proof tests would prove nothing."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ledgerstream.core.merkle import MerkleTree, leaf_hash
from support import rfc9162_checker as rfc9162
from support.rfc9162_checker import ProofFailed

pytestmark = pytest.mark.unit

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "merkle"


def _load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


def test_roots_match_the_tree_vectors() -> None:
    tree = _load("tree.json")
    leaves = [rfc9162.hash_leaf(bytes.fromhex(x)) for x in tree["leaves"]]
    assert [h.hex() for h in leaves] == tree["leaf_hashes"]
    for item in tree["roots"]:
        assert rfc9162.mth_from_leaf_hashes(leaves[:item["size"]]).hex() == item["root"]


@pytest.mark.parametrize("case", _load("inclusion.json")["cases"], ids=lambda c: c["desc"])
def test_inclusion_vectors(case: dict) -> None:
    args = (bytes.fromhex(case["leaf_hash"]), case["index"], case["size"],
            [bytes.fromhex(p) for p in case["proof"]], bytes.fromhex(case["root"]))
    if case["want_err"]:
        with pytest.raises(ProofFailed):
            rfc9162.verify_inclusion(*args)
    else:
        rfc9162.verify_inclusion(*args)


@pytest.mark.parametrize("case", _load("consistency.json")["cases"], ids=lambda c: c["desc"])
def test_consistency_vectors(case: dict) -> None:
    args = (case["size1"], case["size2"], bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"]),
            [bytes.fromhex(p) for p in case["proof"]])
    if case["want_err"]:
        with pytest.raises(ProofFailed):
            rfc9162.verify_consistency(*args)
    else:
        rfc9162.verify_consistency(*args)


def _mutations(proof: list[bytes]) -> list[list[bytes]]:
    """Bad proofs made from a good one: each node with a flipped bit, one node missing,
    one extra node, two nodes swapped."""
    bad = []
    for i, node in enumerate(proof):
        bad.append(proof[:i] + [bytes([node[0] ^ 1]) + node[1:]] + proof[i + 1:])
        bad.append(proof[:i] + proof[i + 1:])
    bad.append(proof + [bytes(32)])
    if len(proof) > 1 and proof[0] != proof[1]:
        bad.append([proof[1], proof[0], *proof[2:]])
    return bad


def test_agrees_with_the_signer_tree_and_rejects_mutations() -> None:
    rng = random.Random(9162)
    leaves = [leaf_hash(rng.randbytes(32)) for _ in range(40)]
    tree = MerkleTree()
    for leaf in leaves:
        tree.append(leaf)
    for size in range(1, 41):
        root = tree.root(size)
        assert rfc9162.mth_from_leaf_hashes(leaves[:size]) == root
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            rfc9162.verify_inclusion(leaves[index], index, size, proof, root)
            for bad in _mutations(proof):
                with pytest.raises(ProofFailed):
                    rfc9162.verify_inclusion(leaves[index], index, size, bad, root)
            for wrong_index in {index - 1, index + 1} - {-1, size}:
                with pytest.raises(ProofFailed):
                    rfc9162.verify_inclusion(leaves[index], wrong_index, size, proof, root)
        for size1 in range(0, size + 1):
            proof = tree.consistency_proof(size1, size)
            rfc9162.verify_consistency(size1, size, tree.root(size1), root, proof)
            for bad in _mutations(proof):
                with pytest.raises(ProofFailed):
                    rfc9162.verify_consistency(size1, size, tree.root(size1), root, bad)
            if 0 < size1 < size:
                with pytest.raises(ProofFailed):  # swapped roots
                    rfc9162.verify_consistency(size1, size, root, tree.root(size1), proof)
