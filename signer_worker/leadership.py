"""Hot-standby leadership through Kafka itself.

Every signer instance joins one consumer group on a single-partition topic (the
``checkpoints`` topic, which all signers already share) and never reads from it: the
member that Kafka assigns partition 0 is the leader. When the leader dies, its session
times out, Kafka reassigns the partition, and the standby becomes leader. Leadership
is only a gate: safety comes from the fixed ``transactional.id``, whose
``init_transactions`` fences any previous leader that is still alive (a zombie), so at
most one instance can ever commit.
"""
from __future__ import annotations

import threading

from confluent_kafka import Consumer, KafkaError, TopicPartition

from ledgerstream.core.errors import ConfigError
from ledgerstream.core.kafka_security import kafka_config


class LeaderLease:
    def __init__(self, bootstrap: str, topic: str, group: str, session_timeout_ms: int = 6000) -> None:
        self._topic = topic
        self._session_timeout_ms = session_timeout_ms
        self._held = threading.Event()
        self._lost = threading.Event()
        self._consumer = Consumer(kafka_config(bootstrap, "signer", {
            "group.id": group,
            "enable.auto.commit": False,
            "session.timeout.ms": session_timeout_ms,
            # a standby learns of the rebalance that hands it the lease at its next heartbeat:
            # short ones keep a takeover within the session timeout plus a fraction of a second
            "heartbeat.interval.ms": max(200, session_timeout_ms // 20),
            "max.poll.interval.ms": 300000,
            # Sticky and incremental: a standby joining (or rejoining) must not take partition
            # 0 from a live leader. With an eager assignor every rebalance revokes it first,
            # so the leader saw "lease lost" and exited whenever a standby started.
            "partition.assignment.strategy": "cooperative-sticky",
        }))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if any(p.partition == 0 for p in partitions):
            consumer.pause(partitions)
            self._held.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if any(p.partition == 0 for p in partitions) and self._held.is_set():
            self._held.clear()
            self._lost.set()

    def start(self) -> None:
        self._consumer.subscribe([self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_revoke)

    def poll(self, timeout: float = 0.0) -> None:
        """Keep the membership alive; call often (it never returns records: paused).
        Raises ConfigError if the broker refuses the session timeout (the lease could never
        be won: without this a standby would wait forever)."""
        msg = self._consumer.poll(timeout)
        err = msg.error() if msg is not None else None
        if err is not None and err.code() == KafkaError.INVALID_SESSION_TIMEOUT:
            raise ConfigError(f"the broker refuses a session timeout of {self._session_timeout_ms} ms for the "
                              f"leadership lease (its group.min.session.timeout.ms / group.max.session.timeout.ms): {err}")

    def wait(self, stop: threading.Event, timeout_step: float = 0.5) -> bool:
        while not stop.is_set():
            self.poll(timeout_step)
            if self._held.is_set():
                return True
        return False

    @property
    def held(self) -> bool:
        return self._held.is_set()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def close(self) -> None:
        try:
            self._consumer.close()
        except Exception:  # closing a consumer of a dead broker; nothing to release
            pass
