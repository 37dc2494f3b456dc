"""Evidence bundles and replay on a real ledger written by the real signer (with the dev TSA).

One ledger per module (12 entries by 4 agents, checkpoints at 4, 8 and 12, all anchored)
keeps the suite fast; the test that forges a record on the topic runs last.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
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
from ledgerstream.core import mldsa
from ledgerstream.core.wire import codec
from ledgerstream.core.config import Topics
from ledgerstream.tools import bundle_format as bf
from ledgerstream.tools.bundle_verify import verify_bundle
from support.actions import make_action
from support.minimal_bundle_verifier import verify as minimal_verify

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, actions: list[dict[str, Any]], signer: SignerProcess, size: int) -> None:
    """One at a time, each sequenced before the next is sent: the agents' keys put them on
    different partitions, whose records the signer may take in any order, and the tests
    name entries by seq (links then also resolve in order)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for action in actions:
        producer.produce(topic, codec.encode("ActionEvent", action), key=action["agent_id"].encode())
        producer.flush(30)
        size += 1
        deadline = time.monotonic() + 60
        while signer.status().get("next_seq", 0) < size and time.monotonic() < deadline:
            time.sleep(0.05)


def _wait_anchored(signer: SignerProcess, size: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = signer.status()
        if st.get("next_seq") == size and st.get("checkpoint_size") == size and st.get("unanchored_checkpoints") == 0 \
                and st.get("anchors", 0) >= 1:
            return
        time.sleep(0.2)
    raise AssertionError(f"ledger never reached an anchored checkpoint at {size}: {signer.status()}\n{signer.log()}")


@pytest.fixture(scope="module")
def ledger(bootstrap: str, dev_tsa, signer_key_path: Path, tmp_path_factory) -> dict[str, Any]:
    from ledgerstream.stack.topics import ensure_topics

    work = tmp_path_factory.mktemp("bundle")
    topics = Topics.with_prefix(f"b{uuid.uuid4().hex[:10]}.")
    ensure_topics(bootstrap, topics)
    pub = work / "signer.pub.pem"
    pub.write_bytes(mldsa.public_key_pem(mldsa.load_private_key(signer_key_path).public_key()))
    prefix = topics.actions[: -len("actions")]
    signer = SignerProcess(bootstrap, topics, signer_key_path, work, "--checkpoint-every", "4",
                           "--checkpoint-ms", "600000", "--no-leader-election", tsa_url=dev_tsa.url)
    try:
        signer.wait_role("leader")
        plan = make_action("planner", "llm:plan", {"goal": "clean up"}, session_id="s1")
        search = make_action("researcher", "tool:search", {"q": "stale users"}, session_id="s1",
                             links=[{"agent_id": "planner", "event_id": plan["event_id"], "relation": "caused_by"}])
        write = make_action("writer", "data:write:report", {"rows": 3}, session_id="s1",
                            links=[{"agent_id": "researcher", "event_id": search["event_id"], "relation": "caused_by"}])
        delete = make_action("writer", "data:delete:users", {"ids": [1, 2, 3]}, session_id="s2")
        noise = [make_action("noise", "tool:ping", {"i": i}) for i in range(8)]
        batches = [[plan, search, *noise[0:2]], [write, delete, *noise[2:4]], noise[4:8]]
        size = 0
        for batch in batches:
            _produce(bootstrap, topics.actions, batch, signer, size)
            size += len(batch)
            _wait_anchored(signer, size)
    finally:
        signer.stop()
    home = work / "home"  # empty: trust only what the tests pass explicitly
    home.mkdir()
    actions = [plan, search, noise[0], noise[1], write, delete, *noise[2:]]
    return {"bootstrap": bootstrap, "topics": topics, "prefix": prefix, "pub": pub, "ca": dev_tsa.files.ca_cert,
            "home": home, "work": work, "actions": actions,
            "ids": {"plan": plan["event_id"], "search": search["event_id"], "write": write["event_id"],
                    "delete": delete["event_id"]}}


def run(ledger: dict[str, Any], *args: str) -> Any:
    common = ["--bootstrap", ledger["bootstrap"], "--topic-prefix", ledger["prefix"], "--home", str(ledger["home"]),
              "--trusted-key", str(ledger["pub"]), "--tsa-ca", str(ledger["ca"])]
    result = CliRunner().invoke(cli, [*args, *common], catch_exceptions=False)
    return result


def export(ledger: dict[str, Any], name: str, *extra: str) -> Path:
    out = ledger["work"] / name
    result = run(ledger, "export", "bundle", "--out", str(out), "--json", *extra)
    assert result.exit_code == 0, result.output
    return out


def verify(path_or_bytes: Path | bytes, ledger: dict[str, Any]) -> dict[str, Any]:
    report = verify_bundle(path_or_bytes, trusted_keys=[ledger["pub"].read_bytes()],
                           tsa_ca_pem=ledger["ca"].read_bytes())
    return report.to_json()


def members_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def rezip(members: dict[str, bytes], *, remanifest: bool = False) -> bytes:
    members = dict(members)
    if remanifest:
        listed = {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
                  for n, d in sorted(members.items()) if n != bf.MANIFEST}
        manifest = json.loads(members[bf.MANIFEST])
        manifest["members"] = listed
        members[bf.MANIFEST] = bf.canonical(manifest)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


@pytest.fixture(scope="module")
def bundle(ledger: dict[str, Any]) -> Path:
    return export(ledger, "all.zip")


# --- round trip -----------------------------------------------------------------------------------

def test_export_then_verify_bundle(ledger, bundle):
    result = CliRunner().invoke(cli, ["verify-bundle", str(bundle), "--json", "--trusted-key", str(ledger["pub"]),
                                      "--tsa-ca", str(ledger["ca"])])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["entries"] == 12 and doc["errors"] == []
    checks = {k: v["passed"] for k, v in doc["checks"].items()}
    assert checks["entry_hash"] == checks["signature"] == checks["inclusion"] == checks["payload"] == 12
    assert checks["consistency"] == 2 and checks["checkpoint"] == 3 and checks["timestamp"] >= 3
    assert checks["chain"] >= 11 and all(v["failed"] == 0 for v in doc["checks"].values())
    assert doc["checkpoint"]["tree_size"] == 12 and doc["keys"][0]["source"] == "pinned"


def test_bundle_layout(ledger, bundle):
    names = set(members_of(bundle))
    key_id = mldsa.load_public_key(ledger["pub"].read_bytes()).key_id
    assert {"manifest.json", "README.md", "selection.json", "tsa-ca.pem", "checkpoint", "checkpoint.sig",
            "checkpoint.avro", "checkpoint.json", "checkpoint.tsr", f"keys/{key_id}.pem",
            "proofs/consistency/4-12.json", "proofs/consistency/8-12.json", "checkpoints/4/checkpoint.tsr",
            "checkpoints/8/checkpoint.avro"} <= names
    assert {f"entries/{i}.avro" for i in range(12)} | {f"proofs/inclusion/{i}.json" for i in range(12)} <= names
    assert {n.split(".")[0] for n in names if n.startswith("schemas/")} == {
        "schemas/LedgerEntry", "schemas/Checkpoint"}  # self-contained: ActionEvent is inlined
    assert zipfile.ZipFile(bundle).namelist()[0] == "manifest.json"


def test_default_trust_is_the_bundle_and_is_reported(ledger, bundle):
    doc = verify_bundle(bundle).to_json()
    assert doc["ok"] and doc["keys"][0]["source"] == "bundle" and doc["tsa_ca"]["source"] == "bundle"
    assert doc["signer_key_pinned"] is False
    result = CliRunner().invoke(cli, ["verify-bundle", str(bundle)])
    assert result.exit_code == 0 and "signer key: NOT PINNED" in result.output
    result = CliRunner().invoke(cli, ["verify-bundle", str(bundle), "--require-pinned", "--json"])
    assert result.exit_code == 1
    assert [e["check"] for e in json.loads(result.output)["errors"]] == ["key"]
    result = CliRunner().invoke(cli, ["verify-bundle", str(bundle), "--require-pinned", "--trusted-key",
                                      str(ledger["pub"])])
    assert result.exit_code == 0 and "signer key: PINNED" in result.output
    assert verify_bundle(bundle, trusted_keys=[ledger["pub"].read_bytes()]).to_json()["signer_key_pinned"] is True


def test_a_tampered_selection_json_fails_even_behind_a_rewritten_manifest(ledger, bundle):
    members = members_of(bundle)
    selection = json.loads(members[bf.SELECTION])
    selection["entries"] = selection["entries"][:-1]
    members[bf.SELECTION] = bf.canonical(selection)
    doc = verify(rezip(members, remanifest=True), ledger)
    assert not doc["ok"] and {e["check"] for e in doc["errors"]} == {"selection"}


def test_pinning_another_key_or_ca_fails(ledger, bundle, dev_tsa, tmp_path):
    other = tmp_path / "other.pub.pem"
    other.write_bytes(mldsa.public_key_pem(mldsa.PrivateKey.generate().public_key()))
    doc = verify_bundle(bundle, trusted_keys=[other.read_bytes()]).to_json()
    assert not doc["ok"] and {e["check"] for e in doc["errors"]} == {"key"}
    from ledgerstream.stack.devtsa import ensure_ca

    other_ca = ensure_ca(tmp_path / "tsa2").ca_cert  # another DEV CA
    doc = verify_bundle(bundle, tsa_ca_pem=other_ca.read_bytes()).to_json()
    assert not doc["ok"] and {e["check"] for e in doc["errors"]} == {"timestamp"}


def test_same_selection_gives_the_same_entries_and_proofs(ledger, bundle):
    again = members_of(export(ledger, "again.zip"))
    first = members_of(bundle)
    assert {n: d for n, d in first.items() if n not in (bf.SELECTION, bf.MANIFEST)} == \
           {n: d for n, d in again.items() if n not in (bf.SELECTION, bf.MANIFEST)}


# --- tampering ---------------------------------------------------------------------------------------

def test_every_member_flipped_fails_and_names_it(ledger, bundle):
    members = members_of(bundle)
    for name, data in members.items():
        for at in sorted({0, len(data) // 2, len(data) - 1}):
            doc = verify(rezip({**members, name: flip(data, at)}), ledger)
            assert not doc["ok"], (name, at)
            if name == bf.MANIFEST:  # a flipped digest names the member whose entry no longer matches
                assert doc["errors"][0]["check"] == "manifest", (at, doc["errors"][:3])
            else:
                assert any(e["member"] == name for e in doc["errors"]), (name, at, doc["errors"][:3])


#: what must still catch a flipped byte when the attacker also rewrites the manifest
EXPECTED = [
    (r"^entries/\d+\.avro$", {"decode", "entry_hash", "signature", "payload", "render"}),
    (r"^entries/\d+\.json$", {"render"}),
    (r"^proofs/inclusion/\d+\.json$", {"inclusion"}),
    (r"^proofs/consistency/.*\.json$", {"consistency"}),
    (r"^(checkpoints/\d+/)?checkpoint$", {"checkpoint", "timestamp"}),
    (r"^(checkpoints/\d+/)?checkpoint\.sig$", {"checkpoint"}),
    (r"^(checkpoints/\d+/)?checkpoint\.avro$", {"decode", "checkpoint", "render", "key"}),
    (r"^(checkpoints/\d+/)?checkpoint\.json$", {"render"}),
    (r"^(checkpoints/\d+/)?checkpoint(\.\d+)?\.tsr$", {"timestamp"}),
    (r"^keys/", {"key"}),
    (r"^schemas/", {"schema", "decode"}),
    (r"^tsa-ca\.pem$", {"timestamp"}),
]
INFORMATIONAL = {bf.README, bf.SELECTION}  # bound by the manifest digest only (docs/bundle-format.md)


def test_flips_behind_a_rewritten_manifest_are_caught_by_the_crypto(ledger, bundle):
    members = members_of(bundle)
    for name, data in members.items():
        if name in INFORMATIONAL or name == bf.MANIFEST:
            continue
        allowed = next(checks for rx, checks in EXPECTED if re.match(rx, name))
        for at in sorted({1, len(data) // 2, len(data) - 2}):
            blob = rezip({**members, name: flip(data, at)}, remanifest=True)
            # a pinned CA replaces the bundled one by design: check the bundled one unpinned
            doc = verify_bundle(blob).to_json() if name == bf.TSA_CA else verify(blob, ledger)
            assert not doc["ok"], (name, at)
            got = {e["check"] for e in doc["errors"]}
            assert got & allowed, (name, at, doc["errors"][:3])


def test_manifest_bytes_and_membership(ledger, bundle):
    members = members_of(bundle)
    manifest = members[bf.MANIFEST]
    for at in range(0, len(manifest), max(1, len(manifest) // 97)):
        doc = verify(rezip({**members, bf.MANIFEST: flip(manifest, at)}), ledger)
        assert not doc["ok"] and doc["errors"][0]["check"] == "manifest", at
    doc = verify(rezip({**members, "entries/evil.sh": b"rm -rf /"}), ledger)
    assert not doc["ok"] and doc["errors"] == [{"check": "manifest", "member": "entries/evil.sh",
                                                "detail": "member is not listed in the manifest (added)"}]
    doc = verify(rezip({**members, "notes.txt": b"hi"}, remanifest=True), ledger)
    assert not doc["ok"] and doc["errors"][0]["check"] == "structure"
    for gone in ("proofs/inclusion/3.json", "checkpoint.tsr", "entries/5.json", bf.README, "checkpoints/4/checkpoint.sig",
                 "proofs/consistency/4-12.json"):
        rest = {n: d for n, d in members.items() if n != gone}
        doc = verify(rezip(rest), ledger)
        assert not doc["ok"] and any(e["member"] == gone for e in doc["errors"]), gone
        doc = verify(rezip(rest, remanifest=True), ledger)
        assert not doc["ok"], f"removing {gone} behind a rewritten manifest must still fail"
    doc = verify(b"not a zip", ledger)
    assert not doc["ok"] and doc["errors"][0]["check"] == "zip"


def test_bytes_outside_the_members_fail(ledger, bundle):
    blob = bundle.read_bytes()
    for tampered in (blob + b"\x00", b"\x00" + blob, blob[:-2] + b"\x01\x00X"):
        doc = verify(tampered, ledger)
        assert not doc["ok"] and doc["errors"][0]["check"] == "zip", doc["errors"][:2]


# --- redaction, independent verification, by hand -----------------------------------------------------

def test_redacted_bundle_verifies_without_any_payload_bytes(ledger):
    path = export(ledger, "redacted.zip", "--redact-payloads")
    doc = verify(path, ledger)
    assert doc["ok"], doc["errors"]
    assert doc["checks"]["payload"]["passed"] == 0 and doc["checks"]["signature"]["passed"] == 12
    blob = b"".join(members_of(path).values())
    for action in ledger["actions"]:
        assert action["payload"] not in blob and action["payload_salt"] not in blob
        assert action["payload_salt"].hex().encode() not in blob
    entry = json.loads(members_of(path)["entries/0.json"])
    assert entry["entry"]["action"]["payload"] is None and entry["payload"] is None
    action = next(a for a in ledger["actions"] if a["event_id"] == entry["entry"]["action"]["event_id"])
    assert entry["entry"]["action"]["payload_hash"] == action["payload_hash"].hex()
    assert minimal_verify(path) == []


def test_independent_minimal_verifier_accepts_the_bundle_and_rejects_tampering(ledger, bundle):
    assert minimal_verify(bundle) == []
    members = members_of(bundle)
    for name in ("entries/2.avro", "proofs/inclusion/7.json", "checkpoint", "checkpoint.tsr", "checkpoint.sig",
                 "proofs/consistency/4-12.json"):
        tampered = ledger["work"] / "tampered.zip"
        tampered.write_bytes(rezip({**members, name: flip(members[name], len(members[name]) // 2)}, remanifest=True))
        assert minimal_verify(tampered), name


def test_readme_python_snippets_and_openssl_by_hand(bundle, tmp_path):
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(tmp_path)
    readme = (tmp_path / "README.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(snippets) == 2
    for code in snippets:
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "OK" in done.stdout
    done = subprocess.run(["openssl", "ts", "-verify", "-data", "checkpoint", "-in", "checkpoint.tsr",
                           "-CAfile", "tsa-ca.pem"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and "Verification: OK" in done.stdout, done.stdout + done.stderr


# --- replay on the real ledger ---------------------------------------------------------------------

def replay_json(ledger: dict[str, Any], *args: str) -> tuple[int, dict[str, Any]]:
    result = run(ledger, "replay", "--json", *args)
    return result.exit_code, json.loads(result.stdout)


def test_replay_filters_and_marks(ledger):
    code, doc = replay_json(ledger, "--agent", "writer")
    assert code == 0 and doc["ok"]
    assert [e["action_type"] for e in doc["entries"]] == ["data:write:report", "data:delete:users"]
    for e in doc["entries"]:
        assert {k: v["status"] for k, v in e["checks"].items()} == {
            "entry_hash": "ok", "signature": "ok", "payload": "ok", "chain": "ok", "agent_chain": "ok",
            "links": "ok", "inclusion": "ok", "timestamp": "ok"}
        assert e["anchored_at"] and e["checkpoint"] == 12
    _, doc = replay_json(ledger, "--action-type", "tool:*", "--seq", "0..3")  # the first batch, less the plan
    assert len(doc["entries"]) == 3 and {e["seq"] for e in doc["entries"]} < {0, 1, 2, 3}
    assert {e["action_type"] for e in doc["entries"]} == {"tool:search", "tool:ping"}


def test_replay_follow_links_across_three_agents(ledger):
    code, doc = replay_json(ledger, "--agent", "researcher", "--follow-links")
    assert code == 0
    ids = ledger["ids"]
    assert {e["event_id"]: e["selected_by"] for e in doc["entries"]} == {
        ids["plan"]: "link", ids["search"]: "filter", ids["write"]: "link"}
    result = run(ledger, "replay", "--agent", "researcher", "--follow-links")
    assert result.exit_code == 0 and "causal closure" in result.output and "all verified" in result.output


def test_replay_jsonl(ledger):
    result = run(ledger, "replay", "--jsonl", "--session", "s1")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["type"] for line in lines] == ["entry"] * 3 + ["summary"]
    assert lines[-1]["summary"] == {"shown": 3, "failed": 0, "unpublished": 0}


def test_zz_forged_record_fails_replay_and_export(ledger):
    """Runs last: appends a forged copy of the writer's delete, rewritten, to the entries topic."""
    from ledgerstream.core.topic_reader import read_partition

    entries = [codec.decode(value)[1] for _, value in read_partition(ledger["bootstrap"], ledger["topics"].entries)]
    forged = next(e for e in entries if e["action"]["event_id"] == ledger["ids"]["delete"])
    forged["action"]["action_type"] = "data:read:users"
    producer = Producer({"bootstrap.servers": ledger["bootstrap"]})
    producer.produce(ledger["topics"].entries, codec.encode("LedgerEntry", forged))
    producer.flush(30)
    code, doc = replay_json(ledger, "--agent", "writer")
    assert code == 1 and not doc["ok"]
    shown = doc["entries"][-1]
    assert shown["action_type"] == "data:read:users" and not shown["ok"]
    assert {k for k, v in shown["checks"].items() if v["status"] == "fail"} == {"entry_hash", "signature", "chain",
                                                                                "inclusion"}
    human = run(ledger, "replay", "--agent", "writer")
    assert human.exit_code == 1 and "VERIFICATION FAILED" in human.output and "✗" in human.output
    result = run(ledger, "export", "bundle", "--out", str(ledger["work"] / "x.zip"), "--agent", "writer")
    assert result.exit_code == 1 and not (ledger["work"] / "x.zip").exists()
    code, _ = replay_json(ledger, "--agent", "planner")  # the forgery is outside this selection
    assert code == 0
