"""Issue #6's acceptance on a fresh dev stack, the way a new user runs it.

After ``demo --agents 2 --events 200`` a rogue producer writes to the entries topic a copy
of an earlier record, a copy with one bit flipped and 300 random bytes. Within a minute
``alerts --json`` holds alerts from at least two verifiers, each with at least two kinds,
and ``verify --json`` reports ``ok: false`` with a non-zero exit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict

import pytest
from confluent_kafka import Producer

from ledgerstream.core.wire import codec
from ledgerstream.core.topic_reader import read_partition
from ledgerstream.core.kafka_security import kafka_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CLI = [sys.executable, "-m", "ledgerstream.cli.main"]


def cli(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), env=env, capture_output=True, text=True, timeout=300, check=check)


def verified(env: dict, verifiers: set[str], n: int) -> bool:
    """Every verifier has written a status and verified the first ``n`` entries."""
    status = json.loads(cli(env, "verifiers", "status", "--json", check=False).stdout)  # exit 1 while behind
    positions = {v["id"]: v["position"] or 0 for v in status}
    return positions.keys() >= verifiers and all(positions[v] >= n for v in verifiers)


def test_rogue_records_raise_alerts_in_every_verifier_and_fail_verify(own_stack: dict) -> None:
    env, bootstrap, entries_topic = own_stack["env"], own_stack["kafka"]["bootstrap"], own_stack["topics"]["entries"]
    verifiers = {v["id"] for v in own_stack["verifiers"]}
    assert len(verifiers) >= 2
    publishers = verifiers | {"index"}
    demo = json.loads(cli(env, "demo", "--agents", "2", "--events", "200", "--json").stdout)
    assert demo["delivered"] == 200

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not verified(env, verifiers, 200):
        time.sleep(1)
    assert verified(env, verifiers, 200), "the verifiers did not verify the demo"
    assert json.loads(cli(env, "alerts", "--json").stdout) == []  # a clean ledger raises nothing

    records = list(read_partition(bootstrap, entries_topic))
    _, earlier = records[57]
    assert codec.decode(earlier, expect="LedgerEntry")[1]["seq"] == 57
    flipped = bytearray(earlier)
    flipped[len(flipped) // 2] ^= 0x08
    rogue = Producer(kafka_config(bootstrap, "admin"))  # an insider: ACLs refuse anyone else
    for value in (earlier, bytes(flipped), os.urandom(300)):
        rogue.produce(entries_topic, value)
    assert rogue.flush(30) == 0

    kinds: dict[str, set[str]] = defaultdict(set)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        kinds.clear()
        for alert in json.loads(cli(env, "alerts", "--json").stdout):
            kinds[alert["verifier_id"]].add(alert["kind"])
            assert {"kind", "verifier_id", "seq_from", "seq_to", "detail"} <= alert.keys()
            # signed with the verifier's own key, which the dev stack generated and readers trust
            assert (alert["authenticity"], alert["forged"]) == ("verified", False), alert
        if sum(len(k) >= 2 for k in kinds.values()) >= len(publishers):
            break
        time.sleep(1)
    # the ledger index runs the same checker and publishes its findings too, under its own key
    assert set(kinds) == publishers and all(len(k) >= 2 for k in kinds.values()), dict(kinds)
    assert all("undecodable" in k for k in kinds.values())  # the 300 random bytes

    verify = cli(env, "verify", "--json", check=False)
    assert verify.returncode == 1, verify.stderr
    report = json.loads(verify.stdout)
    assert report["ok"] is False
