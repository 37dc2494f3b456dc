"""ledger_reader against the real broker: committed records only, exact ends, tails, and
multi-partition reads with --since and --follow semantics."""
from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Producer

from ledgerstream.core.config import Topics
from ledgerstream.tools import ledger_reader as lr
from support.ledger_builder import LedgerWriter

pytestmark = pytest.mark.integration


def test_reads_committed_records_only_to_the_exact_end(bootstrap: str, topics: Topics) -> None:
    writer = LedgerWriter(bootstrap, topics)
    first = writer.commit([b"e0", b"e1"], [b"c0"])
    writer.abort([b"aborted"], [b"aborted"])
    second = writer.commit([b"e2"])
    entries = list(lr.read_entries(bootstrap, topics))
    assert [v for _, v in entries] == [b"e0", b"e1", b"e2"]
    assert [o for o, _ in entries] == [o for t, o in first + second if t == topics.entries]
    assert [v for _, v in lr.read_checkpoints(bootstrap, topics)] == [b"c0"]
    assert [v for _, v in lr.read_entries(bootstrap, topics, start=entries[1][0])] == [b"e1", b"e2"]
    ends = lr.end_offsets(bootstrap, topics)
    assert ends["entries"] > entries[-1][0] and ends["checkpoints"] >= 2  # markers take offsets


def test_last_record_skips_aborted_tails(bootstrap: str, topics: Topics) -> None:
    assert lr.last_record(bootstrap, topics.entries) is None
    writer = LedgerWriter(bootstrap, topics)
    writer.commit([b"old"] * 20 + [b"newest"])
    for _ in range(3):
        writer.abort([b"aborted"] * 10)
    assert lr.last_record(bootstrap, topics.entries)[1] == b"newest"
    assert [v for _, v in lr.last_records(bootstrap, topics.entries, 3)] == [b"old", b"old", b"newest"]


def test_read_topic_all_partitions_since_and_follow(bootstrap: str, topics: Topics) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    now_ms = int(time.time() * 1000)
    for p in range(3):  # alerts has three partitions
        producer.produce(topics.alerts, b"old", partition=p, timestamp=now_ms - 3_600_000)
        producer.produce(topics.alerts, b"new", partition=p, timestamp=now_ms)
    producer.flush(30)
    everything = list(lr.read_topic(bootstrap, topics.alerts))
    assert sorted(r.value for r in everything) == [b"new"] * 3 + [b"old"] * 3
    assert {r.partition for r in everything} == {0, 1, 2}
    recent = list(lr.read_topic(bootstrap, topics.alerts, since_ms=now_ms - 60_000))
    assert [r.value for r in recent] == [b"new"] * 3

    stop, seen = threading.Event(), []

    def follow() -> None:
        for rec in lr.read_topic(bootstrap, topics.alerts, since_ms=now_ms + 1, follow=True, stop=stop):
            seen.append(rec.value)

    reader = threading.Thread(target=follow)
    reader.start()
    time.sleep(2)
    producer.produce(topics.alerts, b"live", partition=1)
    producer.flush(30)
    deadline = time.monotonic() + 30
    while not seen and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    reader.join(10)
    assert seen == [b"live"]


def test_take_returns_the_first_record_without_waiting_out_its_timeout(bootstrap: str, topics: Topics) -> None:
    """core/topic_reader.take: librdkafka's consume(n, timeout) holds one record back until n
    are there or the timeout has passed (shown here with the bare call); take hands it over as
    soon as it arrives, and returns nothing only after the timeout (D39)."""
    from confluent_kafka import Consumer, TopicPartition

    from ledgerstream.core.kafka_security import kafka_config
    from ledgerstream.core.topic_reader import take

    LedgerWriter(bootstrap, topics).commit([b"only"])
    consumer = Consumer(kafka_config(bootstrap, "reader", {"group.id": "take-test", "isolation.level": "read_committed"}))
    try:
        consumer.assign([TopicPartition(topics.entries, 0, 0)])
        start = time.monotonic()
        held = consumer.consume(500, timeout=3.0)
        assert [m.value() for m in held] == [b"only"] and time.monotonic() - start >= 3.0
        consumer.assign([TopicPartition(topics.entries, 0, 0)])
        start = time.monotonic()
        got = take(consumer, 500, 20.0)
        assert [m.value() for m in got] == [b"only"] and time.monotonic() - start < 10.0
        start = time.monotonic()
        assert take(consumer, 500, 1.0) == [] and time.monotonic() - start >= 1.0
    finally:
        consumer.close()
