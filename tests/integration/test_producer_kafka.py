"""The producer library against the real broker: what arrives on the actions topic."""
from __future__ import annotations

import time

import pytest

from ledgerstream.core import records
from ledgerstream.core.wire import codec
from ledgerstream.producers.ledger import Ledger, connect
from ledgerstream.producers.spool import Spool
from ledgerstream.producers.topic_reader import read_all
from ledgerstream.stack.topics import ensure_topics

pytestmark = pytest.mark.integration


def consume(bootstrap: str, topic: str) -> list[tuple[bytes, int, dict]]:
    """(key, partition, decoded ActionEvent) of every record on the topic."""
    return [(m.key(), m.partition(), codec.decode(m.value(), expect="ActionEvent")[1])
            for m in read_all(bootstrap, topic)]


def test_events_arrive_decoded_keyed_by_agent_in_order(bootstrap, topics, tmp_path, ls_home):
    ledgers = [connect(f"agent-{i}", bootstrap, topics=topics, spool_dir=tmp_path) for i in range(3)]
    sent: dict[str, list[str]] = {led.agent_id: [] for led in ledgers}
    for n in range(300):
        led = ledgers[n % 3]
        sent[led.agent_id].append(led.emit("tool:search", {"n": n}, session="s"))
    assert all(led.flush(30) == 0 for led in ledgers)
    assert all(led.stats()["delivered"] == 100 for led in ledgers)
    for led in ledgers:
        led.close()
    got = consume(bootstrap, topics.actions)
    assert len(got) == 300
    partitions: dict[str, set[int]] = {}
    for key, partition, rec in got:
        assert key == rec["agent_id"].encode(), "key = agent_id"
        partitions.setdefault(rec["agent_id"], set()).add(partition)
        assert rec["offline"] is False and rec["session_id"] == "s"
        records.validate_action(rec)
    assert all(len(p) == 1 for p in partitions.values()), "one agent, one partition"
    for agent, ids in sent.items():
        assert [r["event_id"] for _, _, r in got if r["agent_id"] == agent] == ids, "per-agent order kept"


def test_restart_resends_what_an_offline_run_spooled(bootstrap, topics, tmp_path, ls_home):
    offline = Ledger("agent-r", spool_dir=tmp_path)  # no broker known: spool only
    ids = [offline.emit("tool:x", {"i": i}) for i in range(50)]
    assert offline.close() == 50
    online = connect("agent-r", bootstrap, topics=topics, spool_dir=tmp_path)
    ids.append(online.emit("tool:x", {"i": 50}))
    assert online.flush(30) == 0
    online.close()
    got = [r for _, _, r in consume(bootstrap, topics.actions)]
    assert [r["event_id"] for r in got] == ids, "old spool first, in order, then the new event"
    assert [r["offline"] for r in got] == [True] * 50 + [False]
    spool = Spool(tmp_path / "agent-r")
    assert spool.pending_records == 0
    spool.close()


def test_full_spool_drops_then_records_the_gap(bootstrap, tmp_path, ls_home):
    from ledgerstream.core.config import Topics
    import uuid

    topics = Topics.with_prefix(f"t{uuid.uuid4().hex[:10]}.")  # not created yet: nothing can be delivered
    led = connect("agent-f", bootstrap, topics=topics, spool_dir=tmp_path, max_spool_bytes=30_000)
    ids = [led.emit("tool:x", {"i": i, "pad": "p" * 200}) for i in range(300)]
    dropped = led.stats()["dropped"]
    assert dropped > 0
    ensure_topics(bootstrap, topics)  # Kafka becomes usable: the spool drains
    deadline = time.monotonic() + 60
    while led.stats()["undelivered"] and time.monotonic() < deadline:
        time.sleep(0.1)
    marker = led.emit("tool:after", {})
    assert led.flush(60) == 0
    led.close()
    got = [r for _, _, r in consume(bootstrap, topics.actions)]
    kinds = [r["action_type"] for r in got]
    assert kinds.count("tool:x") == 300 - dropped
    assert kinds[-2:] == ["ledgerstream:dropped", "tool:after"] and got[-1]["event_id"] == marker
    import json
    gap = json.loads(got[-2]["payload"])
    assert gap["dropped"] == dropped and gap["reason"] == "spool full"
    assert {r["event_id"] for r in got if r["action_type"] == "tool:x"} <= set(ids)


def test_drops_are_recorded_once_delivery_works_even_if_the_agent_emits_nothing_more(bootstrap, tmp_path,
                                                                                    ls_home):
    """Issue 20: emits dropped while the spool was full once left no trace when the agent
    went quiet. The ledger's sender records them as soon as Kafka acknowledges records."""
    from ledgerstream.core.config import Topics
    import json
    import uuid

    topics = Topics.with_prefix(f"t{uuid.uuid4().hex[:10]}.")  # not created yet: nothing can be delivered
    led = connect("agent-q", bootstrap, topics=topics, spool_dir=tmp_path, max_spool_bytes=30_000)
    for i in range(300):
        led.emit("tool:x", {"i": i, "pad": "p" * 200})
    dropped = led.stats()["dropped"]
    assert dropped > 0
    ensure_topics(bootstrap, topics)  # Kafka becomes usable; the agent emits nothing more
    deadline = time.monotonic() + 60
    gaps: list[dict] = []
    while not gaps and time.monotonic() < deadline:
        gaps = [r for _, _, r in consume(bootstrap, topics.actions) if r["action_type"] == "ledgerstream:dropped"]
    assert len(gaps) == 1, "recorded once delivery works, before the agent closes"
    assert json.loads(gaps[0]["payload"])["dropped"] == dropped
    led.close()
