"""The spec vectors (tests/vectors/records/ledger_v1.json) checked against the code.

Each vector is recomputed from its inputs, so a change to any hashing rule, domain tag
or encoding fails here; and every mutation of a vector must fail verification.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledgerstream.core import merkle, mldsa, records
from ledgerstream.core.wire import codec
from ledgerstream.core.errors import InvalidSignature

pytestmark = pytest.mark.unit
VEC = json.loads((Path(__file__).parents[1] / "vectors" / "records" / "ledger_v1.json").read_text())
PUB = mldsa.PublicKey.from_bytes(bytes.fromhex(VEC["signer"]["public_key"]))


def test_signer_key_derives_from_seed() -> None:
    key = mldsa.PrivateKey.from_seed(bytes.fromhex(VEC["signer"]["seed"]))
    assert key.public_key().raw == PUB.raw
    assert PUB.key_id == VEC["signer"]["key_id"]


@pytest.mark.parametrize("case", VEC["payload_commitments"], ids=lambda c: c["desc"])
def test_payload_commitment(case: dict) -> None:
    canonical = records.canonical_json(json.loads(case["payload_json"]))
    assert canonical.hex() == case["canonical"]
    assert records.payload_commitment(bytes.fromhex(case["salt"]), canonical).hex() == case["commitment"]


@pytest.mark.parametrize("case", VEC["entries"], ids=lambda c: c["desc"])
def test_entry_vector(case: dict) -> None:
    _, entry = codec.decode(bytes.fromhex(case["avro_single_object"]), expect="LedgerEntry")
    assert records.canonical_json(records.entry_hash_view(entry)).decode() == case["entry_hash_view_jcs"]
    assert records.entry_hash_input(entry).hex() == case["entry_hash_input"]
    h = records.entry_hash(entry)
    assert h.hex() == case["entry_hash"] == bytes(entry["entry_hash"]).hex()
    msg = records.entry_signing_message(h)
    assert msg.hex() == case["signing_message"]
    PUB.verify(bytes(entry["signature"]), msg)
    assert merkle.leaf_hash(records.merkle_leaf_input(h)).hex() == case["leaf_hash"]
    assert codec.encode("LedgerEntry", entry).hex() == case["avro_single_object"]


def test_chain_links_and_merkle_root() -> None:
    tree = merkle.MerkleTree()
    head = records.ZERO_HASH
    for case in VEC["entries"]:
        _, e = codec.decode(bytes.fromhex(case["avro_single_object"]))
        assert bytes(e["prev_hash"]) == head
        head = bytes(e["entry_hash"])
        tree.append(bytes.fromhex(case["leaf_hash"]))
    cp = VEC["checkpoint"]
    assert tree.root().hex() == cp["root_hash"] and head.hex() == cp["chain_head"]
    body = records.checkpoint_body(cp["origin"], cp["tree_size"], tree.root(), head, cp["created_at"])
    assert body.hex() == cp["body"] and body.decode() == cp["body_text"]
    PUB.verify(bytes.fromhex(cp["signature"]), body)
    assert records.parse_checkpoint_body(body)["tree_size"] == cp["tree_size"]


# --- every mutation must change the hash or break the signature ---------------------------

MUTATIONS = {
    "seq": lambda e: e.__setitem__("seq", e["seq"] + 1),
    "prev_hash": lambda e: e.__setitem__("prev_hash", bytes(31) + b"\x01"),
    "received_at": lambda e: e.__setitem__("received_at", e["received_at"] + 1),
    "source.offset": lambda e: e["source"].__setitem__("offset", e["source"]["offset"] + 1),
    "agent_seq": lambda e: e.__setitem__("agent_seq", e["agent_seq"] + 1),
    "key_id": lambda e: e.__setitem__("key_id", "00" * 32),
    "action.agent_id": lambda e: e["action"].__setitem__("agent_id", "mallory"),
    "action.action_type": lambda e: e["action"].__setitem__("action_type", "data:delete:users"),
    "action.payload_hash": lambda e: e["action"].__setitem__("payload_hash", bytes(32)),
    "action.occurred_at": lambda e: e["action"].__setitem__("occurred_at", 0),
    "action.offline": lambda e: e["action"].__setitem__("offline", not e["action"]["offline"]),
    "action.links": lambda e: e["action"].__setitem__("links", [{"agent_id": "x", "event_id": "y", "relation": "caused_by"}]),
    "action.producer.host": lambda e: e["action"]["producer"].__setitem__("host", "evil"),
}


@pytest.mark.parametrize("field", sorted(MUTATIONS))
def test_mutated_entry_fails(field: str) -> None:
    _, entry = codec.decode(bytes.fromhex(VEC["entries"][1]["avro_single_object"]))
    MUTATIONS[field](entry)
    h = records.entry_hash(entry)
    assert h != bytes(entry["entry_hash"])
    with pytest.raises(InvalidSignature):
        PUB.verify(bytes(entry["signature"]), records.entry_signing_message(h))


def test_payload_erasure_keeps_the_hash() -> None:
    """Erasing payload and salt (right to erasure) must not change the entry hash."""
    _, entry = codec.decode(bytes.fromhex(VEC["entries"][0]["avro_single_object"]))
    before = records.entry_hash(entry)
    entry["action"]["payload"] = None
    entry["action"]["payload_salt"] = None
    assert records.entry_hash(entry) == before
    _, again = codec.decode(codec.encode("LedgerEntry", entry))
    assert records.entry_hash(again) == before
