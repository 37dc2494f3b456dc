"""``ledgerstream.core.approvals.verify_approvals`` with real ML-DSA-65 keys: every good
approval set passes, and every mutation of it fails with ApprovalInvalid."""
from __future__ import annotations

import copy

import pytest

from ledgerstream.core import records
from ledgerstream.core.approvals import ApprovalInvalid, ApproverSet, verify_approvals
from ledgerstream.core.errors import ConfigError
from ledgerstream.core.mldsa import PrivateKey, public_key_pem, save_private_key

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKey]:
    return {name: PrivateKey.from_seed(bytes([i]) * 32) for i, name in enumerate(("alice", "bob", "carol"), 1)}


def sign(key: PrivateKey, approver: str, action: dict, decision: str = "approve", request_id: str = "req-1") -> dict:
    approved_at = 1_700_000_000_000_000
    msg = records.approval_message(request_id=request_id, approver_id=approver, decision=decision,
                                   approved_at=approved_at, event_id=action["event_id"],
                                   agent_id=action["agent_id"], action_type=action["action_type"],
                                   payload_hash=action["payload_hash"])
    return {"request_id": request_id, "approver_id": approver, "key_id": key.public_key().key_id,
            "decision": decision, "approved_at": approved_at, "signature": key.sign(msg)}


@pytest.fixture(scope="module")
def approved(keys) -> dict:
    action = {"event_id": "01a00000-0000-7000-8000-000000000001", "agent_id": "payments-bot",
              "action_type": "payments:transfer", "payload_hash": bytes(range(32)),
              "policy": {"decision": "approved", "rule": "payments:*", "reason": "2 of 3"}}
    action["approvals"] = [sign(keys["alice"], "alice", action), sign(keys["carol"], "carol", action)]
    return action


def public(keys) -> dict:
    return {name: key.public_key() for name, key in keys.items()}


def test_valid_two_of_three(approved, keys):
    verify_approvals(approved, public(keys), 2)
    with pytest.raises(ApprovalInvalid, match="2 valid approvals, 3 required"):
        verify_approvals(approved, public(keys), 3)


def mutations(action: dict, keys: dict) -> dict[str, dict]:
    out = {}
    for field, value in [("event_id", "01a00000-0000-7000-8000-000000000002"), ("agent_id", "other-bot"),
                         ("action_type", "payments:refund"), ("payload_hash", bytes(32))]:
        m = copy.deepcopy(action)
        m[field] = value
        out[f"event {field} changed"] = m
    m = copy.deepcopy(action)
    sig = bytearray(m["approvals"][0]["signature"])
    sig[100] ^= 1
    m["approvals"][0]["signature"] = bytes(sig)
    out["signature bit flipped"] = m
    m = copy.deepcopy(action)
    m["approvals"][0]["approved_at"] += 1
    out["signed time changed"] = m
    m = copy.deepcopy(action)
    m["approvals"][0]["approver_id"] = "mallory"
    out["unknown approver"] = m
    m = copy.deepcopy(action)
    m["approvals"][0]["key_id"] = keys["bob"].public_key().key_id
    out["key id of another approver"] = m
    m = copy.deepcopy(action)
    m["approvals"][1] = sign(keys["bob"], "carol", action)  # bob's key, claiming to be carol
    out["signed with someone else's key"] = m
    m = copy.deepcopy(action)
    m["approvals"][1] = copy.deepcopy(m["approvals"][0])
    out["duplicate approver"] = m
    m = copy.deepcopy(action)
    m["approvals"][1] = sign(keys["carol"], "carol", action, decision="reject")
    out["only one approve"] = m
    m = copy.deepcopy(action)
    m["approvals"][1] = sign(keys["carol"], "carol", action, request_id="req-2")
    out["two requests"] = m
    m = copy.deepcopy(action)
    m["policy"] = {"decision": "allow", "rule": None, "reason": None}
    out["approvals without an approval decision"] = m
    m = copy.deepcopy(action)
    m["approvals"][0]["decision"] = "maybe"
    out["unknown decision"] = m
    return out


MUTATIONS = ["event event_id changed", "event agent_id changed", "event action_type changed",
             "event payload_hash changed", "signature bit flipped", "signed time changed", "unknown approver",
             "key id of another approver", "signed with someone else's key", "duplicate approver",
             "only one approve", "two requests", "approvals without an approval decision", "unknown decision"]


def test_mutation_list_is_complete(approved, keys):
    assert sorted(mutations(approved, keys)) == sorted(MUTATIONS)


@pytest.mark.parametrize("name", MUTATIONS)
def test_every_mutation_fails(approved, keys, name):
    bad = mutations(approved, keys)[name]
    with pytest.raises(ApprovalInvalid) as info:
        verify_approvals(bad, public(keys), 2)
    assert info.value.kind == "approval_invalid"


def test_denied_and_timed_out_events_may_carry_fewer(approved, keys):
    for decision in ("approval_timeout", "approval_denied"):
        action = copy.deepcopy(approved)
        action["policy"]["decision"] = decision
        action["approvals"] = action["approvals"][:1]
        verify_approvals(action, public(keys), 2)


def test_approver_set_from_policy_section(tmp_path, keys):
    for name, key in keys.items():
        save_private_key(key, tmp_path / f"{name}.pem")
        (tmp_path / f"{name}.pem.pub").write_bytes(public_key_pem(key.public_key()))
    section = {"m": 2, "timeout": 30, "approvers": {n: f"{n}.pem.pub" for n in keys}}
    aset = ApproverSet.from_config(section, tmp_path)
    assert aset.m == 2 and aset.timeout == 30 and set(aset.approvers) == set(keys)
    assert aset.approvers["bob"].key_id == keys["bob"].public_key().key_id
    for bad in ({**section, "m": 4}, {**section, "m": 0}, {"m": 1, "approvers": {}},
                {"m": 1, "approvers": {"x": "missing.pub"}}):
        with pytest.raises(ConfigError):
            ApproverSet.from_config(bad, tmp_path)
