"""At-least-once export of the entries and alerts topics to a SIEM sink.

Two threads share a bounded buffer. The consumer thread (the caller's) reads with a
consumer group, renders each record and queues it; when the buffer is full it pauses
its partitions and keeps polling (so it stays in the group) until the writer has drained
half of it. The writer thread hands batches to the sink and, only when the sink
acknowledged a batch, records its offsets; the consumer thread commits exactly those.
A failing sink is retried with exponential backoff for as long as it takes (or until
``give_up_after``); its records are never acknowledged, so the group's committed
position never passes an unwritten record and a restart resumes from there.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaTopicPartition

from ledgerstream.core.alert_signature import VerifierKey
from ledgerstream.core.config import Topics
from ledgerstream.core.errors import ConfigError, LedgerstreamError
from ledgerstream.core.verify import CheckerConfig
from ledgerstream.tools.siem.events import UNDECODABLE, AlertEvent, EntryEvent, Event, Origin, decode_event
from ledgerstream.tools.siem.formats import SiemFormat
from ledgerstream.tools.siem.formats import syslog as syslog_format
from ledgerstream.tools.siem.pipeline import BoundedBuffer, Item, OffsetTracker, TopicPartition
from ledgerstream.tools.siem.sinks import Sink, SinkError
from ledgerstream.core.kafka_security import kafka_config

STREAMS = ("entries", "alerts")


class ExportFailed(LedgerstreamError):
    """The sink refused the data for good, or stayed down longer than allowed."""


@dataclass(frozen=True)
class ExportSettings:
    bootstrap: str
    topics: Topics
    group: str
    streams: tuple[str, ...] = STREAMS
    follow: bool = False
    #: ignore the group's committed offsets once, at the first assignment, and start over
    from_beginning: bool = False
    batch_size: int = 500
    buffer_size: int = 5000
    max_backoff: float = 30.0
    #: stop retrying a dead sink after this many seconds (None: retry forever)
    give_up_after: float | None = None
    #: without --follow: how long to wait for the group to assign partitions
    assignment_timeout: float = 60.0
    #: verifier keys whose alert signatures are trusted, by key_id (core/alert_signature.py);
    #: empty: every alert is exported as unsigned or forged
    trusted_verifiers: Mapping[str, VerifierKey] = field(default_factory=dict)
    #: the signer keys the core trusts (ledger entries' ``authenticity``); None: "unchecked"
    trusted_signers: CheckerConfig | None = None

    def __post_init__(self) -> None:
        if not self.streams or any(s not in STREAMS for s in self.streams):
            raise ValueError(f"streams must be a non-empty subset of {STREAMS}")
        if self.batch_size < 1 or self.buffer_size < self.batch_size:
            raise ValueError("need batch_size >= 1 and buffer_size >= batch_size")

    @property
    def topic_names(self) -> list[str]:
        return [getattr(self.topics, s) for s in self.streams]


@dataclass
class ExportStats:
    entries: int = 0
    alerts: int = 0
    undecodable: int = 0
    #: alerts not signed by a trusted verifier key (forged or unsigned), exported marked as such
    forged: int = 0
    #: entries the core's stateless checks reject (another key, bad signature, tampered), marked forged
    forged_entries: int = 0
    retries: int = 0
    pauses: int = 0
    peak_buffer: int = 0
    committed: dict[str, int] = field(default_factory=dict)  # "topic[partition]" -> next offset


def default_group(topics: Topics, fmt_name: str) -> str:
    """``<prefix>siem-<format>``: one group per format, so each SIEM feed has its own position."""
    return f"{topics.entries[: -len('entries')]}siem-{fmt_name}"


class Exporter:
    def __init__(self, settings: ExportSettings, fmt: SiemFormat, sink: Sink,
                 log: Callable[[str], None] = print) -> None:
        self.s, self.fmt, self.sink, self.log = settings, fmt, sink, log
        self.stats = ExportStats()
        self.buffer = BoundedBuffer(settings.buffer_size)
        self.tracker = OffsetTracker()
        self._owned: set[TopicPartition] = set()
        self._eof: set[TopicPartition] = set()
        self._paused = False
        self._rewound = False
        self._abort = threading.Event()  # stop retrying the sink (user asked to stop)
        self._drained = threading.Event()  # no more input will come (the writer may exit when idle)
        self._failure: str | None = None

    # --- rendering --------------------------------------------------------------------------
    def render(self, event: Event) -> str:
        line = self.fmt.render(event)
        if self.sink.wants_syslog_header and self.fmt.name != "syslog":
            line = syslog_format.envelope(event, line)
        return line

    # --- consumer thread ----------------------------------------------------------------------
    def run(self, stop: threading.Event) -> ExportStats:
        """Export until caught up (or, with ``follow``, until ``stop`` is set)."""
        consumer = Consumer(self._consumer_config())
        writer = threading.Thread(target=self._write_loop, name="siem-writer", daemon=True)
        try:
            self._check_topics(consumer)
            consumer.subscribe(self.s.topic_names, on_assign=self._on_assign, on_revoke=self._on_revoke,
                               on_lost=self._on_lost)
            writer.start()
            deadline = time.monotonic() + self.s.assignment_timeout
            while not stop.is_set() and self._failure is None:
                self._backpressure(consumer)
                want = 1 if self._paused else max(1, min(self.s.batch_size, self.buffer.room()))
                self.buffer.put(self._items(consumer.consume(want, timeout=0.2)))
                self._commit(consumer)
                if not self.s.follow:
                    if self._caught_up():
                        break
                    if not self._owned and time.monotonic() > deadline:
                        raise ConfigError(f"consumer group {self.s.group!r} assigned no partitions within "
                                          f"{self.s.assignment_timeout:.0f}s (is another exporter of this group running?)")
        finally:
            if stop.is_set() or self._failure is not None:
                self._abort.set()
            self._drained.set()
            if writer.is_alive():
                writer.join()
            self._commit(consumer)
            consumer.close()
            self.sink.close()
            self.stats.peak_buffer = self.buffer.peak
        if self._failure is not None:
            raise ExportFailed(self._failure)
        return self.stats

    def _consumer_config(self) -> dict[str, object]:
        return kafka_config(self.s.bootstrap, "reader", {
            "group.id": self.s.group,
            "client.id": f"ledgerstream-export-{self.fmt.name}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            # a crashed exporter's partitions go to its replacement after 10 s, not librdkafka's 45 s
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 2000,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
            "queued.max.messages.kbytes": 16384,
        })

    def _check_topics(self, consumer: Consumer) -> None:
        try:
            known = consumer.list_topics(timeout=15).topics
        except KafkaException as exc:
            raise ConfigError(f"cannot reach Kafka at {self.s.bootstrap}: {exc}") from exc
        missing = [t for t in self.s.topic_names if t not in known]
        if missing:
            raise ConfigError(f"topic(s) {', '.join(missing)} do not exist on {self.s.bootstrap}")

    def _items(self, messages: list[Message]) -> list[Item]:
        items = []
        for msg in messages:
            tp = (msg.topic(), msg.partition())
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._eof.add(tp)
                elif err.fatal():
                    raise ConfigError(f"fatal Kafka error: {err}")
                else:
                    self.log(f"warning: Kafka: {err}")
                continue
            self._eof.discard(tp)
            _, ts_ms = msg.timestamp()
            event = decode_event(msg.value(), Origin(tp[0], tp[1], msg.offset()),
                                 ts_ms * 1000 if ts_ms > 0 else int(time.time() * 1e6), self.s.trusted_verifiers,
                                 self.s.trusted_signers)
            kind = "entry" if isinstance(event, EntryEvent) else "alert"
            if isinstance(event, AlertEvent) and event.kind == UNDECODABLE:
                self.stats.undecodable += 1
            elif isinstance(event, AlertEvent) and event.forged:
                self.stats.forged += 1
            elif isinstance(event, EntryEvent) and event.authenticity == "forged":
                self.stats.forged_entries += 1
            items.append(Item(tp[0], tp[1], msg.offset(), self.render(event), kind))
        return items

    def _backpressure(self, consumer: Consumer) -> None:
        size = self.buffer.size
        if not self._paused and size >= self.buffer.capacity:
            consumer.pause(consumer.assignment())
            self._paused = True
            self.stats.pauses += 1
            self.log(f"sink is slower than the ledger: buffer full ({size} records), consumer paused")
        elif self._paused and size <= self.buffer.capacity // 2:
            consumer.resume(consumer.assignment())
            self._paused = False
            self.log("consumer resumed")

    def _caught_up(self) -> bool:
        return bool(self._owned) and self._owned <= self._eof and self.buffer.idle

    def _commit(self, consumer: Consumer) -> None:
        positions = self.tracker.to_commit(self._owned)
        if not positions:
            return
        offsets = [KafkaTopicPartition(t, p, o) for (t, p), o in positions.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self.tracker.retry(positions)
            self.log(f"warning: offset commit failed (will retry): {exc}")
            return
        for (t, p), o in positions.items():
            self.stats.committed[f"{t}[{p}]"] = o

    def _on_assign(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        if self.s.from_beginning and not self._rewound:
            for tp in partitions:
                tp.offset = OFFSET_BEGINNING
            consumer.assign(partitions)
            self._rewound = True
        new = {(tp.topic, tp.partition) for tp in partitions}
        self._owned |= new
        self._eof -= new
        self._paused = False  # a fresh assignment starts unpaused

    def _on_revoke(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        self._commit(consumer)  # what the sink acknowledged so far stays ours to commit
        self._forget(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        self._forget(partitions)

    def _forget(self, partitions: list[KafkaTopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._owned -= gone
        self._eof -= gone
        self.buffer.discard(gone)  # the new owner reads them again from the committed offset

    # --- writer thread -------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while not self._abort.is_set():
            batch = self.buffer.take(self.s.batch_size, timeout=0.2)
            if not batch:
                if self._drained.is_set():
                    return
                continue
            delivered = self._deliver([item.line for item in batch])
            if delivered:
                self.tracker.acknowledge(batch)
                for item in batch:
                    if item.kind == "entry":
                        self.stats.entries += 1
                    else:
                        self.stats.alerts += 1
            self.buffer.done(batch)
            if not delivered:
                return

    def _deliver(self, lines: list[str]) -> bool:
        delay, failing_since = 0.5, None
        while True:
            try:
                self.sink.write(lines)
            except SinkError as exc:
                now = time.monotonic()
                failing_since = failing_since or now
                if not exc.retriable:
                    self._failure = f"{self.sink.describe()}: {exc}"
                    return False
                if self.s.give_up_after is not None and now - failing_since >= self.s.give_up_after:
                    self._failure = f"gave up after {now - failing_since:.0f}s: {exc}"
                    return False
                self.stats.retries += 1
                self.log(f"sink unavailable: {exc}; retrying in {delay:.1f}s "
                         "(offsets stay at the first unwritten record)")
                if self._abort.wait(delay):
                    return False
                delay = min(delay * 2, self.s.max_backoff)
                continue
            if failing_since is not None:
                self.log(f"sink {self.sink.describe()} is back after {time.monotonic() - failing_since:.1f}s")
            return True
