"""Broker outages and agent crashes, on real brokers and real processes.

* A private broker is killed: 200 events go to the spool, ``close()`` returns within its
  timeout, ``ledgerstream sync`` delivers exactly those 200 once the broker is back, and a
  second sync sends nothing; a ledger left open meanwhile keeps only a small probe window in
  librdkafka while the broker is down and delivers everything by itself, in order, once it is
  back.
* An agent process is killed with SIGKILL mid-stream: every event it reported as emitted
  reaches Kafka after a sync.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ledgerstream.core.wire import codec
from ledgerstream.core.config import Topics
from ledgerstream.producers.delivery import OFFLINE_IN_FLIGHT
from ledgerstream.producers.ledger import connect
from ledgerstream.producers.spool import Spool
from ledgerstream.producers.topic_reader import read_all
from ledgerstream.stack.kafka import KafkaBroker
from ledgerstream.stack.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def actions(bootstrap: str, topic: str) -> list[dict]:
    return [codec.decode(m.value(), expect="ActionEvent")[1] for m in read_all(bootstrap, topic)]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ledgerstream.cli.main", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_broker_down_spool_then_sync_exactly_once(tmp_path, ls_home):
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    try:
        topics = Topics.with_prefix("outage.")
        ensure_topics(broker.bootstrap, topics)
        spool_root = tmp_path / "spool"
        led = connect("agent-down", broker.bootstrap, topics=topics, spool_dir=spool_root)
        live = connect("agent-live", broker.bootstrap, topics=topics, spool_dir=spool_root)
        before = led.emit("tool:before", {})
        assert led.flush(30) == 0 and live.flush(30) == 0
        broker.kill()  # kill -9: the harshest outage
        time.sleep(1.0)  # let the client notice
        ids = {led.emit("tool:offline", {"i": i}) for i in range(200)}
        live_ids = [live.emit("tool:during", {"i": i}) for i in range(OFFLINE_IN_FLIGHT * 4)]
        deadline = time.monotonic() + 30
        while live.stats()["journaled"] < len(live_ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        # while every broker is down only a probe window waits in librdkafka; the rest in the spool
        assert live._sender._delivery.outstanding() > 0 and 0 < live._sender._pump.in_flight <= OFFLINE_IN_FLIGHT
        assert live.stats()["undelivered"] == len(live_ids)
        t0 = time.monotonic()
        left = led.close(timeout=3.0)
        assert time.monotonic() - t0 < 3.5, "close() must return within its timeout with the broker down"
        assert left == 200
        spool = Spool(spool_root / "agent-down")
        spooled = [codec.decode(body)[1] for body in spool.records()]
        spool.close()
        assert {r["event_id"] for r in spooled} == ids
        assert all(r["offline"] for r in spooled), "produced while the broker was unreachable"

        broker.start()
        assert live.flush(60) == 0, "a ledger left open delivers by itself once the broker is back"
        live.close()
        env = {**os.environ, "LEDGERSTREAM_TOPIC_PREFIX": "outage.", "LEDGERSTREAM_HOME": str(ls_home)}
        first = cli("sync", "--spool", str(spool_root), "--bootstrap", broker.bootstrap, "--json", env=env)
        assert first.returncode == 0, first.stderr
        report = json.loads(first.stdout)
        assert (report["agents"], report["sent"], report["remaining"], report["quarantined"]) == (2, 200, 0, 0)
        second = cli("sync", "--spool", str(spool_root), "--bootstrap", broker.bootstrap, "--json", env=env)
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["sent"] == 0
        got = actions(broker.bootstrap, topics.actions)
        assert {r["event_id"] for r in got} == ids | {before} | set(live_ids)
        assert len(got) == 201 + len(live_ids), "nothing sent twice"
        assert [r["event_id"] for r in got if r["agent_id"] == "agent-live"] == live_ids, "order kept"
    finally:
        broker.stop()


AGENT = textwrap.dedent("""
    import sys, time
    from ledgerstream.core.config import Topics
    from ledgerstream.producers.ledger import connect

    led = connect("agent-k9", sys.argv[1], topics=Topics.with_prefix(sys.argv[2]), spool_dir=sys.argv[3],
                  producer_config={"linger.ms": 1000})  # keep some events in flight at the kill
    while True:
        burst = [led.emit("tool:step", {"pad": "x" * 100}) for _ in range(20)]
        time.sleep(0.02)  # what the agent reports was emitted 20 ms ago or more
        print(" ".join(burst), flush=True)
""")


def test_kill_9_loses_nothing_emitted(bootstrap, topics, tmp_path, ls_home):
    spool_root = tmp_path / "spool"
    proc = subprocess.Popen([sys.executable, "-c", AGENT, bootstrap, topics.actions[:-len("actions")],
                             str(spool_root)], stdout=subprocess.PIPE, text=True)
    emitted: list[str] = []
    try:
        while len(emitted) < 600:
            line = proc.stdout.readline()
            assert line, "agent died early"
            emitted.extend(line.split())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    env = {**os.environ, "LEDGERSTREAM_TOPIC_PREFIX": topics.actions[:-len("actions")],
           "LEDGERSTREAM_HOME": str(ls_home)}
    result = cli("sync", "--spool", str(spool_root), "--bootstrap", bootstrap, "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sent"] > 0, "the kill left undelivered events in the spool"
    delivered = {r["event_id"] for r in actions(bootstrap, topics.actions)}
    missing = set(emitted) - delivered
    assert not missing, f"{len(missing)} of {len(emitted)} emitted events lost"
    assert len(delivered) >= len(emitted)
