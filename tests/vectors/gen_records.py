"""Writes tests/vectors/records/*.json: payload commitments, entry hashes, signing
messages and checkpoints, from fixed inputs. Run once; tests check the files.

    python tests/vectors/gen_records.py
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ledgerstream.core import merkle, mldsa, note, records
from ledgerstream.core.wire import codec

OUT = Path(__file__).parent / "records"
SEED = bytes(range(32))  # the vectors' signing key: FIPS 204 seed 00 01 .. 1f


def _salt(i: int) -> bytes:
    return hashlib.sha256(b"vector-salt-%d" % i).digest()


def _action(i: int, agent: str, payload: object, links: list | None = None) -> dict:
    canonical = records.canonical_json(payload)
    salt = _salt(i)
    return {
        "event_id": f"0190a000-0000-7000-8000-{i:012d}", "agent_id": agent, "session_id": "s-1",
        "action_type": "tool:search" if i % 2 == 0 else "llm:chat", "payload": canonical, "payload_salt": salt,
        "payload_hash": records.payload_commitment(salt, canonical), "occurred_at": 1767225600000000 + i,
        "links": links or [], "policy": None, "approvals": [], "trace": None,
        "producer": {"library": "ledgerstream", "version": "0.1.0", "host": "vector-host", "pid": 1, "adapter": None},
        "offline": False,
    }


def _hexify(v: object) -> object:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, dict):
        return {k: _hexify(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_hexify(x) for x in v]
    return v


def build() -> dict:
    key = mldsa.PrivateKey.from_seed(SEED, "pyca")
    pub = key.public_key()
    payloads = [{"q": "weather in Lisbon"}, {"model": "m", "tokens": 12, "ok": True}, {"n": 1.5, "list": [3, 2, 1]},
                {"unicode": "\u20ac\u00f6\U0001F600"}, {}]
    agents = ["agent-a", "agent-b", "agent-a", "agent-c", "agent-b"]
    entries, head, heads, tree = [], records.ZERO_HASH, {}, merkle.MerkleTree()
    for i, (agent, payload) in enumerate(zip(agents, payloads)):
        links = [{"agent_id": "agent-a", "event_id": entries[0]["action"]["event_id"], "relation": "caused_by"}] if i == 1 else []
        action = _action(i, agent, payload, links)
        agent_seq, agent_prev = heads.get(agent, (0, records.ZERO_HASH))
        resolved = [{"agent_id": l["agent_id"], "event_id": l["event_id"], "status": "resolved",
                     "seq": 0, "entry_hash": bytes(entries[0]["entry_hash"])} for l in links]
        entry = {"spec_version": 1, "seq": i, "prev_hash": head, "entry_hash": records.ZERO_HASH, "action": action,
                 "received_at": 1767225601000000 + i, "source": {"topic": "ledgerstream.actions", "partition": 0, "offset": i},
                 "agent_seq": agent_seq, "agent_prev_hash": agent_prev, "resolved_links": resolved,
                 "key_id": pub.key_id, "signature": None, "timestamp_token": None}
        h = records.entry_hash(entry)
        entry["entry_hash"] = h
        entry["signature"] = key.sign(records.entry_signing_message(h))
        entries.append(entry)
        head, heads[agent] = h, (agent_seq + 1, h)
        tree.append(merkle.leaf_hash(records.merkle_leaf_input(h)))
    cases = []
    for e in entries:
        cases.append({
            "desc": f"entry seq {e['seq']} ({e['action']['agent_id']}, {e['action']['action_type']})",
            "avro_single_object": codec.encode("LedgerEntry", e).hex(),
            "entry": _hexify(e),
            "entry_hash_view_jcs": records.canonical_json(records.entry_hash_view(e)).decode(),
            "entry_hash_input": records.entry_hash_input(e).hex(),
            "entry_hash": bytes(e["entry_hash"]).hex(),
            "signing_message": records.entry_signing_message(bytes(e["entry_hash"])).hex(),
            "leaf_hash": merkle.leaf_hash(bytes(e["entry_hash"])).hex(),
            "want_err": False,
        })
    body = records.checkpoint_body("ledgerstream/vectors", tree.size, tree.root(), head, 1767225602000000)
    checkpoint = {"origin": "ledgerstream/vectors", "tree_size": tree.size, "root_hash": tree.root().hex(),
                  "chain_head": head.hex(), "created_at": 1767225602000000, "body_text": body.decode(),
                  "body": body.hex(), "signature": key.sign(body).hex(),
                  "signed_note": note.checkpoint_note(body, "ledgerstream/vectors", pub.raw, key.sign(body)).decode()}
    commitments = []
    for i, payload in enumerate(payloads):
        canonical = records.canonical_json(payload)
        commitments.append({"desc": f"payload {i}", "payload_json": json.dumps(payload, ensure_ascii=False),
                            "canonical": canonical.hex(), "salt": _salt(i).hex(),
                            "commitment": records.payload_commitment(_salt(i), canonical).hex()})
    return {
        "spec": "docs/spec.md (ledgerstream spec v1): payload commitment, entry hash, entry signing message, checkpoint",
        "provenance": "generated by tests/vectors/gen_records.py",
        "signer": {"algorithm": "ML-DSA-65", "seed": SEED.hex(), "public_key": pub.raw.hex(), "key_id": pub.key_id},
        "payload_commitments": commitments,
        "entries": cases,
        "checkpoint": checkpoint,
        "schema_fingerprints": {n: codec.registry().schema(n).fingerprint.hex() for n in codec.registry().names()},
    }


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    (OUT / "ledger_v1.json").write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT / 'ledger_v1.json'}")
