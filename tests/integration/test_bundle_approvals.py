"""Bundles carry the approver keys that approved entries need offline (issue 17 item 5).

A real signer sequences an action approved 2 of 3 (approvals signed here with ML-DSA-65
keys, as approvers sign them: records.approval_message) and some noise; ``export bundle``
with the policy bundles ``approvers.json`` and the keys; ``verify-bundle`` checks the
approvals with the core's rule, and fails them under other pinned approvers, without the
approver set, or when a forged approval is slipped in behind a rewritten manifest.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from conftest import SignerProcess
from ledgerstream.cli.main import cli
from ledgerstream.core import mldsa, records
from ledgerstream.core.wire import codec
from ledgerstream.core.config import Topics
from ledgerstream.core.errors import ConfigError
from ledgerstream.tools import bundle_format as bf
from support.actions import make_action

pytestmark = pytest.mark.integration

APPROVERS = {name: mldsa.PrivateKey.from_seed(bytes([i]) * 32) for i, name in enumerate(("alice", "bob", "carol"), 1)}
OTHERS = {name: mldsa.PrivateKey.from_seed(bytes([i + 9]) * 32) for i, name in enumerate(("alice", "bob", "carol"), 1)}


def approval(key: mldsa.PrivateKey, approver: str, action: dict[str, Any]) -> dict[str, Any]:
    approved_at = time.time_ns() // 1000
    message = records.approval_message(request_id="req-1", approver_id=approver, decision="approve",
                                       approved_at=approved_at, event_id=action["event_id"],
                                       agent_id=action["agent_id"], action_type=action["action_type"],
                                       payload_hash=action["payload_hash"])
    return {"request_id": "req-1", "approver_id": approver, "key_id": key.public_key().key_id,
            "decision": "approve", "approved_at": approved_at, "signature": key.sign(message)}


def policy_file(folder: Path, keys: dict[str, mldsa.PrivateKey]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, key in keys.items():
        (folder / f"{name}.pub.pem").write_bytes(mldsa.public_key_pem(key.public_key()))
    path = folder / "policy.json"
    path.write_text(json.dumps({"rules": [{"match": "payments:*", "decision": "require_approval"}],
                                "approvals": {"m": 2, "approvers": {n: f"{n}.pub.pem" for n in keys}}}))
    return path


@pytest.fixture(scope="module")
def ledger(bootstrap: str, dev_tsa, signer_key_path: Path, tmp_path_factory) -> dict[str, Any]:
    from ledgerstream.stack.topics import ensure_topics

    work = tmp_path_factory.mktemp("approvals")
    topics = Topics.with_prefix(f"a{uuid.uuid4().hex[:10]}.")
    ensure_topics(bootstrap, topics)
    pub = work / "signer.pub.pem"
    pub.write_bytes(mldsa.public_key_pem(mldsa.load_private_key(signer_key_path).public_key()))
    transfer = make_action("payments-bot", "payments:transfer", {"to": "acme", "eur": 120})
    transfer["policy"] = {"decision": "approved", "rule": "payments:*", "reason": "2 of 3 approvers"}
    transfer["approvals"] = [approval(APPROVERS["alice"], "alice", transfer), approval(APPROVERS["carol"], "carol", transfer)]
    actions = [make_action("noise", "tool:ping", {"i": 0}), transfer, make_action("noise", "tool:ping", {"i": 1}),
               make_action("noise", "tool:ping", {"i": 2})]
    signer = SignerProcess(bootstrap, topics, signer_key_path, work, "--checkpoint-every", "4",
                           "--checkpoint-ms", "600000", "--no-leader-election", tsa_url=dev_tsa.url)
    try:
        signer.wait_role("leader")
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        for action in actions:
            producer.produce(topics.actions, codec.encode("ActionEvent", action), key=action["agent_id"].encode())
        assert producer.flush(30) == 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = signer.status()
            if st.get("checkpoint_size") == 4 and st.get("unanchored_checkpoints") == 0 and st.get("anchors", 0) >= 1:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no anchored checkpoint: {signer.status()}\n{signer.log()}")
    finally:
        signer.stop()
    home = work / "home"
    home.mkdir()
    return {"bootstrap": bootstrap, "prefix": topics.actions[: -len("actions")], "pub": pub,
            "ca": dev_tsa.files.ca_cert, "home": home, "work": work,
            "policy": policy_file(work / "policy", APPROVERS), "other_policy": policy_file(work / "other", OTHERS)}


def run(ledger: dict[str, Any], *args: str) -> Any:
    return CliRunner().invoke(cli, [*args, "--bootstrap", ledger["bootstrap"], "--topic-prefix", ledger["prefix"],
                                    "--home", str(ledger["home"]), "--trusted-key", str(ledger["pub"]),
                                    "--tsa-ca", str(ledger["ca"])], catch_exceptions=False)


def verify(ledger: dict[str, Any], bundle: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["verify-bundle", str(bundle), "--json", "--trusted-key", str(ledger["pub"]),
                                      "--tsa-ca", str(ledger["ca"]), *extra])
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture(scope="module")
def bundle(ledger: dict[str, Any]) -> Path:
    out = ledger["work"] / "approved.zip"
    result = run(ledger, "export", "bundle", "--out", str(out), "--policy", str(ledger["policy"]), "--json")
    assert result.exit_code == 0, result.output
    return out


def members_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def rezip_remanifested(members: dict[str, bytes], to: Path) -> Path:
    """The members behind a manifest rewritten to match them (what a forger does first)."""
    manifest = json.loads(members[bf.MANIFEST])
    manifest["members"] = {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
                           for n, d in sorted(members.items()) if n != bf.MANIFEST}
    members = {**members, bf.MANIFEST: bf.canonical(manifest)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    to.write_bytes(buf.getvalue())
    return to


def test_the_bundle_carries_the_approvers_and_the_approvals_verify(ledger, bundle):
    members = members_of(bundle)
    listed = json.loads(members[bf.APPROVERS])
    assert listed == {"m": 2, "approvers": {n: k.public_key().key_id for n, k in APPROVERS.items()}}
    for key in APPROVERS.values():
        assert members[bf.approver_key_name(key.public_key().key_id)] == mldsa.public_key_pem(key.public_key())
    code, doc = verify(ledger, bundle)
    assert code == 0 and doc["ok"], doc["errors"]
    assert doc["checks"]["approvals"] == {"passed": 1, "failed": 0}
    assert doc["approvers"] == {"source": "bundle", "m": 2, "approvers": listed["approvers"]}
    code, doc = verify(ledger, bundle, "--policy", str(ledger["policy"]))  # pinned, the same approvers
    assert code == 0 and doc["approvers"]["source"] == "pinned"


def test_other_pinned_approvers_fail_the_approvals(ledger, bundle):
    code, doc = verify(ledger, bundle, "--policy", str(ledger["other_policy"]))
    assert code == 1 and [e["check"] for e in doc["errors"]] == ["approvals"], doc["errors"]
    assert "names key" in doc["errors"][0]["detail"]


def test_without_the_approver_set_the_approvals_cannot_pass(ledger, bundle, tmp_path):
    stripped = {n: d for n, d in members_of(bundle).items() if n != bf.APPROVERS and not n.startswith("approvers/")}
    code, doc = verify(ledger, rezip_remanifested(stripped, tmp_path / "stripped.zip"))
    assert code == 1 and [e["check"] for e in doc["errors"]] == ["approvals"]
    assert "no approver set" in doc["errors"][0]["detail"]


def test_a_swapped_approver_key_is_caught(ledger, bundle, tmp_path):
    """A forger replaces carol's key with one of their own behind a rewritten manifest: the
    bundled approvals, signed by the real carol, no longer verify."""
    members = members_of(bundle)
    forged = OTHERS["carol"].public_key()
    listed = json.loads(members[bf.APPROVERS])
    del members[bf.approver_key_name(listed["approvers"]["carol"])]
    listed["approvers"]["carol"] = forged.key_id
    members[bf.APPROVERS] = bf.canonical(listed)
    members[bf.approver_key_name(forged.key_id)] = mldsa.public_key_pem(forged)
    code, doc = verify(ledger, rezip_remanifested(members, tmp_path / "swapped.zip"))
    assert code == 1 and [e["check"] for e in doc["errors"]] == ["approvals"], doc["errors"]


def test_export_without_a_policy_refuses_and_says_why(ledger, tmp_path):
    with pytest.raises(ConfigError, match="carry approvals, and a bundle must carry the approver keys"):  # exit 2
        run(ledger, "export", "bundle", "--out", str(tmp_path / "no.zip"), "--agent", "payments-bot")
    assert not (tmp_path / "no.zip").exists()
    result = run(ledger, "export", "bundle", "--out", str(tmp_path / "noise.zip"), "--agent", "noise", "--json")
    assert result.exit_code == 0, result.output  # no approvals selected: no approver set needed
    assert bf.APPROVERS not in members_of(tmp_path / "noise.zip")
