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
from functools import partial
from typing import Any

from ledgerstream.core.errors import ConfigError
from ledgerstream.producers.spool import FRAME, Position, Spool, SpoolCorrupt
from ledgerstream.core.kafka_security import kafka_config

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
#: while librdkafka reports every broker down, only this many records wait in its queue (the
#: rest wait in the spool): enough to notice the broker's return, and no Python work per
#: record that cannot be delivered anyway
OFFLINE_IN_FLIGHT = 256
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0
_PENDING, _OK, _FAILED = 0, 1, 2


class Delivery:
    """One confluent-kafka producer and what it has learnt about the broker."""

    def __init__(self, bootstrap: str, topic: str, overrides: dict[str, Any] | None = None) -> None:
        from confluent_kafka import KafkaException, Producer

        self.topic = topic
        self.online = True  # until librdkafka reports the brokers down
        self.fatal: str | None = None
        conf = kafka_config(bootstrap, "producer", {**PRODUCER_DEFAULTS, "error_cb": self._on_error,
                                                    "logger": kafka_log, **(overrides or {})})
        try:
            self._producer = Producer(conf)
        except KafkaException as exc:
            raise ConfigError(f"invalid Kafka producer settings: {exc}") from exc

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.fatal():
            self.fatal = err.str()
            log.error("Kafka producer fatal error (%s); records stay in the spool and are re-sent", err.str())
        elif err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
            self.online = False

    def produce(self, key: bytes, value: bytes, on_delivery: Any) -> bool:
        """Hand one record to librdkafka; False when its queue is full (try again later).

        KafkaException when librdkafka refuses the record itself (e.g. larger than
        ``message.max.bytes``): retrying cannot help.
        """
        try:
            self._producer.produce(self.topic, value, key, on_delivery=on_delivery)
        except BufferError:
            return False
        return True

    def poll(self, timeout: float = 0.0) -> None:
        self._producer.poll(timeout)

    def outstanding(self) -> int:
        """Records produced but not yet acknowledged (or reported failed and not yet polled)."""
        return len(self._producer)

    def abandon(self) -> None:
        """Drop whatever is still queued or in flight (the spool still has it) and stop."""
        self._producer.purge(in_queue=True, in_flight=True, blocking=False)
        self._producer.poll(0)


class _Sent:
    """One produced record: where it ends in the spool, frame bytes produced so far, state."""

    __slots__ = ("end", "cum", "state")

    def __init__(self, end: Position, cum: int) -> None:
        self.end, self.cum, self.state = end, cum, _PENDING


class Pump:
    """Sends one spool's undelivered records, in order, and acknowledges them in the spool.

    With ``counted`` (the pump owns its producer, whose only key is this agent), success
    is not reported per record (``delivery.report.only.error``): records of one partition
    complete in order, so every record but the last ``outstanding()`` ones is done, and
    only failures cost a Python callback.
    """

    def __init__(self, spool: Spool, counted: bool = False) -> None:
        self.spool = spool
        self.counted = counted
        self.key = spool.agent_id.encode()
        self.sent = 0  # records Kafka acknowledged during this run
        self.stalled: str | None = None
        self._next: Position = spool.acked
        self._in_flight: list[_Sent] = []  # oldest first
        self._acked_cum = self._produced_cum = 0
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

    def _ready(self) -> bool:
        return not (self._failed or self.stalled) and time.monotonic() >= self._retry_at

    def offer(self, start: Position, bodies: list[bytes], ends: list[Position], delivery: Delivery) -> None:
        """Produce records just appended at ``start`` straight from memory, if the pump has
        caught up with the spool (saves reading them back)."""
        if self._next != start or not self._ready():
            return
        for body, end in zip(bodies, ends):
            if not self._produce(delivery, body, end):
                return

    def pump(self, delivery: Delivery, limit: int, until: float | None = None) -> int:
        """Produce up to ``limit`` more records read from the spool (stopping once
        ``perf_counter() >= until``); returns how many were handed to Kafka."""
        if not self._ready():
            return 0
        limit = min(limit, self._window(delivery) - len(self._in_flight))
        count = 0
        while count < limit:
            try:
                item = self.spool.read(self._next)
            except SpoolCorrupt as exc:
                self.stalled = str(exc)
                log.error("%s; sending from this spool stops until it is reopened (then quarantined)", exc)
                break
            if item is None or not self._produce(delivery, *item):
                break
            count += 1
            if until is not None and time.perf_counter() >= until:
                break
        return count

    @staticmethod
    def _window(delivery: Delivery) -> int:
        return MAX_IN_FLIGHT if delivery.online else OFFLINE_IN_FLIGHT

    def _produce(self, delivery: Delivery, body: bytes, end: Position) -> bool:
        if len(self._in_flight) >= self._window(delivery):
            return False
        sent = _Sent(end, self._produced_cum + FRAME.size + len(body))
        try:
            if not delivery.produce(self.key, body, partial(self._done, sent)):
                return False
        except Exception as exc:  # a record Kafka will never take: keep it, stop, say so
            self.stalled = f"record before {end} in {self.spool.path} cannot be produced: {exc}"
            log.error("%s; sending from this spool stops (the record stays in the spool)", self.stalled)
            return False
        self._in_flight.append(sent)
        self._produced_cum = sent.cum
        self._next = end
        return True

    def _done(self, sent: _Sent, err: Any, _msg: Any) -> None:
        if err is None:
            sent.state = _OK
        else:
            sent.state = _FAILED
            self._failed = err.str()

    def settle(self, delivery: Delivery) -> int:
        """Acknowledge the delivered prefix in the spool; plan a re-send after failures.

        Returns the number of records newly acknowledged. Without failures in counted mode
        this costs O(1) Python work however many records completed.
        """
        in_flight = self._in_flight
        completed = len(in_flight) - delivery.outstanding() if self.counted else 0
        if self.counted and not self._failed:
            done = max(0, completed)
        else:  # walk the states the callbacks set; stop at the first failure
            done = 0
            while done < len(in_flight):
                state = in_flight[done].state
                if state == _OK or (state == _PENDING and done < completed):
                    done += 1
                else:
                    break
        if done:
            last = in_flight[done - 1]
            self.spool.ack(last.end, done, last.cum - self._acked_cum)
            self._acked_cum = last.cum
            del in_flight[:done]
            self.sent += done
            self._backoff = BACKOFF_MIN
        if self._failed and (delivery.outstanding() == 0 if self.counted
                             else all(s.state != _PENDING for s in in_flight)):
            log.warning("spool %s: delivery failed (%s); re-sending %d records in %.1fs", self.spool.path,
                        self._failed, self.spool.pending_records, self._backoff)
            self.rewind()
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        return done

    def rewind(self) -> None:
        """Forget everything in flight; the next pump starts at the first undelivered record."""
        self._in_flight.clear()
        self._next = self.spool.acked
        self._produced_cum = self._acked_cum
        self._failed = None
