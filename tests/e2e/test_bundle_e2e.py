"""``replay``, ``export bundle`` and ``verify-bundle`` as a responder runs them, on the dev stack."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from ledgerstream.core.wire import codec
from support.actions import make_action
from conftest import stack_kafka_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CLI = [sys.executable, "-m", "ledgerstream.cli.main"]


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def test_replay_export_and_verify_offline_on_the_dev_stack(dev_stack, tmp_path):
    env, home = dev_stack["env"], Path(dev_stack["env"]["LEDGERSTREAM_HOME"])
    tag = uuid.uuid4().hex[:8]
    a = make_action(f"{tag}-orchestrator", "llm:plan", {"task": "refund"})
    b = make_action(f"{tag}-billing", "tool:refund", {"amount": 12}, links=[
        {"agent_id": a["agent_id"], "event_id": a["event_id"], "relation": "caused_by"}])
    c = make_action(f"{tag}-notifier", "tool:email", {"to": "customer"}, links=[
        {"agent_id": b["agent_id"], "event_id": b["event_id"], "relation": "caused_by"}])
    producer = Producer(stack_kafka_config(dev_stack))
    for action in (a, b, c):
        producer.produce(dev_stack["topics"]["actions"], codec.encode("ActionEvent", action),
                         key=action["agent_id"].encode())
        producer.flush(30)

    out = tmp_path / "case-42.zip"
    deadline = time.monotonic() + 90
    while True:  # the checkpoint covering them is published, then anchored, within seconds
        done = cli(env, "export", "bundle", "--agent", b["agent_id"], "--follow-links", "--out", str(out), "--json")
        if done.returncode == 0 or time.monotonic() > deadline:
            break
        assert done.returncode == 2, done.stderr  # not yet covered / anchored: retry
        time.sleep(1)
    assert done.returncode == 0, done.stderr
    exported = json.loads(done.stdout)
    assert exported["entries"] == 3

    # offline: another environment, no stack, only the file and the pinned anchors
    offline_env = {k: v for k, v in env.items() if k not in ("LEDGERSTREAM_HOME", "LEDGERSTREAM_BOOTSTRAP")}
    offline_env["LEDGERSTREAM_HOME"] = str(tmp_path / "nowhere")
    done = cli(offline_env, "verify-bundle", str(out), "--json", "--trusted-key", str(home / "keys" / "signer.pub.pem"),
               "--tsa-ca", str(home / "tsa" / "ca.pem"))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["entries"] == 3 and report["manifest_sha256"] == exported["manifest_sha256"]

    done = cli(env, "replay", "--agent", a["agent_id"], "--follow-links", "--json")
    doc = json.loads(done.stdout)
    # the signer may sequence them in any order (different partitions): a link can be pending
    assert sorted(e["event_id"] for e in doc["entries"]) == sorted([a["event_id"], b["event_id"], c["event_id"]])
    assert all(e["ok"] for e in doc["entries"]), doc["entries"]
    done = cli(env, "replay", "--agent", a["agent_id"], "--follow-links")
    assert "causal closure" in done.stdout and a["agent_id"] in done.stdout
