"""Keep the verifier's consumer group from being ahead of its saved state.

faust commits offsets of processed batches; the state is saved before that, so normally
the group is behind the state and replays a little (skipped by offset). After
``--reverify`` or a lost state folder the group would be ahead and records would be missed,
so before faust starts the group's offsets are moved back to the state's positions.

A plain consumer of the group does it (``committed`` then a standalone ``commit``, never
joining the group): librdkafka 2.x's AdminClient ListConsumerGroupOffsets crashes the
process (SIGSEGV in rd_kafka_cgrp_op) while a fresh broker's group coordinator is loading.
"""
from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from ledgerstream.core.errors import ConfigError


def rewind_group(bootstrap: str, group: str, positions: dict[str, int], *, timeout: float = 90.0) -> dict[str, int]:
    """Set the committed offset of ``group`` on partition 0 of each topic to at most its
    position; returns what was moved. Waits for a dead previous member to leave the group."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                return _rewind_once(consumer, positions)
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise ConfigError(f"cannot rewind consumer group {group}: {exc}") from exc
                time.sleep(2.0)  # e.g. a killed member still in the group until its session expires
    finally:
        consumer.close()


def _rewind_once(consumer: Consumer, positions: dict[str, int]) -> dict[str, int]:
    committed = consumer.committed([TopicPartition(topic, 0) for topic in positions], timeout=30)
    moves = {tp.topic: positions[tp.topic] for tp in committed if tp.offset > positions[tp.topic]}
    if moves:
        consumer.commit(offsets=[TopicPartition(topic, 0, pos) for topic, pos in moves.items()], asynchronous=False)
    return moves
