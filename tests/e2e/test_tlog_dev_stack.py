"""The dev stack serves the index's C2SP tiles at <dashboard>/tlog/, and Go's
golang.org/x/mod/sumdb/tlog (tests/interop/tlogclient) verifies inclusion and consistency
from them against the roots of checkpoints the signer signed (read from the checkpoints
topic by ``checkpoints list``, not from the tiles)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import stack_kafka_config
from support.tlogclient import build_tlogclient, run_client
from tests.support.actions import encode_action

pytestmark = pytest.mark.e2e


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ledgerstream.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=180)


def test_go_tlog_client_verifies_proofs_from_the_dashboards_tiles(dev_stack: dict) -> None:
    from confluent_kafka import Producer

    binary = build_tlogclient()
    env = dev_stack["env"]
    producer = Producer(stack_kafka_config(dev_stack, "producer"))
    status = json.loads(cli(env, "index", "status", "--json").stdout)
    for _ in range(2):  # two batches: at least two checkpoints for a consistency proof
        for i in range(150):
            producer.produce(dev_stack["topics"]["actions"], encode_action(agent_id=f"tlog-agent-{i % 4}"))
        assert producer.flush(30) == 0
        deadline, target = time.monotonic() + 180, status["indexed_size"] + 150
        while time.monotonic() < deadline:
            status = json.loads(cli(env, "index", "status", "--json").stdout)
            if status["tiles_size"] >= target:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"the index did not reach a checkpoint of >= {target} entries: {status}")
    cps = [c for c in json.loads(cli(env, "checkpoints", "list", "--json").stdout)
           if c["tree_size"] <= status["tiles_size"]]
    assert len(cps) >= 2, cps
    url = dev_stack["dashboard"]["url"]
    assert status["tlog_url"] == url.rstrip("/") + "/tlog/"
    token = Path(dev_stack["dashboard"]["token_file"]).read_text().strip()
    # the checkpoint the tiles were written at: the newest verified one, as the signer signed it
    newest = next(c for c in cps if c["tree_size"] == status["tiles_size"])
    older = cps[0]
    size, root = newest["tree_size"], bytes.fromhex(newest["root_hash"])
    code, report = run_client(binary, status["tlog_url"], size, root, indexes=[0, size // 2, size - 1],
                              old_size=older["tree_size"], old_root=bytes.fromhex(older["root_hash"]), bearer=token)
    assert code == 0 and report["ok"] and report["root_ok"], json.dumps(report)[:3000]
    assert report["checkpoint"]["size"] >= size
    for result in report["inclusion"]:
        shown = json.loads(cli(env, "show", "--seq", str(result["index"]), "--json").stdout)
        assert result["leaf_data"] == shown["entry_hash"]  # leaf data = the entry hash (docs/spec.md)
    # a one-byte change of the trusted root is caught, and no token, no tiles
    bad = bytearray(root)
    bad[0] ^= 1
    code, report = run_client(binary, status["tlog_url"], size, bytes(bad), indexes=[0], bearer=token)
    assert code == 1 and not report["root_ok"]
    code, report = run_client(binary, status["tlog_url"], size, root, indexes=[0])
    assert code == 1 and not report["ok"]
