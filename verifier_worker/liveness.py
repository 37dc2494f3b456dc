"""What a verifier observes around it, to report lag and raise ``stalled``.

Blocking confluent-kafka calls (run off the event loop): end offsets of ``entries`` and
``actions``, the signer group's committed offsets on ``actions`` (read without joining the
group) and the seq of the newest committed entry.
"""
from __future__ import annotations

import time

from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from ledgerstream.core.wire import codec
from ledgerstream.core.config import Topics
from ledgerstream.core.errors import DecodeError
from ledgerstream.tools.ledger_reader import last_records
from ledgerstream.core.kafka_security import kafka_config

TAIL = 16  # records read back from the end to find the newest entry


@dataclass(frozen=True)
class Observation:
    entries_end: int
    actions_end: int
    signer_committed: int | None   # None when the signer group has committed nothing yet
    newest_seq: int | None         # seq of the newest committed entry (None: none or unreadable)
    taken_at: float = 0.0          # time.monotonic() (system-wide on Linux) before anything was read


class PipelineObserver:
    def __init__(self, bootstrap: str, topics: Topics, signer_group: str, timeout: float = 5.0) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.timeout = timeout
        self._consumer = Consumer(kafka_config(bootstrap, "verifier", {
            "group.id": signer_group, "enable.auto.commit": False, "isolation.level": "read_committed"}))
        self._newest: tuple[int, int | None] = (-1, None)  # (entries_end, newest seq) cache

    def observe(self) -> Observation:
        """One observation; KafkaException when Kafka is unreachable."""
        c, t = self._consumer, self.timeout
        taken_at = time.monotonic()
        entries_end = c.get_watermark_offsets(TopicPartition(self.topics.entries, 0), timeout=t, cached=False)[1]
        parts = [TopicPartition(self.topics.actions, p)
                 for p in c.list_topics(self.topics.actions, timeout=t).topics[self.topics.actions].partitions]
        actions_end = sum(c.get_watermark_offsets(tp, timeout=t, cached=False)[1] for tp in parts)
        committed = [tp.offset for tp in c.committed(parts, timeout=t)]
        signer = sum(max(o, 0) for o in committed) if any(o >= 0 for o in committed) else None
        return Observation(entries_end, actions_end, signer, self._newest_seq(entries_end), taken_at)

    def _newest_seq(self, entries_end: int) -> int | None:
        """seq of the newest decodable entry among the last few (rogue bytes may follow it)."""
        if self._newest[0] != entries_end:
            seq = None
            for _, raw in reversed(last_records(self.bootstrap, self.topics.entries, TAIL, timeout=self.timeout,
                                                         role="verifier")):
                try:
                    seq = int(codec.decode(raw, expect="LedgerEntry")[1]["seq"])
                    break
                except DecodeError:
                    continue
            self._newest = (entries_end, seq)
        return self._newest[1]

    def close(self) -> None:
        try:
            self._consumer.close()
        except KafkaException:
            pass
