"""Writes tests/vectors/records/verdicts_v1.json: a small signed ledger that exercises what
ledger_v1.json does not (a pending link resolved later, a resolved link, m-of-n approvals,
floats in a payload, a per-entry RFC 3161 token), and failing streams, each with the findings
docs/spec.md says a verifier must raise (written here by hand from the spec, not computed).

    python tests/vectors/gen_verdicts.py      (needs openssl for the token; run once)

A failing case is a list of records in topic order: "g<N>" names genuine entry N of
"ledger", anything else is hex of the record bytes given in the case; some cases are a ledger
built with one change, every later hash and signature recomputed (unchanged entries stay "g<N>").
"""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any, Callable

from ledgerstream.core import merkle, mldsa, records
from ledgerstream.core.wire import codec
from ledgerstream.core.timestamp import make_query
from ledgerstream.stack.devtsa import _openssl, _TsaServer, ensure_ca

from gen_records import _hexify  # run as a script: tests/vectors is on sys.path

OUT = Path(__file__).parent / "records" / "verdicts_v1.json"
SIGNER = bytes(range(32))
OTHER = bytes(range(100, 132))
APPROVERS = {"alice": bytes([1]) * 32, "bob": bytes([2]) * 32, "carol": bytes([3]) * 32}
T0 = 1767225600000000  # 2026-01-01T00:00:00Z in µs
FLOATS = {"big": 1e21, "small": 1e-7, "tenth": 0.1, "negative_zero": -0.0, "two": 2.0, "third": 1 / 3}


def _action(i: int, agent: str, action_type: str, payload: Any, *, event_id: str | None = None,
            links: list[dict] | None = None) -> dict[str, Any]:
    canonical = records.canonical_json(payload)
    salt = bytes([i]) * 32
    return {"event_id": event_id or f"0190b000-0000-7000-8000-{i:012d}", "agent_id": agent, "session_id": None,
            "action_type": action_type, "payload": canonical, "payload_salt": salt,
            "payload_hash": records.payload_commitment(salt, canonical), "occurred_at": T0 + i,
            "links": links or [], "policy": None, "approvals": [], "trace": None,
            "producer": {"library": "vectors", "version": "1", "host": "vector-host", "pid": 1, "adapter": None},
            "offline": False}


def _approve(action: dict[str, Any], approver: str) -> dict[str, Any]:
    key = mldsa.PrivateKey.from_seed(APPROVERS[approver], "pyca")
    approved_at = T0 + 500
    message = records.approval_message(request_id="req-1", approver_id=approver, decision="approve",
                                       approved_at=approved_at, event_id=action["event_id"],
                                       agent_id=action["agent_id"], action_type=action["action_type"],
                                       payload_hash=action["payload_hash"])
    return {"request_id": "req-1", "approver_id": approver, "key_id": key.public_key().key_id,
            "decision": "approve", "approved_at": approved_at, "signature": key.sign(message)}


def _actions() -> list[dict[str, Any]]:
    a0 = _action(0, "agent-a", "tool:search", {"q": "flights"})
    a1 = _action(1, "agent-b", "llm:chat", {"prompt": "plan"},
                 links=[{"agent_id": "agent-c", "event_id": "evt-future", "relation": "caused_by"}])
    a2 = _action(2, "agent-a", "payments:transfer", {"to": "acme", "eur": 120})
    a2["policy"] = {"decision": "approved", "rule": "payments:*", "reason": "2 of 3 approvers"}
    a2["approvals"] = [_approve(a2, "alice"), _approve(a2, "carol")]
    a3 = _action(3, "agent-c", "tool:fetch", {"url": "https://example.org"}, event_id="evt-future")
    a4 = _action(4, "agent-b", "llm:chat", {"prompt": "summarise"},
                 links=[{"agent_id": "agent-a", "event_id": a2["event_id"], "relation": "caused_by"}])
    a5 = _action(5, "agent-c", "data:write", FLOATS)
    return [a0, a1, a2, a3, a4, a5]


Change = Callable[[dict[str, Any]], None]


