"""m-of-n approvals over the real broker with real ML-DSA-65 keys.

2 of 3 approvers sign (one through the ``ledgerstream approve`` CLI): the action runs, and
the ledger holds the approved request with verifiable approvals plus the outcome. Nobody
answers: ApprovalTimeout, the function never runs, the attempt is recorded.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from ledgerstream.core.wire import codec
from ledgerstream.core.approvals import ApproverSet, verify_approvals
from ledgerstream.core.mldsa import PrivateKey, public_key_pem, save_private_key
from ledgerstream.producers.approvals import read_requests, respond
from ledgerstream.producers.errors import ApprovalTimeout, PolicyDenied
from ledgerstream.producers.ledger import connect
from ledgerstream.producers.topic_reader import read_all

pytestmark = pytest.mark.integration

APPROVERS = ("alice", "bob", "carol")


@pytest.fixture()
def policy_file(tmp_path):
    keys = {}
    for name in APPROVERS + ("mallory",):
        keys[name] = PrivateKey.generate()
        save_private_key(keys[name], tmp_path / f"{name}.pem")
        (tmp_path / f"{name}.pem.pub").write_bytes(public_key_pem(keys[name].public_key()))
    policy = {"rules": [{"match": "payments:*", "decision": "require_approval", "reason": "money moves"}],
              "approvals": {"m": 2, "timeout": 30, "approvers": {n: f"{n}.pem.pub" for n in APPROVERS}}}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    return path, keys


def wait_for_request(bootstrap: str, topic: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = read_requests(bootstrap, topic)
        if found:
            (req,) = found.values()
            return req
        time.sleep(0.2)
    raise AssertionError("no approval request appeared")


def actions(bootstrap: str, topic: str) -> list[dict]:
    return [codec.decode(m.value(), expect="ActionEvent")[1] for m in read_all(bootstrap, topic)]


def test_two_of_three_approve_then_action_runs(bootstrap, topics, tmp_path, ls_home, policy_file):
    path, keys = policy_file
    led = connect("payments-bot", bootstrap, topics=topics, spool_dir=tmp_path / "spool", policy=str(path))
    ran, outcome = [], {}

    @led.action("payments:transfer")
    def transfer(amount: int, to: str) -> str:
        ran.append(amount)
        return "tx-1"

    worker = threading.Thread(target=lambda: outcome.setdefault("result", transfer(250, to="ACME")))
    worker.start()
    req = wait_for_request(bootstrap, topics.approvals)
    assert json.loads(req["payload"]) == {"args": {"amount": 250, "to": "ACME"}}
    assert ran == [], "nothing runs before approval"

    env = {**os.environ, "LEDGERSTREAM_TOPIC_PREFIX": topics.actions[:-len("actions")],
           "LEDGERSTREAM_HOME": str(ls_home), "LEDGERSTREAM_BOOTSTRAP": bootstrap}
    listed = subprocess.run([sys.executable, "-m", "ledgerstream.cli.main", "approvals", "list", "--json"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    (pending,) = json.loads(listed.stdout)
    assert pending["request_id"] == req["request_id"] and pending["required"] == 2 and pending["pending"]

    respond(bootstrap, topics.approvals, req["request_id"], keys["mallory"], "mallory")  # unknown: ignored
    respond(bootstrap, topics.approvals, req["request_id"], keys["mallory"], "bob")  # wrong key: ignored
    respond(bootstrap, topics.approvals, req["request_id"], keys["alice"], "alice")
    time.sleep(1.0)
    assert ran == [], "one valid approval (plus two bogus ones) is not enough"
    cli = subprocess.run([sys.executable, "-m", "ledgerstream.cli.main", "approve", req["request_id"],
                          "--key", str(tmp_path / "carol.pem"), "--json"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["approver_id"] == "carol"
    worker.join(30)
    assert outcome["result"] == "tx-1" and ran == [250]
    assert led.flush(30) == 0
    led.close()

    approved, done = actions(bootstrap, topics.actions)
    assert approved["event_id"] == req["event_id"] and approved["payload_hash"] == req["payload_hash"]
    assert approved["policy"]["decision"] == "approved" and approved["policy"]["rule"] == "payments:*"
    assert sorted(a["approver_id"] for a in approved["approvals"]) == ["alice", "carol"]
    aset = ApproverSet.from_config(json.loads(path.read_text())["approvals"], path.parent)
    verify_approvals(approved, aset.approvers, aset.m)
    assert done["links"] == [{"agent_id": "payments-bot", "event_id": approved["event_id"],
                              "relation": "approved_by"}]
    assert json.loads(done["payload"])["result"] == "tx-1" and done["approvals"] == []


def test_no_answer_times_out_and_is_recorded(bootstrap, topics, tmp_path, ls_home, policy_file):
    path, _keys = policy_file
    led = connect("payments-bot", bootstrap, topics=topics, spool_dir=tmp_path / "spool", policy=str(path),
                  approval_timeout=2.0)
    ran = []

    @led.action("payments:refund")
    def refund(amount: int) -> None:
        ran.append(amount)

    t0 = time.monotonic()
    with pytest.raises(ApprovalTimeout) as info:
        refund(99)
    assert 2.0 <= time.monotonic() - t0 < 15
    assert isinstance(info.value, PolicyDenied) and ran == []
    assert led.flush(30) == 0
    led.close()
    (rec,) = actions(bootstrap, topics.actions)
    assert rec["event_id"] == info.value.event_id
    assert rec["policy"]["decision"] == "approval_timeout" and rec["approvals"] == []
    assert json.loads(rec["payload"]) == {"args": {"amount": 99}}
