"""The Ledger's background thread: in-memory queue -> spool journal -> Kafka.

``emit`` only appends to a deque (no I/O on the agent's thread). This thread writes each
batch to the spool with one ``write`` (so a kill -9 of the agent loses nothing already
journaled), fsyncs at most every ``FSYNC_INTERVAL`` (so a machine crash loses at most that
window), and pumps the spool into Kafka. It yields the GIL every ``SLICE`` seconds of work
so that the agent's own threads are never held up for long. While the agent keeps emitting,
each yield is a short real sleep (``HANDOFF``): a zero sleep releases the GIL, but this
thread usually takes it back before the agent's waiting thread has even woken up, so the
agent would sit out several slices in a row.

``emit`` wakes the thread only when it is asleep after a quiet spell; while busy it looks at
the queue every ``POLL_WAIT``. Each wake-up hands the GIL over, so waking on every emit
would make the agent's thread wait for the sender's work in the middle of its call.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable

from ledgerstream.producers.delivery import Delivery, Pump
from ledgerstream.producers.spool import Spool

log = logging.getLogger("ledgerstream.producer")

FSYNC_INTERVAL = 0.05
CURSOR_INTERVAL = 0.2
SLICE = 0.00005         # seconds of work between voluntary GIL releases
HANDOFF = 0.002        # sleep after a slice while the agent emits: it keeps the GIL that long
BATCH = 256             # records produced per slice at most
POLL_WAIT = 0.002       # while busy: look at the queue this often (emit does not wake us)
OFFLINE_POLL_WAIT = 0.05  # same while the broker is unreachable (librdkafka retries by itself)
IDLE_AFTER = 0.25       # quiet this long: sleep until the next emit wakes us
IDLE_WAIT = 1.0


class Sender:
    """Owns the spool and the producer of one Ledger; every method but the constructor,
    :meth:`submit`, :meth:`flush`, :meth:`close` and the counters runs on the thread."""

    def __init__(self, spool: Spool, encode: Callable[[Any, bool], bytes],
                 delivery_factory: Callable[[], Delivery] | None, name: str,
                 on_delivered: Callable[[], None] | None = None) -> None:
        self.spool = spool
        self._encode = encode
        self._on_delivered = on_delivered  # called on this thread after Kafka acknowledged records
        self._factory = delivery_factory
        # created here, on the caller's thread: a bad producer setting fails connect() at once
        self._delivery: Delivery | None = delivery_factory() if delivery_factory is not None else None
        self._pump = Pump(spool, counted=True)
        self._queue: deque[tuple[Any, int]] = deque()
        self._queued_bytes = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._sleeping = False
        self._settled = threading.Condition()
        self._stop_by: float | None = None
        self._accepted = 0
        self.journaled = 0
        self.lost = 0  # records the spool could not store (disk full, I/O error)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- caller side ------------------------------------------------------------------------------
    def backlog_bytes(self) -> int:
        """Bytes waiting in memory plus undelivered bytes in the spool (for the size bound)."""
        return self._queued_bytes + self.spool.pending_bytes

    def submit(self, item: Any, size: int) -> None:
        with self._lock:
            self._queue.append((item, size))
            self._queued_bytes += size
            self._accepted += 1
        if self._sleeping:
            self._wake.set()

    def undelivered(self) -> int:
        """Accepted records not yet acknowledged by Kafka (never under-counts: a batch being
        journaled may briefly count twice)."""
        return max(0, self._accepted - self.journaled - self.lost) + self.spool.pending_records

    @property
    def delivered(self) -> int:
        """Records Kafka acknowledged during this run (including ones left by earlier runs)."""
        return self._pump.sent

    @property
    def online(self) -> bool:
        return self._delivery is not None and self._delivery.online

    def flush(self, timeout: float) -> int:
        """Wait until every accepted record is delivered (or journaled, when offline)."""
        deadline = time.monotonic() + max(0.0, timeout)
        self._wake.set()
        with self._settled:
            while True:
                pending = self.undelivered()
                unjournaled = self._accepted - self.journaled - self.lost
                if pending == 0 or not self._thread.is_alive() or (self._factory is None and unjournaled <= 0):
                    return pending
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return pending
                self._settled.wait(min(remaining, 0.05))

    def close(self, timeout: float) -> int:
        """Journal everything, try to deliver until the deadline, then stop; returns undelivered."""
        start = time.monotonic()
        self._stop_by = start + max(0.0, timeout) * 0.8  # leave time for teardown
        self._wake.set()
        self._thread.join(max(0.0, timeout - (time.monotonic() - start)))
        if self._thread.is_alive():
            log.error("ledger sender did not stop within %.1fs; undelivered records stay in %s",
                      timeout, self.spool.path)
        return self.undelivered()

    # --- the thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        last_sync = last_cursor = last_work = time.monotonic()
        dirty = cursor_moved = False
        accepted = self._accepted
        try:
            while True:
                slice_end = time.perf_counter() + SLICE
                moved = self._deliver(slice_end) if self._delivery is not None else 0  # first: the broker's state
                cursor_moved |= moved > 0
                wrote = self._journal_slice(slice_end)
                dirty |= wrote > 0
                now = time.monotonic()
                if dirty and (now - last_sync >= FSYNC_INTERVAL or self._stop_by is not None):
                    self.spool.sync()
                    dirty, last_sync = False, now
                if cursor_moved and now - last_cursor >= CURSOR_INTERVAL:
                    self.spool.save_cursor()
                    cursor_moved, last_cursor = False, now
                if moved and self._on_delivered is not None:
                    self._on_delivered()
                if wrote or moved:
                    last_work = now
                    with self._settled:
                        self._settled.notify_all()
                if self._stop_by is not None and not self._queue and (
                        self.spool.pending_records == 0 or now >= self._stop_by or not self.online):
                    break
                if self._queue:
                    # release the GIL between slices: the agent's threads come first
                    time.sleep(HANDOFF if self._accepted != accepted else 0)
                    accepted = self._accepted
                    continue
                self._idle(dirty, last_sync, last_work)
        except Exception:  # never die silently: the spool keeps what was journaled
            log.exception("ledger sender crashed; undelivered records stay in %s", self.spool.path)
        finally:
            self._shutdown()

    def _idle(self, dirty: bool, last_sync: float, last_work: float) -> None:
        now = time.monotonic()
        busy = self._pump.in_flight or now - last_work < IDLE_AFTER or (
            self._delivery is not None and self.spool.pending_records and not self._pump.waiting_until)
        timeout = (POLL_WAIT if self.online else OFFLINE_POLL_WAIT) if busy else IDLE_WAIT
        if self._pump.waiting_until:
            timeout = min(timeout, self._pump.waiting_until - now)
        if dirty:
            timeout = min(timeout, FSYNC_INTERVAL - (now - last_sync))
        self._sleeping = not busy
        if not self._queue:
            self._wake.wait(max(0.0, timeout))
        self._sleeping = False
        self._wake.clear()

    def _journal_slice(self, end: float) -> int:
        """Encode and append queued records to the spool until ``perf_counter() >= end``
        (at least one record)."""
        if not self._queue:
            return 0
        offline = not self.online
        bodies, taken, size = [], 0, 0
        try:
            while self._queue and (not taken or time.perf_counter() < end):
                item, est = self._queue.popleft()
                taken += 1
                size += est
                bodies.append(self._encode(item, offline))
            start = self.spool.end
            ends = self.spool.append(bodies)
            self.journaled += taken
            if self._delivery is not None:
                self._pump.offer(start, bodies, ends, self._delivery)
        except Exception:
            self.lost += taken
            log.exception("could not journal ledger records in %s; %d are lost", self.spool.path, taken)
        finally:
            with self._lock:
                self._queued_bytes -= size
        return taken

    def _deliver(self, end: float) -> int:
        delivery = self._delivery
        if delivery.fatal:
            delivery.abandon()
            self._pump.rewind()
            self._delivery = delivery = self._factory()
        self._pump.pump(delivery, BATCH, until=end)
        delivery.poll(0)
        moved = self._pump.settle(delivery)
        if moved:
            delivery.online = True
        return moved

    def _shutdown(self) -> None:
        try:
            if self._delivery is not None:
                self._delivery.abandon()
                self._pump.rewind()
        finally:
            try:
                self.spool.close()
            finally:
                with self._settled:
                    self._settled.notify_all()
