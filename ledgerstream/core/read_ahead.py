"""How far a reader of both ledger topics reads ``checkpoints`` ahead of ``entries`` (D48).

A checkpoint waits in the Checker until the entries it covers are fed, and waits whole, in
the Checker's memory and in its exported state. A reader far behind (a rebuilt index, a new
verifier on a ledger of months) fetched the whole ``checkpoints`` topic first: memory and
every state save grew with the distance. One rule for the index follower and verifier
workers: while entries are still coming, a checkpoint-topic record that would leave more
than ``limit`` waiting is not handed to the Checker; it and the rest of that fetch are
dropped, the partition is unassigned (librdkafka discards what it fetched), and it is
assigned again at the first offset not handed over once half of them are settled or the
entries reach their end. Assigning at that offset, not pausing, is what guarantees that no
record is skipped: a paused partition resumes from librdkafka's fetch position. At the
entries' end the bound does not apply, so a checkpoint claiming entries that never come
cannot hold the topic back.
"""
from __future__ import annotations

import logging

from confluent_kafka import Consumer, TopicPartition

log = logging.getLogger("ledgerstream.read_ahead")


class CheckpointReadAhead:
    """The bound for one consumer and its ``checkpoints`` partition. Not thread-safe: call
    it from the thread that polls the consumer."""

    def __init__(self, consumer: Consumer, topic: str, limit: int) -> None:
        if limit < 1:
            raise ValueError("the checkpoint read-ahead must be at least 1")
        self._consumer, self._topic, self.limit = consumer, topic, limit
        self.held = False  # the partition is unassigned
        self.holds = 0

    def admit(self, room: int, entries_at_end: bool) -> bool:
        """For a checkpoint-topic record of a fetch: hand it to the Checker (True), or drop it
        (False) because ``room`` more may not wait; from the first drop the topic is held."""
        if self.held:
            return False  # fetched before the hold: read again from the first offset not handed over
        if room > 0 or entries_at_end:
            return True
        self._consumer.incremental_unassign([TopicPartition(self._topic, 0)])
        self.held = True
        self.holds += 1
        (log.info if self.holds == 1 else log.debug)(
            "%d checkpoint records wait for entries: holding %s back until the entries catch up "
            "(read-ahead %d)", self.limit - room, self._topic, self.limit)
        return False

    def release(self, waiting: int, entries_at_end: bool, next_offset: int) -> bool:
        """Read the topic again from ``next_offset`` (the first record not handed over) once
        at most half the read-ahead waits or the entries are at their end; True if it did."""
        if not self.held or (waiting > self.limit // 2 and not entries_at_end):
            return False
        self._consumer.incremental_assign([TopicPartition(self._topic, 0, next_offset)])
        self.held = False
        return True
