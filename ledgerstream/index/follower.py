"""``ledgerstream index run``: follow ``entries`` and ``checkpoints`` and keep the index.

One confluent-kafka consumer (role ``reader``, ``read_committed``, manual assignment, nothing
committed to Kafka: the index's own database says where it stands) assigned to partition 0
of both topics at the offsets saved with the Checker's state, like a verifier's
``LedgerReader``. Each ``consume`` result is one batch for :class:`IndexCore.feed`,
which commits it on the index's writer thread while the next batch is read and fed
(core.py, "Commit order"). ``--once`` reads to the end offsets seen at
start (docs/decisions.md D21) and exits; otherwise it follows until SIGTERM / SIGINT,
which finish the batch in hand. A watchdog (D23) ends a follower stuck in a Kafka call
with status 4 for its supervisor to restart it.

Exit status: 0 stopped or done, 2 configuration or environment error (no trusted key, the
index locked by another follower, other trust than the index was built with, Kafka or a
topic missing at start, ``--once`` without records or the topics' end for 60 s), 4 watchdog,
70 a batch could not be indexed (the next start resumes from the last commit).
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ledgerstream.core import interpreter, procinfo
from ledgerstream.core.config import CHECKPOINT_READ_AHEAD, CHECKPOINT_WAIT_SECONDS, Topics
from ledgerstream.core.errors import ConfigError
from ledgerstream.core.kafka_security import kafka_config
from ledgerstream.core.process_lock import ProcessLock
from ledgerstream.core.read_ahead import CheckpointReadAhead
from ledgerstream.core.tiles import CHECKPOINT_FILE, LOCK_FILE as TILES_LOCK_FILE
from ledgerstream.core.verify import CHECKPOINTS, ENTRIES, SWITCH_INTERVAL, CheckerConfig, SignaturePool
from ledgerstream.core.watchdog import Watchdog
from ledgerstream.index.core import FindingsHook, IndexCore, Record, log_findings
from ledgerstream.index.db import IndexOutdated
from ledgerstream.index.paths import IndexPaths
from ledgerstream.verifier_worker.store import write_json_atomic

log = logging.getLogger("ledgerstream.index")

EXIT_OK, EXIT_CONFIG, EXIT_BATCH_FAILED = 0, 2, 70
MAX_RECORD_BYTES = 8 * 1024 * 1024
PROGRESS_SECONDS = 5.0
#: what librdkafka fetches ahead and queues (KiB; its default and our old fetch.max.bytes
#: were 64 MiB): a batch needs ~5 MB, the rest is memory held while the follower is behind.
#: Not measured on its own (decision D41)
FETCH_QUEUE_KIB = 32 * 1024
#: ``--once`` gives up (exit 2) when neither records nor the end of the topics come this long
ONCE_IDLE_SECONDS = 60.0
#: consumer group of the index's consumer: under the reader role's ACL prefix (stack/security.py);
#: nothing is ever committed to it
GROUP_PREFIX = "ledgerstream-reader-index-"


@dataclass(frozen=True)
class IndexSettings:
    home: Path
    bootstrap: str
    topics: Topics
    checker: CheckerConfig
    paths: IndexPaths
    once: bool = False
    reindex: bool = False
    batch_size: int = 5000           # records per consume() and per commit at most
    batch_seconds: float = 0.2       # a batch is batch_size records or what arrived within this
    checkpoint_read_ahead: int = CHECKPOINT_READ_AHEAD
    checkpoint_wait_seconds: float = CHECKPOINT_WAIT_SECONDS  # following: see _overdue_before
    threads: int = 1                 # signature-check threads (core/verify/ SignaturePool)
    status_seconds: float = 2.0
    watchdog_seconds: float = 120.0  # 0: no watchdog
    fsync: bool = True
    on_findings: FindingsHook = field(default=log_findings)  # index/alerts.py: findings_hook
    alerts_topic: str | None = None  # where on_findings publishes (None: only logged)


def reset_index(paths: IndexPaths) -> None:
    """``--reindex``: delete the database and the tiles (only what the index writes there)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{paths.db}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(paths.history_dir, ignore_errors=True)
    tiles = paths.tiles_dir
    if tiles.is_dir():
        unknown = [p.name for p in tiles.iterdir() if p.name not in ("tile", CHECKPOINT_FILE, TILES_LOCK_FILE)
                   and not p.name.startswith(".")]
        if unknown:
            raise ConfigError(f"{tiles} holds files the index did not write ({', '.join(sorted(unknown)[:5])}): "
                              "not deleting it; remove it by hand or pass another --tiles-dir")
        shutil.rmtree(tiles / "tile", ignore_errors=True)
        (tiles / CHECKPOINT_FILE).unlink(missing_ok=True)


