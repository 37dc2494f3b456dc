"""The two pieces of state between the Kafka consumer and the sink writer (pure, thread-safe).

``BoundedBuffer`` holds rendered lines that are consumed but not yet written; its
capacity is what the consumer respects before pausing (backpressure). ``OffsetTracker``
records what the sink acknowledged, and so is the only source of offsets to commit:
nothing past an unwritten record is ever committed.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class Item:
    topic: str
    partition: int
    offset: int
    line: str
    kind: str  # "entry" | "alert"

    @property
    def tp(self) -> TopicPartition:
        return (self.topic, self.partition)


class BoundedBuffer:
    """FIFO of items; a batch taken by the writer counts against capacity until ``done``."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("buffer capacity must be at least 1")
        self.capacity = capacity
        self._queue: deque[Item] = deque()
        self._in_flight = 0
        self._cond = threading.Condition()
        self.peak = 0

    @property
    def size(self) -> int:
        with self._cond:
            return len(self._queue) + self._in_flight

    def room(self) -> int:
        return max(0, self.capacity - self.size)

    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._in_flight

    def put(self, items: list[Item]) -> None:
        with self._cond:
            self._queue.extend(items)
            self.peak = max(self.peak, len(self._queue) + self._in_flight)
            self._cond.notify_all()

    def take(self, max_items: int, timeout: float) -> list[Item]:
        """Up to ``max_items`` oldest items (waiting up to ``timeout`` for the first)."""
        with self._cond:
            if not self._queue:
                self._cond.wait(timeout)
            batch = [self._queue.popleft() for _ in range(min(max_items, len(self._queue)))]
            self._in_flight += len(batch)
            return batch

    def done(self, batch: list[Item]) -> None:
        with self._cond:
            self._in_flight -= len(batch)
            self._cond.notify_all()

    def discard(self, partitions: set[TopicPartition]) -> int:
        """Drop queued items of partitions this consumer no longer owns (their new owner re-reads them)."""
        with self._cond:
            kept = deque(item for item in self._queue if item.tp not in partitions)
            dropped = len(self._queue) - len(kept)
            self._queue = kept
            return dropped


class OffsetTracker:
    """Next offset to commit per partition: one past the last record the sink acknowledged."""

    def __init__(self) -> None:
        self._next: dict[TopicPartition, int] = {}
        self._dirty: set[TopicPartition] = set()
        self._lock = threading.Lock()

    def acknowledge(self, batch: list[Item]) -> None:
        with self._lock:
            for item in batch:
                if item.offset + 1 > self._next.get(item.tp, -1):
                    self._next[item.tp] = item.offset + 1
                    self._dirty.add(item.tp)

    def to_commit(self, owned: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Positions acknowledged since the last call, for partitions still owned."""
        with self._lock:
            ready = {tp: self._next[tp] for tp in self._dirty if tp in owned}
            self._dirty -= set(ready)
            return ready

    def retry(self, positions: dict[TopicPartition, int]) -> None:
        """A commit failed: offer these positions again next time."""
        with self._lock:
            self._dirty |= set(positions)
