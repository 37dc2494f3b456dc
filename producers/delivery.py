"""Getting spooled records into Kafka: one idempotent producer, one pump per spool.

The spool is the source of truth and the producer a window over it: a :class:`Pump` reads
records from the spool's delivered cursor onwards, produces them (key = agent_id, so one
agent's records share a partition and keep their order), and moves the cursor over the
prefix Kafka has acknowledged. Kafka is told to retry forever (``message.timeout.ms=0``), so
while the broker is down records simply wait, in order, in librdkafka's queue and in the
spool; a record that still fails (unknown topic, fatal producer error) makes the pump wait
for every outstanding acknowledgement, rewind to the first undelivered record and send again
after an exponential backoff. Re-sent records are harmless: the signer dedups by event_id.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from functools import partial
from typing import Any

from ledgerstream.producers.spool import FRAME, Position, Spool, SpoolCorrupt

log = logging.getLogger("ledgerstream.producer")
kafka_log = logging.getLogger("ledgerstream.producer.kafka")
kafka_log.addHandler(logging.NullHandler())  # librdkafka's reconnect chatter: only if the app asks

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "message.timeout.ms": 0,            # never give up on a record: the spool keeps it anyway
    "reconnect.backoff.ms": 100,
    "reconnect.backoff.max.ms": 2000,   # notice a returning broker within about two seconds
    "compression.type": "lz4",
    "queue.buffering.max.messages": 200_000,
}
MAX_IN_FLIGHT = 100_000
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0
_PENDING, _OK, _FAILED = 0, 1, 2


class Delivery:
    """One confluent-kafka producer and what it has learnt about the broker."""

    def __init__(self, bootstrap: str, topic: str, overrides: dict[str, Any] | None = None) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.online = True  # until librdkafka reports the brokers down
        self.fatal: str | None = None
        conf = {**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap, "error_cb": self._on_error,
                "logger": kafka_log, **(overrides or {})}
        self._producer = Producer(conf)

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.fatal():
            self.fatal = err.str()
            log.error("Kafka producer fatal error (%s); records stay in the spool and are re-sent", err.str())
        elif err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
            self.online = False

    def produce(self, key: bytes, value: bytes, on_delivery: Any) -> bool:
        """Hand one record to librdkafka; False when its queue is full (try again later)."""
        try:
            self._producer.produce(self.topic, value, key, on_delivery=on_delivery)
        except BufferError:
            return False
        return True

    def poll(self, timeout: float = 0.0) -> None:
        self._producer.poll(timeout)

    def abandon(self) -> None:
        """Drop whatever is still queued or in flight (the spool still has it) and stop."""
        self._producer.purge(in_queue=True, in_flight=True, blocking=False)
        self._producer.poll(0)


class _Sent:
    __slots__ = ("end", "size", "state")

    def __init__(self, end: Position, size: int) -> None:
        self.end, self.size, self.state = end, size, _PENDING


class Pump:
    """Sends one spool's undelivered records, in order, and acknowledges them in the spool."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.key = spool.agent_id.encode()
        self.sent = 0  # records Kafka acknowledged during this run
        self.stalled: str | None = None
        self._next: Position = spool.acked
        self._in_flight: deque[_Sent] = deque()
        self._failed: str | None = None
        self._retry_at = 0.0
        self._backoff = BACKOFF_MIN

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def waiting_until(self) -> float:
        """Monotonic time of the next retry while backing off, else 0."""
        return self._retry_at if self._retry_at > time.monotonic() else 0.0

    def pump(self, delivery: Delivery, limit: int, until: float | None = None) -> int:
        """Produce up to ``limit`` more records (stopping at ``perf_counter() >= until``);
        returns how many were handed to Kafka."""
        if self._failed or self.stalled or time.monotonic() < self._retry_at:
            return 0
        limit = min(limit, MAX_IN_FLIGHT - len(self._in_flight))
        count = 0
        while count < limit:
            try:
                item = self.spool.read(self._next)
            except SpoolCorrupt as exc:
                self.stalled = str(exc)
                log.error("%s; sending from this spool stops until it is reopened (then quarantined)", exc)
                break
            if item is None:
                break
            body, end = item
            sent = _Sent(end, FRAME.size + len(body))
            if not delivery.produce(self.key, body, partial(self._done, sent)):
                break
            self._in_flight.append(sent)
            self._next = end
            count += 1
            if until is not None and time.perf_counter() >= until:
                break
        return count

    def _done(self, sent: _Sent, err: Any, _msg: Any) -> None:
        if err is None:
            sent.state = _OK
        else:
            sent.state = _FAILED
            self._failed = err.str()

    def settle(self) -> int:
        """Acknowledge the delivered prefix in the spool; plan a re-send after failures.

        Returns the number of records newly acknowledged.
        """
        records = nbytes = 0
        end = None
        while self._in_flight and self._in_flight[0].state == _OK:
            sent = self._in_flight.popleft()
            records += 1
            nbytes += sent.size
            end = sent.end
        if end is not None:
            self.spool.ack(end, records, nbytes)
            self.sent += records
            self._backoff = BACKOFF_MIN
        if self._failed and all(s.state != _PENDING for s in self._in_flight):
            log.warning("spool %s: delivery failed (%s); re-sending %d records in %.1fs", self.spool.path,
                        self._failed, self.spool.pending_records, self._backoff)
            self.rewind()
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        return records

    def rewind(self) -> None:
        """Forget everything in flight; the next pump starts at the first undelivered record."""
        self._in_flight.clear()
        self._next = self.spool.acked
        self._failed = None
