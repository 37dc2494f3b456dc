"""Keep the verifier's consumer group from being ahead of its saved state.

faust commits offsets of processed batches; the state is saved before that, so normally
the group is behind the state and replays a little (skipped by offset). After
``--reverify`` or a lost state folder the group would be ahead and records would be missed,
so before faust starts the group's offsets are moved back to the state's positions.
"""
from __future__ import annotations

import time

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from ledgerstream.core.errors import ConfigError


def rewind_group(bootstrap: str, group: str, positions: dict[str, int], *, timeout: float = 90.0) -> dict[str, int]:
    """Set the committed offset of ``group`` on partition 0 of each topic to at most its
    position; returns what was moved. Waits for a dead previous member to leave the group."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _rewind_once(admin, group, positions)
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise ConfigError(f"cannot rewind consumer group {group}: {exc}") from exc
            time.sleep(2.0)  # e.g. GROUP_NOT_EMPTY until a killed member's session expires


def _rewind_once(admin: AdminClient, group: str, positions: dict[str, int]) -> dict[str, int]:
    request = [ConsumerGroupTopicPartitions(group)]
    listed = admin.list_consumer_group_offsets(request)[group].result(30)
    committed = {tp.topic: tp.offset for tp in listed.topic_partitions or [] if tp.partition == 0}
    moves = {topic: pos for topic, pos in positions.items() if committed.get(topic, -1) > pos}
    if moves:
        wanted = [TopicPartition(topic, 0, pos) for topic, pos in moves.items()]
        admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, wanted)])[group].result(30)
    return moves