class IndexFollower:
    def __init__(self, settings: IndexSettings) -> None:
        self.s = settings
        self.stop_requested = False
        self.core: IndexCore | None = None
        self.started_at = time.time()
        self._roles = {settings.topics.entries: ENTRIES, settings.topics.checkpoints: CHECKPOINTS}
        self._at_eof = {ENTRIES: False, CHECKPOINTS: False}
        #: committed records not read yet per topic, as of the last fetch (None: not known yet)
        self._behind: dict[str, int | None] = {ENTRIES: None, CHECKPOINTS: None}
        self._read_ahead: CheckpointReadAhead | None = None  # with the consumer
        self._rate: deque[tuple[float, int]] = deque(maxlen=30)
        #: (monotonic time, the Checker's checkpoints offset from then on), oldest first
        self._handed: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])
        self._status_at = 0.0
        self._progress_at = 0.0
        self._progress_size = 0

    # --- lifecycle -------------------------------------------------------------------------
    def run(self) -> int:
        s = self.s
        lock = ProcessLock(s.paths.lock, "index follower")  # one writer per index
        lock.acquire()
        pool = ThreadPoolExecutor(s.threads, thread_name_prefix="sigcheck")
        consumer: Consumer | None = None
        watchdog: Watchdog | None = None
        try:
            if s.reindex:
                log.info("reindex: deleting %s and the tiles in %s", s.paths.db, s.paths.tiles_dir)
                reset_index(s.paths)
            interpreter.tune(SWITCH_INTERVAL)  # the signature pool's thread gets the GIL back quickly
            try:
                self.core = self._open_core(pool)
            except IndexOutdated as exc:  # a derived view: rebuild it rather than stop
                log.warning("rebuilding the index from Kafka: %s", exc)
                reset_index(s.paths)
                self.core = self._open_core(pool)
            core = self.core
            self._progress_size, self._progress_at = core.indexed_size, time.monotonic()
            consumer, ends = self._open_consumer(core.next_offset)
            log.info("index: resuming at seq %d (offsets %s), tiles at %d in %s, database %s%s", core.indexed_size,
                     core.next_offset, core.tiles_size, s.paths.tiles_dir, s.paths.db,
                     f", reading to offsets {ends}" if ends else ", following")
            if s.watchdog_seconds:
                watchdog = Watchdog(s.watchdog_seconds, "index follower").start()
            self._write_status(force=True)
            last_data = time.monotonic()
            while not self.stop_requested:
                if watchdog is not None:
                    watchdog.beat("reading records")
                batch = self._poll(consumer)
                if batch or ends is None:
                    last_data = time.monotonic()
                elif time.monotonic() - last_data > ONCE_IDLE_SECONDS:
                    raise ConfigError(f"--once: no record and no end of {s.topics.entries} / {s.topics.checkpoints} "
                                      f"within {ONCE_IDLE_SECONDS:.0f}s (Kafka unreachable?)")
                if batch:
                    if watchdog is not None:
                        watchdog.beat("indexing a batch")
                    if not self._index(core.feed, batch):  # committed while the next batch is read
                        return EXIT_BATCH_FAILED
                self._report()
                done = ends is not None and self._done(consumer, ends)
                # --once: the checkpoints' end was read before the entries' (D21), so every entry a
                # checkpoint below it covers is below the entries' end, and fed now
                overdue = ends[CHECKPOINTS] if done else self._overdue_before() if ends is None else 0
                if overdue and not self._index(core.expire_checkpoints, overdue):
                    return EXIT_BATCH_FAILED
                if done:
                    break
            if not self._index(core.drain):
                return EXIT_BATCH_FAILED
            self._write_status(force=True, running=False)
            log.info("index: %s at seq %d, tiles at %d, %d foreign records",
                     "done" if ends is not None and not self.stop_requested else "stopped",
                     core.indexed_size, core.tiles_size, core.foreign)
            return EXIT_OK
        finally:
            if watchdog is not None:
                watchdog.stop()
            if consumer is not None:
                consumer.close()
            if self.core is not None:
                self.core.close()
            pool.shutdown(wait=False)
            lock.release()

    @staticmethod
    def _index(step: Callable[..., Any], *args: Any) -> bool:
        """One indexing step; False (logged) if it failed: the next start resumes from the last commit."""
        try:
            step(*args)
        except ConfigError:
            raise
        except Exception:
            log.exception("index: a batch could not be indexed; exiting (the next start resumes from the last commit)")
            return False
        return True

    def _overdue_before(self) -> int:
        """Following: at the entries' end, the checkpoints offset handed to the Checker
        ``checkpoint_wait_seconds`` ago (a verifier's rule, VerifierRuntime.assess): records
        below it that still wait claim entries the ledger lacks. 0 when there is none."""
        assert self.core is not None
        now, offset, marks = time.monotonic(), self.core.next_offset[CHECKPOINTS], self._handed
        if offset != marks[-1][1]:
            marks.append((now, offset))
        moment = now - self.s.checkpoint_wait_seconds
        while len(marks) > 1 and marks[1][0] <= moment:  # older marks are never asked for: bounded
            marks.popleft()
        if not self._at_eof[ENTRIES] or not self.core.checker.queued_checkpoints:
            return 0
        return marks[0][1] if marks[0][0] <= moment else 0

    def request_stop(self, *_: Any) -> None:
        self.stop_requested = True

    # --- Kafka -----------------------------------------------------------------------------
    def _open_consumer(self, next_offset: dict[str, int]) -> tuple[Consumer, dict[str, int] | None]:
        s = self.s
        consumer = Consumer(kafka_config(s.bootstrap, "reader", {
            "group.id": f"{GROUP_PREFIX}{uuid.uuid4().hex}",
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "isolation.level": "read_committed", "enable.partition.eof": True,
            "max.partition.fetch.bytes": 2 * MAX_RECORD_BYTES, "fetch.max.bytes": FETCH_QUEUE_KIB * 1024,
            "queued.max.messages.kbytes": FETCH_QUEUE_KIB, "fetch.wait.max.ms": 100,
        }))
        try:
            ends: dict[str, int] = {}
            for topic in (s.topics.checkpoints, s.topics.entries):  # checkpoints first: their entries are older
                try:
                    md = consumer.list_topics(topic, timeout=30)
                except KafkaException as exc:
                    raise ConfigError(f"cannot reach Kafka at {s.bootstrap}: {exc}") from exc
                tmd = md.topics.get(topic)
                if tmd is None or tmd.error is not None:
                    raise ConfigError(f"topic {topic!r} does not exist on {s.bootstrap}")
                try:
                    ends[self._roles[topic]] = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30,
                                                                              cached=False)[1]
                except KafkaException as exc:
                    raise ConfigError(f"cannot read the end of {topic} on {s.bootstrap}: {exc}") from exc
            consumer.assign([TopicPartition(topic, 0, next_offset[role]) for topic, role in self._roles.items()])
            self._read_ahead = CheckpointReadAhead(consumer, s.topics.checkpoints, s.checkpoint_read_ahead)
        except BaseException:
            consumer.close()
            raise
        return consumer, (ends if s.once else None)

    def _poll(self, consumer: Consumer) -> list[Record]:
        """One batch, checkpoint-topic records within the read-ahead (core/read_ahead.py, D48):
        a follower far behind reads each checkpoint near its entries, so memory and commits
        stay the same size."""
        ahead, core = self._read_ahead, self.core
        assert ahead is not None and core is not None
        ahead.release(self._queued(), self._at_eof[ENTRIES], core.next_offset[CHECKPOINTS])
        out: list[Record] = []
        room = ahead.limit - self._queued()
        for msg in consumer.consume(self.s.batch_size, self.s.batch_seconds):
            err = msg.error()
            role = self._roles.get(msg.topic())
            if role == CHECKPOINTS and (ahead.held or err is None) and not ahead.admit(room, self._at_eof[ENTRIES]):
                self._at_eof[CHECKPOINTS] = False
                continue
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    if role is not None:
                        self._at_eof[role] = True
                else:
                    log.warning("reading the ledger: %s", err)
                continue
            if role is None:
                continue
            self._at_eof[role] = False
            room -= role == CHECKPOINTS
            out.append((role, msg.offset(), msg.value() or b""))
        for topic, role in self._roles.items():  # what the last fetch saw: no request to the broker
            if role == CHECKPOINTS and ahead.held:
                continue
            tp = TopicPartition(topic, 0)
            end = consumer.get_watermark_offsets(tp, cached=True)[1]  # read_committed: the last stable offset
            position = consumer.position([tp])[0].offset
            if end >= 0 and position >= 0:
                self._behind[role] = max(0, end - position)
        return out

    @property
    def checkpoint_holds(self) -> int:
        return self._read_ahead.holds if self._read_ahead is not None else 0

    def _queued(self) -> int:
        assert self.core is not None
        return self.core.checker.queued_checkpoints

    def _done(self, consumer: Consumer, ends: dict[str, int]) -> bool:
        """Every record committed before the end offsets seen at start is indexed."""
        assert self.core is not None
        if self._read_ahead is not None and self._read_ahead.held:
            return False
        next_offset = self.core.next_offset
        for topic, role in self._roles.items():
            if self._at_eof[role] or next_offset[role] >= ends[role]:
                continue
            if consumer.position([TopicPartition(topic, 0)])[0].offset >= ends[role]:
                continue
            return False
        return True

    # --- reporting -------------------------------------------------------------------------
    def _report(self) -> None:
        now = time.monotonic()
        if now - self._progress_at >= PROGRESS_SECONDS:
            core = self.core
            assert core is not None
            if core.indexed_size != self._progress_size:
                rate = (core.indexed_size - self._progress_size) / (now - self._progress_at)
                log.info("index: seq %d indexed (%.0f entries/s), tiles at %d, %d foreign, offsets %s",
                         core.indexed_size, rate, core.tiles_size, core.foreign, core.next_offset)
            self._progress_at, self._progress_size = now, core.indexed_size
        self._write_status()

    def _open_core(self, pool: ThreadPoolExecutor) -> IndexCore:
        s = self.s
        return IndexCore(s.paths, s.checker, on_findings=s.on_findings, signatures=SignaturePool(pool, s.threads),
                         fsync=s.fsync, topics={ENTRIES: s.topics.entries, CHECKPOINTS: s.topics.checkpoints})

    def _write_status(self, *, force: bool = False, running: bool = True) -> None:
        now = time.monotonic()
        if not force and now - self._status_at < self.s.status_seconds:
            return
        self._status_at = now
        core = self.core
        assert core is not None
        self._rate.append((now, core.indexed_size))
        first_t, first_n = self._rate[0]
        rate = (core.indexed_size - first_n) / (now - first_t) if now > first_t else 0.0
        findings = core.findings_by_kind()
        write_json_atomic(self.s.paths.status, {
            "pid": os.getpid(), "running": running, "mode": "once" if self.s.once else "follow",
            "indexed_size": core.indexed_size, "tiles_size": core.tiles_size, "foreign": core.foreign,
            "findings": findings, "next_offset": core.next_offset, "caught_up": all(self._at_eof.values()),
            "records_behind": dict(self._behind), "checkpoint_holds": self.checkpoint_holds,
            "entries_per_second": round(rate, 1), "started_at": self.started_at, "updated_at": time.time(),
            "tiles_dir": str(self.s.paths.tiles_dir), "db": str(self.s.paths.db),
            "topics": {ENTRIES: self.s.topics.entries, CHECKPOINTS: self.s.topics.checkpoints},
            "alerts_topic": self.s.alerts_topic,
        })


def run_follower(settings: IndexSettings) -> int:
    """Run in the foreground with SIGTERM / SIGINT handlers that stop after the current batch."""
    procinfo.fix_mmap_threshold()  # freed large blocks leave at once, as in the signer (decisions D40, D41)
    follower = IndexFollower(settings)
    previous = {sig: signal.signal(sig, follower.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return follower.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
