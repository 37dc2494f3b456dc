"""Reads committed ``entries`` and ``checkpoints`` records in large batches.

The verifier's hot path: one confluent-kafka consumer (librdkafka, ``read_committed``)
assigned to partition 0 of both topics at the checker's saved offsets. The checker's state
says where it stands, so the consumer group is never asked where to start; its committed
offsets are only kept up to date for the usual Kafka lag tools. faust's stream machinery
costs ~300 µs per record on a 2-core machine, more than checking the record
(docs/decisions.md D13), so records do not go through a faust stream.
"""
from __future__ import annotations

import logging

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ledgerstream.core.read_ahead import CheckpointReadAhead
from ledgerstream.core.verify import CHECKPOINTS, ENTRIES, PEERS
from ledgerstream.verifier_worker.settings import VerifierSettings
from ledgerstream.core.kafka_security import kafka_config

log = logging.getLogger("ledgerstream.verifier")

MAX_RECORD_BYTES = 8 * 1024 * 1024

#: (role, offset, raw bytes): what the checker process is fed
Record = tuple[str, int, bytes]


class LedgerReader:
    """Not thread-safe: one thread polls, commits and closes it."""

    def __init__(self, settings: VerifierSettings, next_offset: dict[str, int]) -> None:
        self._roles = {settings.topics.entries: ENTRIES, settings.topics.checkpoints: CHECKPOINTS}
        if settings.peer_checkpoints is not None:
            self._roles[settings.peer_checkpoints] = PEERS
        self._consumer = Consumer(kafka_config(settings.bootstrap, "verifier", {
            "group.id": settings.group,
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "isolation.level": "read_committed", "enable.partition.eof": True,
            "max.partition.fetch.bytes": 2 * MAX_RECORD_BYTES, "fetch.max.bytes": 64 * 1024 * 1024,
            "fetch.wait.max.ms": 100,
        }))
        self._consumer.assign([TopicPartition(topic, 0, next_offset.get(role, 0)) for topic, role in self._roles.items()])
        self.read_ahead = CheckpointReadAhead(self._consumer, settings.topics.checkpoints,
                                              settings.checkpoint_read_ahead)
        self._entries_at_end = False

    def poll(self, max_records: int, timeout: float, waiting: int, next_checkpoint: int) -> list[Record]:
        """Up to ``max_records`` committed records, each topic in offset order: returns when
        ``max_records`` are there or ``timeout`` has passed (librdkafka's ``consume``), so a
        batch fills under a backlog and is what arrived within ``timeout`` otherwise (the
        checker's per-batch cost stays amortised). Broker trouble is logged here, never raised:
        librdkafka reconnects by itself and the liveness checks report it.

        Checkpoint-topic records stay within the read-ahead (core/read_ahead.py, D48):
        ``waiting`` is how many may already wait in the checker, ``next_checkpoint`` the
        first checkpoints offset not handed to it (where a held topic is read again)."""
        ahead = self.read_ahead
        ahead.release(waiting, self._entries_at_end, next_checkpoint)
        room = ahead.limit - waiting
        out: list[Record] = []
        for msg in self._consumer.consume(max_records, timeout):
            err = msg.error()
            role = self._roles.get(msg.topic())  # None for a client-wide error
            if role == CHECKPOINTS and (ahead.held or err is None) and not ahead.admit(room, self._entries_at_end):
                continue
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._entries_at_end = self._entries_at_end or role == ENTRIES
                else:
                    log.warning("reading the ledger: %s", err)
                continue
            if role is None:
                continue
            if role == ENTRIES:
                self._entries_at_end = False
            room -= role == CHECKPOINTS
            out.append((role, msg.offset(), msg.value() or b""))
        return out

    def commit(self, next_offset: dict[str, int]) -> None:
        """Tell the consumer group how far the verifier got (for lag tools; best effort)."""
        offsets = [TopicPartition(topic, 0, next_offset[role]) for topic, role in self._roles.items()
                   if next_offset.get(role, 0) > 0]
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            log.warning("could not commit the verifier's offsets: %s", exc)

    def close(self) -> None:
        self._consumer.close()