def build_ledger(tsa: _TsaServer, changes: dict[int, Change] | None = None,
                 genuine: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The entries the signer writes for ``_actions()``; ``changes[seq]`` edits entry seq
    before it is hashed and signed (a signer that wrote something else); entries before the
    first change are ``genuine``'s (ML-DSA signing is randomised: re-signing would differ)."""
    first_change = min(changes) if changes else None
    key = mldsa.PrivateKey.from_seed(SIGNER, "pyca")
    entries: list[dict[str, Any]] = []
    by_event: dict[tuple[str, str], dict[str, Any]] = {}
    heads: dict[str, tuple[int, bytes]] = {}
    head = records.ZERO_HASH
    for seq, action in enumerate(_actions()):
        resolved = []
        for link in action["links"]:
            target = by_event.get((link["agent_id"], link["event_id"]))
            resolved.append({"agent_id": link["agent_id"], "event_id": link["event_id"],
                             "status": "resolved" if target else "pending",
                             "seq": target["seq"] if target else None,
                             "entry_hash": bytes(target["entry_hash"]) if target else None})
        agent = action["agent_id"]
        agent_seq, agent_prev = heads.get(agent, (0, records.ZERO_HASH))
        e = {"spec_version": 1, "seq": seq, "prev_hash": head, "entry_hash": records.ZERO_HASH, "action": action,
             "received_at": T0 + 1000 + seq, "source": {"topic": "ledgerstream.actions", "partition": 0, "offset": seq},
             "agent_seq": agent_seq, "agent_prev_hash": agent_prev, "resolved_links": resolved,
             "key_id": key.public_key().key_id, "signature": None, "timestamp_token": None}
        if changes and seq in changes:
            changes[seq](e)
        if genuine is not None and (first_change is None or seq < first_change):
            e = copy.deepcopy(genuine[seq])
            entries.append(e)
            by_event[(agent, action["event_id"])] = e
            head, heads[agent] = bytes(e["entry_hash"]), (agent_seq + 1, bytes(e["entry_hash"]))
            continue
        h = records.entry_hash(e)
        e["entry_hash"] = h
        e["signature"] = key.sign(records.entry_signing_message(h))
        if seq == 5:  # per-entry timestamp mode for this one: a token over the 32 entry-hash bytes
            e["timestamp_token"] = tsa.sign(make_query(h))[0]
        entries.append(e)
        by_event[(agent, action["event_id"])] = e
        head, heads[agent] = h, (agent_seq + 1, h)
    return entries


def checkpoint(entries: list[dict[str, Any]]) -> dict[str, Any]:
    key = mldsa.PrivateKey.from_seed(SIGNER, "pyca")
    tree = merkle.MerkleTree()
    for e in entries:
        tree.append(merkle.leaf_hash(records.merkle_leaf_input(bytes(e["entry_hash"]))))
    head, created = bytes(entries[-1]["entry_hash"]), T0 + 2000
    body = records.checkpoint_body("ledgerstream/vectors", tree.size, tree.root(), head, created)
    return {"origin": "ledgerstream/vectors", "tree_size": tree.size, "root_hash": tree.root(), "chain_head": head,
            "created_at": created, "body": body, "key_id": key.public_key().key_id, "signature": key.sign(body)}


def _entry_record(e: dict[str, Any]) -> str:
    return codec.encode("LedgerEntry", e).hex()


def _resealed(e: dict[str, Any], key_seed: bytes = SIGNER) -> dict[str, Any]:
    key = mldsa.PrivateKey.from_seed(key_seed, "pyca")
    e = copy.deepcopy(e)
    e["key_id"] = key.public_key().key_id
    e["entry_hash"] = records.entry_hash(e)
    e["signature"] = key.sign(records.entry_signing_message(e["entry_hash"]))
    return e


def _flip(hex_record: str, at: int) -> str:
    raw = bytearray(bytes.fromhex(hex_record))
    raw[at] ^= 0x01
    return raw.hex()


def failing(tsa: _TsaServer, ledger: list[dict[str, Any]]) -> list[dict[str, Any]]:
    g = [f"g{i}" for i in range(len(ledger))]
    out: list[dict[str, Any]] = []

    def stream(desc: str, records_: list[str], expected: list[str], why: str) -> None:
        out.append({"desc": desc, "stream": records_, "expected": expected, "why": why})

    e2 = ledger[2]
    tampered_payload = copy.deepcopy(e2)
    tampered_payload["action"]["payload"] = records.canonical_json({"to": "mallory", "eur": 120})
    stream("payload swapped, hash and signature kept", [*g[:2], _entry_record(tampered_payload), *g[2:]],
           ["hash_mismatch"], "section 2: SHA-256(TAG_PAYLOAD || salt || payload) != payload_hash; the record is "
           "dropped and the genuine entry 2 continues the chain")
    stored_hash_off = _entry_record(e2)
    at = bytes.fromhex(stored_hash_off).find(bytes(e2["entry_hash"]))
    stream("one bit of the stored entry_hash flipped", [*g[:2], _flip(stored_hash_off, at), *g[2:]],
           ["hash_mismatch"], "section 3: the recomputed entry hash differs from the stored field")
    sig_at = bytes.fromhex(stored_hash_off).find(bytes(e2["signature"])) + 100
    stream("one bit of the signature flipped", [*g[:2], _flip(stored_hash_off, sig_at), *g[2:]],
           ["bad_signature"], "section 4: the ML-DSA-65 signature over TAG_ENTRY_SIGNATURE || entry_hash fails")
    stream("entry 2 re-signed by an untrusted key", [*g[:2], _entry_record(_resealed(e2, OTHER)), *g[2:]],
           ["unknown_key"], "section 9 step 3: key_id is not a trusted signer key")
    garbage = codec.encode("LedgerEntry", ledger[0])[:10] + bytes(range(200))
    stream("a record that does not decode", [*g[:2], garbage.hex(), *g[2:]],
           ["undecodable"], "section 9 step 1")
    stream("entry 2 replayed", [*g[:3], "g2", *g[3:]], ["duplicate"], "the same entry again (seq already integrated)")
    stream("entry 3 missing", [*g[:3], *g[4:]], ["gap", "link_dangling"],
           "seq jumps from 2 to 4; entry 3 held the target of entry 1's pending link, which then never resolves")

    def variant(desc: str, changes: dict[int, Change], expected: list[str], why: str) -> None:
        genuine = [_entry_record(e) for e in ledger]
        changed = [_entry_record(e) for e in build_ledger(tsa, changes, ledger)]
        out.append({"desc": desc, "stream": [f"g{i}" if rec == genuine[i] else rec for i, rec in enumerate(changed)],
                    "expected": expected, "why": why})

    variant("an approval signature that does not verify",
            {2: lambda e: e["action"]["approvals"][1].update(signature=bytes(3309))},
            ["approval_invalid"], "section 7: carol's signature is not over this event")
    variant("decision approved with one approval of the two required",
            {2: lambda e: e["action"].update(approvals=e["action"]["approvals"][:1])},
            ["approval_invalid"], "section 7: m = 2")
    variant("a resolved link with the wrong entry_hash",
            {4: lambda e: e["resolved_links"][0].update(entry_hash=bytes(32))},
            ["link_mismatch"], "section 3 Chains: a resolved link names the entry hash of its target")
    variant("resolved_links not answering action.links one by one",
            {4: lambda e: e.update(resolved_links=[])},
            ["link_mismatch"], "section 3 Chains: one item per link, in order")
    variant("prev_hash of entry 3 does not link to entry 2",
            {3: lambda e: e.update(prev_hash=bytes(32))},
            ["chain_break"], "section 9 step 2")
    variant("agent_prev_hash of agent-a's second entry is wrong",
            {2: lambda e: e.update(agent_prev_hash=bytes(32))},
            ["agent_chain_break"], "section 3 Chains: the per-agent chain")
    variant("the pending link's target never comes (entry 3 carries another event id)",
            {3: lambda e: e["action"].update(event_id="evt-other")},
            ["link_dangling"], "section 3 Chains: grace of 2 entries and no time bound (config below)")
    variant("control: a variant built with no change", {}, [], "the variant builder itself adds no finding")
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = ensure_ca(Path(tmp))
        tsa = _TsaServer(("127.0.0.1", 0), files, _openssl())
        try:
            ledger = build_ledger(tsa)
            cases = failing(tsa, ledger)
            wrong_token = copy.deepcopy(ledger[5])
            wrong_token["timestamp_token"] = tsa.sign(make_query(bytes(32)))[0]  # not this entry's hash
            cases.append({"desc": "a per-entry token over other bytes", "stream": [
                *[f"g{i}" for i in range(5)], _entry_record(wrong_token)], "expected": ["timestamp_invalid"],
                "why": "section 6: the token's imprint is SHA-256(entry_hash)"})
            ca_pem = files.ca_cert.read_bytes().decode()
        finally:
            tsa.server_close()
    doc = {
        "spec": "docs/spec.md v1 sections 2-9: which findings a verifier raises",
        "provenance": "generated by tests/vectors/gen_verdicts.py; expected findings written from the spec's text",
        "signer": {"seed": SIGNER.hex(), "key_id": mldsa.PrivateKey.from_seed(SIGNER, "pyca").public_key().key_id},
        "untrusted_signer_seed": OTHER.hex(),
        "approvers": {"m": 2, "seeds": {n: s.hex() for n, s in APPROVERS.items()}},
        "tsa_ca_pem": ca_pem,
        "config": {"link_grace_entries": 2, "link_grace_seconds": None,
                   "note": "pending links dangle 2 entries after the linking one (time bound off)"},
        "ledger": [{"seq": e["seq"], "avro_single_object": _entry_record(e), "entry": _hexify(e),
                    "entry_hash": bytes(e["entry_hash"]).hex()} for e in ledger],
        "checkpoint": {"avro_single_object": codec.encode("Checkpoint", checkpoint(ledger)).hex()},
        "float_payload": {"value_repr": {k: repr(v) for k, v in FLOATS.items()},
                          "jcs": records.canonical_json(FLOATS).decode()},
        "failing": cases,
    }
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: {len(ledger)} entries, {len(cases)} failing cases")


if __name__ == "__main__":
    main()
