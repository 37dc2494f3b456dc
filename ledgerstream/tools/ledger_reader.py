"""Read the ledger from Kafka: committed records only, by offset, up to the current end.

The small API the verify, show, prove, replay and export tools share. Everything is
``read_committed`` with manual assignment (no consumer group, nothing committed), and
"the end" is the partition end seen through partition-EOF events, which is exact even
though transaction markers occupy offsets.

    for offset, raw in read_entries(bootstrap, topics): ...
    for offset, raw in read_checkpoints(bootstrap, topics): ...
    ends = end_offsets(bootstrap, topics)          # {"entries": n, "checkpoints": m}
    newest = last_record(bootstrap, topics.entries)  # (offset, raw) or None
    tail = last_records(bootstrap, topics.entries, 10)  # up to 10 newest, oldest first
    for rec in read_topic(bootstrap, topics.alerts, since_ms=..., follow=True): ...
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from ledgerstream.core.config import Topics
from ledgerstream.core.errors import ConfigError
from ledgerstream.core.topic_reader import read_partition, take
from ledgerstream.core.kafka_security import kafka_config


def read_entries(bootstrap: str, topics: Topics, *, start: int | None = None,
                 timeout: float = 30.0) -> Iterator[tuple[int, bytes]]:
    """``(offset, bytes)`` of every committed record on ``entries`` from ``start`` to the end."""
    return read_partition(bootstrap, topics.entries, 0, start=start, timeout=timeout)


def read_checkpoints(bootstrap: str, topics: Topics, *, start: int | None = None,
                     timeout: float = 30.0) -> Iterator[tuple[int, bytes]]:
    """``(offset, bytes)`` of every committed Checkpoint / TimestampAnchor record."""
    return read_partition(bootstrap, topics.checkpoints, 0, start=start, timeout=timeout)


#: what a just-created topic answers until its leader is known everywhere
_NEW_TOPIC_ERRORS = (KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART,
                     KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION)


def _consumer(bootstrap: str, role: str = "reader", **extra: object) -> Consumer:
    return Consumer(kafka_config(bootstrap, role, {"group.id": f"ledgerstream-reader-{uuid.uuid4().hex}",
                                                   "enable.auto.commit": False,
                                                   "isolation.level": "read_committed", **extra}))


def _watermarks(consumer: Consumer, topic: str, partition: int, timeout: float) -> tuple[int, int]:
    """(low, high) offsets, retrying while a new topic's leader is being elected."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout, cached=False)
        except KafkaException as exc:
            err = exc.args[0]
            if not (err.retriable() or err.code() in _NEW_TOPIC_ERRORS) or time.monotonic() > deadline:
                raise ConfigError(f"cannot read the offsets of {topic}[{partition}]: {exc}") from exc
            time.sleep(0.2)


def end_offsets(bootstrap: str, topics: Topics, *, timeout: float = 10.0) -> dict[str, int]:
    """End offsets of ``entries`` and ``checkpoints`` (records plus transaction markers):
    totals for progress bars and lag, not record counts."""
    consumer = _consumer(bootstrap)
    try:
        return {role: _watermarks(consumer, getattr(topics, role), 0, timeout)[1]
                for role in ("entries", "checkpoints")}
    finally:
        consumer.close()


def topic_end(bootstrap: str, topic: str, *, timeout: float = 10.0) -> int:
    """Sum of the end offsets of every partition of ``topic`` (e.g. how much of ``actions``
    has ever been written)."""
    consumer = _consumer(bootstrap)
    try:
        return sum(_watermarks(consumer, topic, p, timeout)[1] for p in _partitions(consumer, topic, timeout))
    finally:
        consumer.close()


def last_records(bootstrap: str, topic: str, n: int = 1, *, timeout: float = 10.0,
                 role: str = "reader") -> list[tuple[int, bytes]]:
    """Up to ``n`` newest committed records of partition 0 of ``topic``, oldest first.

    Reads back from the end in growing windows, because the last offsets may be
    transaction markers or records of aborted transactions."""
    consumer = _consumer(bootstrap, role)
    try:
        low, high = _watermarks(consumer, topic, 0, timeout)
    finally:
        consumer.close()
    window = 2 * n + 6
    while True:
        start = max(low, high - window)
        found = list(read_partition(bootstrap, topic, 0, start=start, timeout=timeout, role=role))
        if len(found) >= n or start == low:
            return found[-n:]
        window *= 8


def last_record(bootstrap: str, topic: str, *, timeout: float = 10.0) -> tuple[int, bytes] | None:
    """The newest committed record of partition 0 of ``topic``, or None when it has none."""
    newest = last_records(bootstrap, topic, 1, timeout=timeout)
    return newest[0] if newest else None


@dataclass(frozen=True)
class TopicRecord:
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes


def read_topic(bootstrap: str, topic: str, *, since_ms: int | None = None, follow: bool = False,
               stop: threading.Event | None = None, timeout: float = 30.0) -> Iterator[TopicRecord]:
    """Records of every partition of ``topic`` (written at or after ``since_ms`` if given).

    Without ``follow`` it ends once every partition reached its end; with it, it waits for
    new records until ``stop`` is set. Order is per partition only.
    """
    consumer = _consumer(bootstrap, **{"enable.partition.eof": True})
    try:
        parts = _partitions(consumer, topic, timeout)
        assignment = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts]
        if since_ms is not None:
            found = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in parts], timeout=timeout)
            assignment = [TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                          for tp in found]
        consumer.assign(assignment)
        at_end: set[int] = set()
        while not (stop is not None and stop.is_set()):
            if not follow and at_end.issuperset(parts):
                return
            for msg in take(consumer, 500, 0.5):
                err = msg.error()
                if err is None:
                    at_end.discard(msg.partition())
                    yield TopicRecord(msg.partition(), msg.offset(), msg.timestamp()[1], msg.value() or b"")
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                else:
                    raise ConfigError(f"error reading {topic}: {err}")
    finally:
        consumer.close()


def _partitions(consumer: Consumer, topic: str, timeout: float) -> list[int]:
    try:
        md = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise ConfigError(f"cannot reach Kafka: {exc}") from exc
    tmd = md.topics.get(topic)
    if tmd is None or tmd.error is not None or not tmd.partitions:
        raise ConfigError(f"topic {topic!r} does not exist")
    return sorted(tmd.partitions)
