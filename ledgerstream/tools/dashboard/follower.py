"""Background threads that follow the ledger topics into the dashboard's LedgerView.

Manual assignment from the beginning, ``read_committed``, no consumer group: the
dashboard only reads, commits nothing, and rebuilds its picture on every start. One
thread reads ``entries`` and ``checkpoints`` (the ledger), another ``alerts``, so alerts
appear at once even while a long ledger is still being replayed. With a ledger index
(``indexed.py``) the ledger thread does not run, or stops once the index appears: the
index answers those questions without a replay; it runs again if the index goes away.
"""
from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from ledgerstream.core.config import Topics
from ledgerstream.core.topic_reader import take
from ledgerstream.tools.dashboard.ledger import LedgerView
from ledgerstream.core.kafka_security import kafka_config

AlertCallback = Callable[[dict[str, Any]], None]


class Follower:
    def __init__(self, bootstrap: str, topics: Topics, view: LedgerView, on_alert: AlertCallback,
                 log: Callable[[str], None] = print) -> None:
        self.bootstrap, self.topics, self.view, self.on_alert, self.log = bootstrap, topics, view, on_alert, log
        self._stops = {"ledger": threading.Event(), "alerts": threading.Event()}
        self._switch = threading.Lock()  # stop_ledger / resume_ledger
        self._threads: list[threading.Thread] = []
        #: per thread: "connecting" | "waiting for topics" | "replaying" | "live" | "error: ..."
        #: | "off: <why>" (the ledger's, when the index answers)
        self.state: dict[str, str] = {"ledger": "connecting", "alerts": "connecting"}

    def start(self, *, ledger: bool = True) -> None:
        """Follow the alerts, and the ledger topics unless ``ledger`` is False (an index answers)."""
        if not ledger:
            self.stop_ledger("the ledger index answers")
        for name in ("ledger", "alerts"):
            if not self._stops[name].is_set():
                self._start(name)

    def _start(self, name: str, start: dict[str, int] | None = None) -> None:
        """``start``: offset per topic (default: the beginning)."""
        topics, handler = (([self.topics.entries, self.topics.checkpoints], self._ledger_record) if name == "ledger"
                           else ([self.topics.alerts], self._alert_record))
        thread = threading.Thread(target=self._follow, args=(name, topics, handler, self._stops[name], start or {}),
                                  name=f"follow-{name}", daemon=True)
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def stop_ledger(self, why: str) -> None:
        """Stop following the ledger topics (the thread ends within half a second)."""
        with self._switch:
            if not self._stops["ledger"].is_set():
                self._stops["ledger"].set()
                self.state["ledger"] = f"off: {why}"

    def resume_ledger(self) -> None:
        """Follow the ledger topics again (the index went away), from the records after the
        last ones the view took: it continues where it stopped."""
        with self._switch:
            if not self._stops["ledger"].is_set() or self._stops["alerts"].is_set():
                return  # following already, or the whole follower is stopping
            self._stops["ledger"] = threading.Event()  # the old thread keeps the set one and ends
            self.state["ledger"] = "connecting"
            at = dict(self.view.resume_at)
            self._start("ledger", {self.topics.entries: at["entries"], self.topics.checkpoints: at["checkpoints"]})

    def stop(self) -> None:
        with self._switch:
            for stop in self._stops.values():
                stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _ledger_record(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        if topic == self.topics.entries:
            self.view.add_entry_record(offset, value)
        else:
            self.view.add_checkpoint_record(offset, value)

    def _alert_record(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        alert = self.view.add_alert_record(partition, offset, value)
        if alert is not None:
            self.on_alert(alert)

    def _follow(self, name: str, topics: list[str], handler: Callable[[str, int, int, bytes], None],
                stop: threading.Event, start: dict[str, int]) -> None:
        consumer = Consumer(kafka_config(self.bootstrap, "reader", {
            "group.id": f"ledgerstream-dashboard-{uuid.uuid4().hex}",
            "enable.auto.commit": False, "isolation.level": "read_committed", "enable.partition.eof": True,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
        }))
        try:
            partitions = self._wait_for_topics(name, consumer, topics, stop, start)
            if partitions is None:
                return
            consumer.assign(partitions)
            at_end: set[tuple[str, int]] = set()
            self.state[name] = "replaying"
            while not stop.is_set():
                for msg in take(consumer, 500, 0.5):
                    err = msg.error()
                    key = (msg.topic(), msg.partition())
                    if err is None:
                        at_end.discard(key)
                        handler(msg.topic(), msg.partition(), msg.offset(), msg.value() or b"")
                    elif err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(key)
                        if len(at_end) == len(partitions) and not stop.is_set():
                            self.state[name] = "live"
                    else:
                        self.log(f"dashboard: Kafka error on {key[0]}: {err}")
        except Exception as exc:  # noqa: BLE001  (a dead follower must show on the page, not vanish)
            self.state[name] = f"error: {exc}"
            self.log(f"dashboard: {name} follower stopped: {exc}")
        finally:
            consumer.close()

    def _wait_for_topics(self, name: str, consumer: Consumer, topics: list[str], stop: threading.Event,
                         start: dict[str, int]) -> list[TopicPartition] | None:
        while not stop.is_set():
            try:
                known = consumer.list_topics(timeout=10).topics
            except KafkaException as exc:
                self.state[name] = f"error: cannot reach Kafka at {self.bootstrap}: {exc}"
                time.sleep(2)
                continue
            if all(t in known and known[t].error is None for t in topics):
                return [TopicPartition(t, p, start.get(t, OFFSET_BEGINNING))
                        for t in topics for p in sorted(known[t].partitions)]
            self.state[name] = f"waiting for topics {', '.join(t for t in topics if t not in known)}"
            time.sleep(2)
        return None
