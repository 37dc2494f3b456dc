"""tests/vectors/records/verdicts_v1.json: what a verifier must find, from the spec's text.

The genuine ledger is first re-derived here without ledgerstream's hashing code (hashlib, the
``rfc8785`` package, ``openssl ts -verify``), then the core Checker must accept it and raise
exactly the expected findings for each failing stream (written by hand in
tests/vectors/gen_verdicts.py from docs/spec.md, never computed by the Checker)."""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from ledgerstream.core import mldsa
from ledgerstream.core.approvals import ApproverSet
from ledgerstream.core.timestamp import token_gen_time
from ledgerstream.core.verify import Checker, CheckerConfig

pytestmark = pytest.mark.unit
VEC = json.loads((Path(__file__).parents[1] / "vectors" / "records" / "verdicts_v1.json").read_text())
TAG_PAYLOAD = b"ledgerstream/v1/payload\x00"
TAG_ENTRY = b"ledgerstream/v1/entry\x00"
TAG_APPROVAL = b"ledgerstream/v1/approval\x00"


def config() -> CheckerConfig:
    signer = mldsa.PrivateKey.from_seed(bytes.fromhex(VEC["signer"]["seed"])).public_key()
    approvers = {name: mldsa.PrivateKey.from_seed(bytes.fromhex(seed)).public_key()
                 for name, seed in VEC["approvers"]["seeds"].items()}
    c = VEC["config"]
    return CheckerConfig(trusted_keys={signer.key_id: signer}, tsa_ca=VEC["tsa_ca_pem"].encode(),
                         approvers=ApproverSet(approvers, VEC["approvers"]["m"]),
                         link_grace_entries=c["link_grace_entries"], link_grace_seconds=c["link_grace_seconds"])


def spec_view(e: dict[str, Any]) -> dict[str, Any]:
    """docs/spec.md section 3's V, from the hex-rendered entry (byte strings already hex)."""
    a = e["action"]
    return {"v": e["spec_version"], "seq": e["seq"], "prev_hash": e["prev_hash"], "received_at": e["received_at"],
            "source": e["source"], "agent_seq": e["agent_seq"], "agent_prev_hash": e["agent_prev_hash"],
            "resolved_links": e["resolved_links"], "key_id": e["key_id"],
            "action": {k: a[k] for k in ("event_id", "agent_id", "session_id", "action_type", "payload_hash",
                                         "occurred_at", "links", "policy", "approvals", "trace", "producer",
                                         "offline")}}


@pytest.mark.parametrize("item", VEC["ledger"], ids=lambda i: f"seq{i['seq']}")
def test_each_genuine_entry_rederived_from_the_spec(item: dict[str, Any], tmp_path: Path) -> None:
    e = item["entry"]
    a = e["action"]
    commitment = hashlib.sha256(TAG_PAYLOAD + bytes.fromhex(a["payload_salt"]) + bytes.fromhex(a["payload"])).hexdigest()
    assert commitment == a["payload_hash"]
    assert hashlib.sha256(TAG_ENTRY + rfc8785.dumps(spec_view(e))).hexdigest() == item["entry_hash"] == e["entry_hash"]
    for approval in a["approvals"]:
        message = TAG_APPROVAL + rfc8785.dumps({
            "request_id": approval["request_id"], "approver_id": approval["approver_id"],
            "decision": approval["decision"], "approved_at": approval["approved_at"], "event_id": a["event_id"],
            "agent_id": a["agent_id"], "action_type": a["action_type"], "payload_hash": a["payload_hash"]})
        key = mldsa.PrivateKey.from_seed(bytes.fromhex(VEC["approvers"]["seeds"][approval["approver_id"]])).public_key()
        key.verify(bytes.fromhex(approval["signature"]), message)
    if e["timestamp_token"] is not None:  # openssl checks the token over the 32 entry-hash bytes
        token, data, ca = tmp_path / "t.tsr", tmp_path / "h.bin", tmp_path / "ca.pem"
        token.write_bytes(bytes.fromhex(e["timestamp_token"]))
        data.write_bytes(bytes.fromhex(e["entry_hash"]))
        ca.write_text(VEC["tsa_ca_pem"])
        at = int(token_gen_time(token.read_bytes()).timestamp())
        proc = subprocess.run(["openssl", "ts", "-verify", "-in", str(token), "-data", str(data), "-CAfile", str(ca),
                               "-attime", str(at)], capture_output=True, text=True)
        assert proc.returncode == 0 and "Verification: OK" in proc.stdout, proc.stderr


def test_the_float_payload_is_rfc8785():
    floats = VEC["float_payload"]
    value = {k: float(v) for k, v in floats["value_repr"].items()}
    assert rfc8785.dumps(value).decode() == floats["jcs"]
    assert floats["jcs"] == ('{"big":1e+21,"negative_zero":0,"small":1e-7,"tenth":0.1,'
                             '"third":0.3333333333333333,"two":2}')  # RFC 8785 section 3.2.2.3 / ECMAScript


def _records(stream: list[str]) -> list[tuple[int, bytes]]:
    genuine = {f"g{i['seq']}": bytes.fromhex(i["avro_single_object"]) for i in VEC["ledger"]}
    return [(offset, genuine[s] if s in genuine else bytes.fromhex(s)) for offset, s in enumerate(stream)]


def _kinds(stream: list[str], checkpoint: bytes | None = None) -> list[str]:
    checker = Checker(config())
    found = checker.feed_entries(_records(stream))
    if checkpoint is not None:
        found += checker.feed_checkpoints([(0, checkpoint)])
    return [f.kind.value for f in found + checker.finish()]


def test_the_genuine_ledger_and_its_checkpoint_raise_nothing() -> None:
    stream = [f"g{i['seq']}" for i in VEC["ledger"]]
    assert _kinds(stream, bytes.fromhex(VEC["checkpoint"]["avro_single_object"])) == []


@pytest.mark.parametrize("case", VEC["failing"], ids=lambda c: c["desc"])
def test_each_failing_stream_raises_exactly_the_spec_findings(case: dict[str, Any]) -> None:
    assert _kinds(case["stream"]) == case["expected"], case["why"]
