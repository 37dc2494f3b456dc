"""Signed alerts end to end on the real broker (docs/spec.md section 10, issue 19 item 2).

A real verifier worker publishes a genuine, signed alert; a plain confluent_kafka Producer
(anyone with write access to the alerts topic) adds a forged ``all_clear`` (its own key, in
verifier v1's name), another forged ``all_clear`` signed with verifier v2's real key in v1's
name, and an unsigned alert. ``ledgerstream alerts`` (JSON and human), the dashboard API and
the SIEM export in all four formats must tell the genuine alert from the three others. A
verifier without its key file must refuse to start and publish nothing.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from ledgerstream.core import mldsa
from ledgerstream.core.wire import codec
from ledgerstream.core.alert_signature import ENV_VERIFIER_KEYS, sign_alert, verifier_key_path, verifier_public_key_path
from ledgerstream.core.config import Topics
from ledgerstream.tools.ledger_reader import read_topic
from support.ledger_builder import LedgerBuilder, LedgerWriter, RogueProducer, entry_bytes
from test_dashboard_api import TOKEN, get
from test_verifier_worker import KEY, WorkerProcess, alerts_of, verifier_home, wait_until, write_ledger
from tests.support.browser import DashboardProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLI = [sys.executable, "-m", "ledgerstream.cli.main"]


def prefix(topics: Topics) -> str:
    return topics.entries[: -len("entries")]


def cli(home: Path, topics: Topics, bootstrap: str, *args: str, env: dict[str, str] | None = None) -> str:
    environ = {k: v for k, v in os.environ.items() if k != ENV_VERIFIER_KEYS}
    environ.update({"LEDGERSTREAM_HOME": str(home), "LEDGERSTREAM_TOPIC_PREFIX": prefix(topics), **(env or {})})
    proc = subprocess.run(CLI + list(args) + ["--bootstrap", bootstrap], capture_output=True, text=True,
                          timeout=180, env=environ)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_verifier_without_its_alert_key_does_not_start(bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    home = verifier_home(tmp_path, KEY, verifiers=())
    base = [sys.executable, "-m", "ledgerstream.verifier_worker", "--home", str(home), "--id", "v1",
            "--bootstrap", bootstrap, "--topic-prefix", prefix(topics)]
    missing = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2, missing.stderr
    assert "verifier v1 signs every alert it publishes and has no key" in missing.stderr
    assert str(verifier_key_path(home, "v1")) in missing.stderr
    other = subprocess.run(base + ["--alert-key", str(tmp_path / "nope.pem")], capture_output=True, text=True,
                           timeout=120)
    assert other.returncode == 2 and "nope.pem does not exist" in other.stderr
    assert not (home / "verifiers" / "v1" / "status.json").exists()  # it never ran
    assert list(read_topic(bootstrap, topics.alerts)) == []


@pytest.fixture()
def alerts_topic(bootstrap: str, topics: Topics, tmp_path: Path) -> dict[str, Any]:
    """A genuine alert from a running verifier v1, then three that are not genuine."""
    home = verifier_home(tmp_path / "home", KEY)  # keys/verifier-v1.pem, keys/verifier-v2.pem (+ .pub.pem)
    builder, writer = LedgerBuilder(KEY), LedgerWriter(bootstrap, topics)
    write_ledger(writer, builder, 1, 5)
    RogueProducer(bootstrap).send(topics.entries, entry_bytes(builder.entries[2]))  # a replay: one duplicate alert
    worker = WorkerProcess(home, "v1", bootstrap, topics).start()
    try:
        worker.wait_position(5)
        genuine = wait_until(lambda: alerts_of(bootstrap, topics, "v1") or None, 60, "the worker's alert", worker.log)
    finally:
        worker.stop()
    (genuine_id, genuine_alert), = genuine.items()
    assert genuine_alert["kind"] == "duplicate" and genuine_alert["signature"] is not None

    now = time.time_ns() // 1000
    clear = {"alert_id": f"clear-{uuid.uuid4().hex[:8]}", "kind": "all_clear", "severity": "info", "seq_from": None,
             "seq_to": None, "agent_id": None, "detail": "all findings resolved; ledger intact",
             "evidence": {"supersedes": genuine_id}, "verifier_id": "v1", "time": now}
    attacker = mldsa.PrivateKey.generate()
    v2_key = mldsa.load_private_key(verifier_key_path(home, "v2"))
    forged = sign_alert(clear, attacker)  # a well-formed signature under a key nobody trusts
    stolen = sign_alert({**clear, "alert_id": f"stolen-{uuid.uuid4().hex[:8]}"}, v2_key)  # v2's key, in v1's name
    unsigned = {"alert_id": f"unsigned-{uuid.uuid4().hex[:8]}", "kind": "gap", "severity": "critical",
                "seq_from": 2, "seq_to": 3, "agent_id": "agent-a", "detail": "entries 2..3 missing",
                "evidence": {}, "verifier_id": "v1", "time": now + 1}
    producer = Producer({"bootstrap.servers": bootstrap})
    for record in (forged, stolen, unsigned):
        producer.produce(topics.alerts, codec.encode("Alert", record), key=record["kind"].encode())
    assert producer.flush(30) == 0
    return {"home": home, "genuine": genuine_id, "forged": forged["alert_id"], "stolen": stolen["alert_id"],
            "unsigned": unsigned["alert_id"]}


EXPECTED = {"genuine": ("verified", False, "signed"), "forged": ("forged", True, "unknown_key"),
            "stolen": ("forged", True, "wrong_verifier"), "unsigned": ("unsigned", True, "no_signature")}


def test_alerts_dashboard_and_siem_export_mark_forged_alerts(alerts_topic: dict[str, Any], bootstrap: str,
                                                            topics: Topics, tmp_path: Path) -> None:
    home = alerts_topic["home"]
    ids = {alerts_topic[name]: name for name in EXPECTED}

    # --- ledgerstream alerts --json (trust: the dev stack layout, HOME/keys/verifier-*.pub.pem)
    rows = json.loads(cli(home, topics, bootstrap, "alerts", "--json"))
    assert sorted(r["alert_id"] for r in rows) == sorted(ids)
    for row in rows:
        want = EXPECTED[ids[row["alert_id"]]]
        assert (row["authenticity"], row["forged"], row["authenticity_reason"]) == want, row
    genuine_row = next(r for r in rows if ids[r["alert_id"]] == "genuine")
    assert len(bytes.fromhex(genuine_row["signature"])) == mldsa.SIGNATURE_SIZE

    # human output: FORGED / UNSIGNED up front, the genuine alert unmarked
    lines = cli(home, topics, bootstrap, "alerts").splitlines()
    assert len(lines) == 4, lines
    (duplicate,) = [line for line in lines if " duplicate" in line]
    (gap,) = [line for line in lines if "entries 2..3 missing" in line]
    clears = sorted(line for line in lines if " all_clear" in line)
    assert not duplicate.startswith("!!")
    assert gap.startswith("!! UNSIGNED (no_signature) !! ")
    assert sorted(line.split(" !! ", 1)[0] for line in clears) == ["!! FORGED (unknown_key)",
                                                                   "!! FORGED (wrong_verifier)"]

    # trust from the environment and from options replaces the default
    v1_pub, v2_pub = verifier_public_key_path(home, "v1"), verifier_public_key_path(home, "v2")
    only_v2 = json.loads(cli(home, topics, bootstrap, "alerts", "--json", "--trusted-verifier-key", str(v2_pub)))
    assert {r["alert_id"]: r["authenticity_reason"] for r in only_v2 if r["alert_id"] == alerts_topic["genuine"]} \
        == {alerts_topic["genuine"]: "unknown_key"}
    env_v1 = json.loads(cli(home, topics, bootstrap, "alerts", "--json", env={ENV_VERIFIER_KEYS: f"v1={v1_pub}"}))
    assert {ids[r["alert_id"]]: r["authenticity"] for r in env_v1} == {
        "genuine": "verified", "forged": "forged", "stolen": "forged", "unsigned": "unsigned"}

    # --- the dashboard API (its default trust: the same HOME)
    dash = DashboardProcess(bootstrap, prefix(topics), home, "--token", TOKEN)
    try:
        dash.wait_ready()
        data = wait_until(lambda: (d := get(f"{dash.url}/api/alerts")[1])["summary"]["total"] == 4 and d, 60,
                          "four alerts on the dashboard", dash.log)
    finally:
        dash.stop()
    for item in data["alerts"]:
        want = EXPECTED[ids[item["alert_id"]]]
        assert (item["authenticity"], item["forged"], item["authenticity_reason"]) == want, item
    # the forged all_clear changed nothing a genuine alert shows: only the duplicate counts
    assert data["summary"] == {"total": 4, "verified": 1, "by_kind": {"duplicate": 1}, "forged": 3,
                               "forged_by_kind": {"all_clear": 2, "gap": 1}}

    # --- the SIEM export, every format
    for fmt in ("ecs", "ocsf", "cef", "syslog"):
        out = tmp_path / f"export.{fmt}"
        subprocess.run(CLI + ["export", "siem", "--format", fmt, "--only", "alerts", "--output", str(out),
                              "--group", f"g-{fmt}-{uuid.uuid4().hex[:6]}", "--home", str(home),
                              "--bootstrap", bootstrap, "--topic-prefix", prefix(topics)],
                       check=True, capture_output=True, text=True, timeout=180,
                       env={k: v for k, v in os.environ.items() if k != ENV_VERIFIER_KEYS})
        got = {alert_id: marking for alert_id, marking in (_marking(fmt, line) for line in out.read_text().splitlines())}
        assert got == {alert_id: EXPECTED[name][:2] for alert_id, name in ids.items()}, (fmt, out.read_text())


def _marking(fmt: str, line: str) -> tuple[str, tuple[str, bool]]:
    """(alert_id, (authenticity, forged)) as each format carries them (docs/spec.md section 10)."""
    if fmt == "ecs":
        doc = json.loads(line)
        assert doc["labels"]["forged"] == str(doc["ledgerstream"]["alert"]["forged"]).lower()
        forged = doc["ledgerstream"]["alert"]["forged"]
        assert (doc.get("tags") is not None) == forged and doc["message"].startswith("[") == forged
        return doc["event"]["id"], (doc["labels"]["authenticity"], forged)
    if fmt == "ocsf":
        doc = json.loads(line)
        mine = doc["unmapped"]["ledgerstream"]
        assert (doc["confidence_id"] == 1) == mine["forged"]
        assert f"authenticity:{mine['authenticity']}" in doc["metadata"]["labels"]
        return doc["finding_info"]["uid"], (mine["authenticity"], mine["forged"])
    if fmt == "cef":
        ext = dict(re.findall(r"(?:^|\s)(externalId|cs4|cs4Label)=(\S+)", line.split("|", 7)[7]))
        assert ext["cs4Label"] == "authenticity"
        return ext["externalId"], (ext["cs4"], ext["cs4"] != "verified")
    params = dict(re.findall(r'(\w+)="([^"]*)"', line.split("] ", 1)[0]))  # the SD-ELEMENT
    return params["alert_id"], (params["authenticity"], params["forged"] == "true")
