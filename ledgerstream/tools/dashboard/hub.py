"""Fan-out of server-sent events to every open page (one bounded queue per page).

A page that cannot keep up (its queue is full) is disconnected rather than slowing the
others down; its EventSource reconnects and catches up with ``Last-Event-ID``.
"""
from __future__ import annotations

import asyncio
from typing import Any

QUEUE_SIZE = 512
CLOSE = ("close", None, None)


class Hub:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[tuple[str, Any, int | None]]] = set()

    def subscribe(self) -> asyncio.Queue[tuple[str, Any, int | None]]:
        queue: asyncio.Queue[tuple[str, Any, int | None]] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[str, Any, int | None]]) -> None:
        self._queues.discard(queue)

    @property
    def listeners(self) -> int:
        return len(self._queues)

    def publish(self, name: str, data: Any, event_id: int | None = None) -> None:
        """Queue an event for every page (call on the event loop's thread)."""
        for queue in list(self._queues):
            try:
                queue.put_nowait((name, data, event_id))
            except asyncio.QueueFull:
                self._queues.discard(queue)
                queue.get_nowait()
                queue.put_nowait(CLOSE)

    def close_all(self) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait(CLOSE)
            except asyncio.QueueFull:
                queue.get_nowait()
                queue.put_nowait(CLOSE)
        self._queues.clear()
