"""Inclusion and consistency proofs over a ledger the real signer wrote, in checkpoint
signing mode (entries unsigned, covered by signed checkpoints only). Proofs come from
ledgerstream's MerkleTree built from the committed entries; they are verified by the
independent RFC 9162 checker against the roots the signer published on the topic."""
from __future__ import annotations

import random

import pytest

from ledgerstream.core import merkle, mldsa, records
from support import rfc9162_checker as rfc9162
from support.actions import make_action
from support.rfc9162_checker import ProofFailed
from test_signer_helpers import _close_tails  # noqa: F401  (autouse fixture)
from test_signer_helpers import (TopicTail, action_items, check_checkpoints, check_ledger, produce,
                                 split_checkpoints, wait_until)

pytestmark = pytest.mark.integration

TOTAL = 300


def test_proofs_against_published_checkpoints(bootstrap, topics, start_signer, signer_key_path) -> None:
    pub = mldsa.load_private_key(signer_key_path).public_key()
    signer = start_signer("--signing-mode", "checkpoint", "--checkpoint-every", "37", "--batch-size", "25")
    actions = [make_action(agent_id=f"agent-{i % 4}", payload={"i": i}) for i in range(TOTAL)]
    produce(bootstrap, topics.actions, action_items(actions))
    tail, cp_tail = TopicTail(bootstrap, topics.entries), TopicTail(bootstrap, topics.checkpoints)
    wait_until(lambda: tail.poll() >= TOTAL, 60, f"{TOTAL} entries", on_timeout=signer.log)
    wait_until(lambda: cp_tail.poll() and any(n == "Checkpoint" and r["tree_size"] == TOTAL
                                              for n, r in cp_tail.decoded()), 30, "the final checkpoint")
    entries = [rec for _, rec in tail.decoded("LedgerEntry")]
    cps, _ = split_checkpoints(cp_tail.decoded())
    check_ledger(entries, pub, signed=False)
    check_checkpoints(entries, cps, pub)
    assert len(cps) >= TOTAL // 37, [c["tree_size"] for c in cps]

    tree = merkle.MerkleTree()
    for e in entries:
        tree.append(merkle.leaf_hash(records.merkle_leaf_input(bytes(e["entry_hash"]))))
    rng = random.Random(1)
    for cp in cps:
        size, root = cp["tree_size"], bytes(cp["root_hash"])
        for index in {0, size - 1, *rng.sample(range(size), min(size, 6))}:
            leaf = rfc9162.hash_leaf(bytes(entries[index]["entry_hash"]))
            proof = tree.inclusion_proof(index, size)
            rfc9162.verify_inclusion(leaf, index, size, proof, root)
            # the same proof must not prove anything else
            other = rfc9162.hash_leaf(bytes(entries[(index + 1) % size]["entry_hash"]))
            if size > 1:
                with pytest.raises(ProofFailed):
                    rfc9162.verify_inclusion(other, index, size, proof, root)
            if proof:
                with pytest.raises(ProofFailed):
                    rfc9162.verify_inclusion(leaf, index, size, [bytes(32), *proof[1:]], root)

    pairs = list(zip(cps, cps[1:])) + [(cps[0], cps[-1])]
    for old, new in pairs:
        proof = tree.consistency_proof(old["tree_size"], new["tree_size"])
        rfc9162.verify_consistency(old["tree_size"], new["tree_size"], bytes(old["root_hash"]),
                                   bytes(new["root_hash"]), proof)
        if old["tree_size"] < new["tree_size"]:
            forged_root = bytearray(new["root_hash"])
            forged_root[0] ^= 1
            with pytest.raises(ProofFailed):
                rfc9162.verify_consistency(old["tree_size"], new["tree_size"], bytes(old["root_hash"]),
                                           bytes(forged_root), proof)
