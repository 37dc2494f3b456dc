"""Read a topic from its beginning to its current end, without joining a consumer group.

Used by the tools that summarise a topic once (``approvals list``, ``agents``): the
partitions are assigned and read from offset 0 with a fresh random group id and no
commits, so nothing is left behind on the broker.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Iterator

from ledgerstream.core.errors import ConfigError
from ledgerstream.producers.delivery import kafka_log
from ledgerstream.core.kafka_security import kafka_config


def read_all(bootstrap: str, topic: str, *, timeout: float = 30.0,
             isolation: str = "read_committed", role: str = "reader") -> Iterator[Any]:
    """Every message of ``topic`` up to its end at the time of the call, partition by partition
    interleaved as Kafka delivers them. ConfigError if the broker or topic cannot be reached."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

    consumer = Consumer(kafka_config(bootstrap, role, {
        "group.id": f"ledgerstream-read-{uuid.uuid4().hex}",
        "enable.auto.commit": False, "enable.partition.eof": True, "isolation.level": isolation,
        "auto.offset.reset": "earliest", "logger": kafka_log,
    }))
    try:
        deadline = time.monotonic() + timeout
        try:
            meta = consumer.list_topics(topic, timeout=min(timeout, 10.0))
        except KafkaException as exc:
            raise ConfigError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise ConfigError(f"topic {topic} does not exist on {bootstrap}")
        parts = sorted(info.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        open_parts = set(parts)
        while open_parts:
            if time.monotonic() > deadline:
                raise ConfigError(f"timed out after {timeout:.0f}s reading {topic} "
                                  f"(partitions {sorted(open_parts)} not at their end)")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    open_parts.discard(msg.partition())
                    continue
                raise ConfigError(f"error reading {topic}: {err.str()}")
            yield msg
    finally:
        consumer.close()
