"""The producer-side CLI as a user runs it: emit, sync, agents, demo (subprocesses)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ledgerstream.core.wire import codec
from ledgerstream.producers.topic_reader import read_all
from ledgerstream.stack.kafka import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture()
def env(topics, ls_home, bootstrap):
    return {**os.environ, "LEDGERSTREAM_HOME": str(ls_home), "LEDGERSTREAM_BOOTSTRAP": bootstrap,
            "LEDGERSTREAM_TOPIC_PREFIX": topics.actions[:-len("actions")]}


def run(env, *args: str, ok: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "ledgerstream.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=180)
    assert proc.returncode == ok, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def actions(bootstrap, topic) -> list[dict]:
    return [codec.decode(m.value(), expect="ActionEvent")[1] for m in read_all(bootstrap, topic)]


def test_emit_delivers_and_links(env, bootstrap, topics):
    first = json.loads(run(env, "emit", "tool:search", "--agent", "cli-a", "--payload", '{"q": "x"}',
                           "--session", "s1", "--json").stdout)
    assert first["delivered"] is True and first["spooled"] is False
    second = run(env, "emit", "agent:reply", "--agent", "cli-b", "--link", f"cli-a:{first['event_id']}").stdout.strip()
    a, b = sorted(actions(bootstrap, topics.actions), key=lambda r: r["agent_id"])
    assert (a["event_id"], a["session_id"], json.loads(a["payload"])) == (first["event_id"], "s1", {"q": "x"})
    assert b["event_id"] == second and b["links"] == [{"agent_id": "cli-a", "event_id": first["event_id"],
                                                      "relation": "caused_by"}]


def test_emit_without_kafka_spools_and_sync_delivers(env, bootstrap, topics, ls_home):
    dead = {**env, "LEDGERSTREAM_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    out = json.loads(run(dead, "emit", "tool:x", "--agent", "cli-off", "--timeout", "1", "--json").stdout)
    assert out["spooled"] is True
    down = run(dead, "sync", "--timeout", "2", "--json", ok=1)
    assert json.loads(down.stdout)["remaining"] == 1
    # a second agent's spool with a damaged last record
    from ledgerstream.producers.ledger import Ledger

    other = Ledger("cli-torn", spool_dir=ls_home / "spool")
    kept = [other.emit("tool:y", {"i": i}) for i in range(3)]
    other.close()
    (segment,) = (ls_home / "spool" / "cli-torn").glob("*.seg")
    segment.write_bytes(segment.read_bytes()[:-5])
    proc = run(env, "sync", "--json", ok=1)  # delivered, but something was quarantined: not a clean exit
    report = json.loads(proc.stdout)
    assert (report["agents"], report["sent"], report["remaining"], report["quarantined"]) == (2, 3, 0, 1)
    assert "quarantined" in proc.stderr
    (torn,) = [sp for sp in report["spools"] if sp["agent_id"] == "cli-torn"]
    (qpath,) = torn["quarantined"]
    assert os.path.exists(qpath) and "/quarantine/" in qpath
    got = {r["event_id"] for r in actions(bootstrap, topics.actions)}
    assert got == {out["event_id"], *kept[:2]}
    assert json.loads(run(env, "sync", "--json").stdout)["sent"] == 0


def test_emit_rejects_bad_input(env):
    run(env, "emit", "not a type", "--agent", "x", ok=2)
    run(env, "emit", "tool:x", "--agent", "x", "--payload", "[1, 2]", ok=2)
    run(env, "emit", "tool:x", "--agent", "x", "--payload", "{nope", ok=2)


def test_agents_summarises_the_ledger(env, bootstrap, topics, ls_home):
    """Only the ledger's entries count (signed by a trusted key, continuing the chain): a
    record under another key and garbage bytes are counted apart, on stderr."""
    import datetime as dt

    from confluent_kafka import Producer

    from ledgerstream.core import mldsa
    from support.ledger_builder import LedgerBuilder, entry_bytes

    key = mldsa.PrivateKey.generate()
    builder = LedgerBuilder(key)
    for agent in ["alpha", "beta", "alpha", "alpha", "gamma", "beta"]:
        builder.entry(agent)
    forged = builder.copy().entry("alpha", key=mldsa.PrivateKey.generate())  # continues the chain, other key
    producer = Producer({"bootstrap.servers": bootstrap})
    for e in [*builder.entries, forged]:
        producer.produce(topics.entries, entry_bytes(e))
    producer.produce(topics.entries, b"not avro")
    assert producer.flush(30) == 0
    pem = ls_home / "test-signer.pub.pem"
    pem.write_bytes(mldsa.public_key_pem(key.public_key()))
    proc = run(env, "agents", "--json", "--trusted-key", str(pem))
    rows = json.loads(proc.stdout)
    assert [r["agent_id"] for r in rows] == ["alpha", "beta", "gamma"]
    alpha = rows[0]
    assert (alpha["entries"], alpha["first_seq"], alpha["last_seq"]) == (3, 0, 3)
    assert alpha["chain_head"] == bytes(builder.entries[3]["entry_hash"]).hex()
    when = dt.datetime.fromtimestamp(builder.entries[3]["action"]["occurred_at"] / 1e6, tz=dt.timezone.utc)
    assert alpha["last_activity"] == when.isoformat(timespec="milliseconds")
    assert (rows[1]["entries"], rows[1]["last_seq"], rows[2]["entries"]) == (2, 5, 1)
    assert "2 record(s) on the entries topic are not entries of this ledger" in proc.stderr
    assert "alpha" in run(env, "agents", "--trusted-key", str(pem)).stdout  # the table form
    refused = run(env, "agents", "--json", ok=2)  # no trusted key: it does not guess
    assert "no trusted signer keys" in refused.stderr


@pytest.mark.slow
def test_demo_records_exactly_m_events(env, bootstrap, topics):
    result = json.loads(run(env, "demo", "--agents", "4", "--events", "137", "--run-id", "r1", "--json").stdout)
    agents = ["demo-r1-planner", "demo-r1-worker-1", "demo-r1-worker-2", "demo-r1-worker-3"]
    assert result["agents"] == agents and result["events"] == result["delivered"] == 137
    got = actions(bootstrap, topics.actions)
    assert len(got) == 137 and len({r["event_id"] for r in got}) == 137
    assert {r["agent_id"] for r in got} == set(agents)
    kinds = {r["action_type"] for r in got}
    assert {"llm:chat", "tool:search", "tool:http_get", "agent:call", "agent:handle", "decision:route"} <= kinds
    assert any(k.startswith("data:") for k in kinds)
    cross = [(r, link) for r in got for link in r["links"] if link["agent_id"] != r["agent_id"]]
    assert len(cross) == result["links"] > 0
    calls = {r["event_id"] for r in got if r["action_type"] == "agent:call"}
    assert all(r["agent_id"].startswith("demo-r1-worker") and link["event_id"] in calls for r, link in cross)
    denied = [r for r in got if r["policy"] and r["policy"]["decision"] == "deny"]
    assert all(r["action_type"].startswith("data:delete:") for r in denied)
    http = [json.loads(r["payload"]) for r in got if r["action_type"] == "tool:http_get"]
    assert all(h["args"]["headers"]["authorization"] == "[REDACTED]" for h in http)


def test_sync_fails_loudly_on_a_spool_it_cannot_open(env, bootstrap, topics, ls_home):
    """A damaged spool.json once gave exit 0 and "remaining": 0 while 5 events stayed unsent."""
    from ledgerstream.producers.ledger import Ledger

    stuck = Ledger("cli-meta", spool_dir=ls_home / "spool")
    for i in range(5):
        stuck.emit("tool:z", {"i": i})
    stuck.close()
    (ls_home / "spool" / "cli-meta" / "spool.json").write_text("{not json")
    proc = run(env, "sync", "--json", ok=1)
    report = json.loads(proc.stdout)
    assert (report["sent"], report["remaining"], report["unreadable"]) == (0, 5, 1)
    assert report["unreadable_spools"][0]["events"] == 5
    assert "cannot be opened" in proc.stderr and "5 events were not sent" in proc.stderr
