"""The transactional consume-transform-produce loop (exactly-once).

The textbook confluent-kafka loop: ``init_transactions`` once (fencing any zombie with
the same ``transactional.id``), then per batch ``begin_transaction``, produce entries,
dead letters, checkpoints and anchors, ``send_offsets_to_transaction``,
``commit_transaction``. On an abortable error the batch is aborted and the in-memory
state is rebuilt from what is committed; on a fatal one the process exits and its
supervisor (or the standby) takes over. Sequenced -> integrated (in the Merkle tree) ->
published (in a signed checkpoint) -> anchored (RFC 3161 token) are distinct states.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledgerstream.core import note, procinfo, records
from ledgerstream.core.alerting import encode_alert
from ledgerstream.core.alert_signature import SIGNER_VERIFIER_ID
from ledgerstream.core.errors import ConfigError, DecodeError, InvalidSignature
from ledgerstream.core.wire import codec
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.core.topic_reader import read_keyed, read_partition, take
from ledgerstream.core.verify import Finding, Kind
from ledgerstream.signer_worker import snapshots
from ledgerstream.core.watchdog import Watchdog
from ledgerstream.signer_worker.anchoring import Anchorer
from ledgerstream.signer_worker.leadership import LeaderLease
from ledgerstream.signer_worker.sequencer import Outcome, Sequencer, Source, now_us
from ledgerstream.signer_worker.settings import SignerSettings
from ledgerstream.signer_worker.signing import SigningThread
from ledgerstream.signer_worker.state import LedgerState
from ledgerstream.core.kafka_security import kafka_config

log = logging.getLogger("ledgerstream.signer")


def producer_config(s: SignerSettings) -> dict[str, Any]:
    """The signer's transactional producer settings (also the Kafka floor relay's,
    tools/kafka_relay.py, so the floor it measures is this client's)."""
    conf = kafka_config(s.bootstrap, "signer", {
        "transactional.id": s.txn_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.max.bytes": 8 * 1024 * 1024,
        # produce requests stay below the broker's G1 humongous-object size (half a 1 MB
        # region): larger ones cost a small-heap broker several times the CPU per record
        "batch.size": 256 * 1024,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 2_000_000,
        "transaction.timeout.ms": 60000,
        # A transaction that begins right after the previous commit is refused with
        # CONCURRENT_TRANSACTIONS until the broker has written that commit's markers
        # (a few ms); librdkafka retries after retry.backoff.ms, 100 by default, which
        # made it the largest part of a paced entry's latency (docs/benchmarks-signer.md).
        "retry.backoff.ms": 5,
    })
    conf.update(s.extra_producer)
    return conf


def consumer_config(s: SignerSettings) -> dict[str, Any]:
    """The signer's read_committed consumer of ``actions`` (offsets go in its transactions)."""
    return kafka_config(s.bootstrap, "signer", {
        "group.id": s.group,
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 16 * 1024 * 1024,
    })


def assign_actions(consumer: Consumer, topic: str) -> None:
    """Assign every partition of ``topic``, each from the group's committed offset."""
    md = consumer.list_topics(topic, timeout=30)
    parts = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
    committed = consumer.committed(parts, timeout=30)
    # A partition the group never committed starts at its first record. Named as an
    # offset, not left to auto.offset.reset: librdkafka's lookup of that logical offset
    # held the partition's first record back for a second, on every takeover (D39).
    consumer.assign([tp if tp.offset >= 0 else TopicPartition(tp.topic, tp.partition, consumer.get_watermark_offsets(
        TopicPartition(tp.topic, tp.partition), timeout=30, cached=False)[0]) for tp in committed])


class Fenced(Exception):
    """Another signer instance took over; this one must stop writing."""


#: how often a standby adopts what the leader committed since (its takeover reads at most this much)
FOLLOW_EVERY_S = 1.0

#: signing messages are handed to the signing thread this many at a time (fewer lock
#: round trips and wake-ups; the thread signs chunks of up to SigningThread.max_chunk)
SUBMIT_EVERY = 16

Produce = Callable[..., None]  # producer.produce(topic, value, key=None), or a buffer's stand-in


@dataclass
class _Ahead:
    """The next batch, consumed and sequenced while the current transaction is finished and
    committed (a backlog is being drained; entry signing on the signing thread), so the
    signing thread does not wait for the loop between transactions.
    Nothing of it is produced before its own transaction begins; if the current transaction
    aborts, it is dropped with the rest of the in-memory state (``recover``)."""

    consumed: int  # actions taken from the consumer
    #: its records in order, to produce first thing in its transaction: dead letters,
    #: checkpoints, and entries not signed on the signing thread
    records: list[tuple[str, bytes, bytes | None]] = field(default_factory=list)
    signed: list[Outcome] = field(default_factory=list)  # entries whose signatures are in, in seq order
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("entries", "dead_letters", "duplicates", "checkpoints", "anchors"), 0))
    published: list[tuple[int, bytes]] = field(default_factory=list)  # its checkpoints

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.records.append((topic, value, key))


class SignerWorker:
    def __init__(self, settings: SignerSettings, key: PrivateKey, note_key: Ed25519PrivateKey | None = None) -> None:
        self.s = settings
        self.key = key
        self.pub = key.public_key()
        #: signs each checkpoint body as a standard C2SP note (Ed25519) besides the ML-DSA-65 signature
        self.note_signer = note.NoteSigner(settings.origin, note.ED25519, ed25519=note_key) if note_key else None
        self.state = LedgerState(settings.dedup_horizon)
        self.seq: Sequencer | None = None
        self._sealing = False  # set with self.seq: Sequencer.seal first
        self.anchorer = Anchorer(settings.tsa_urls, settings.tsa_policy)
        self.role = "starting"
        # no progress for this long (a Kafka call that never returns): exit, be restarted
        self.watchdog = Watchdog(settings.watchdog_seconds or math.inf, "signer")
        self.counters = {"entries": 0, "dead_letters": 0, "duplicates": 0, "checkpoints": 0,
                         "anchors": 0, "aborts": 0}
        self.last_checkpoint_time = time.monotonic()
        self.started = time.time()
        #: seconds from the process's start (or, for a standby, from winning the lease) until it
        #: was ready to commit its first transaction: recovered, transactional, assigned
        self.recovery_s: float | None = None
        self._last_status = 0.0
        # entry mode, liboqs with the sign_many shim: signatures are made on a dedicated
        # thread while this one sequences, encodes and produces (signing.py); else inline
        self.sign_ahead = settings.signing_mode == "entry" and key.sign_many_releases_gil
        self.signing: SigningThread | None = None
        self._unsigned: deque[Outcome] = deque()  # sequenced, waiting for their signatures
        self._to_sign: list[bytes] = []  # signing messages of the last of _unsigned, not yet handed over
        self._current_left = 0  # how many of _unsigned (the first ones) belong to the open transaction
        self._ahead: _Ahead | None = None  # the next batch, sequenced ahead (see _iteration)
        self.snapshots = snapshots.SnapshotWriter(settings.snapshot_every, settings.snapshot_ms / 1000,
                                                  settings.dedup_horizon)
        #: why snapshots are off ("" when on): none configured, or no signer-state topic
        self.snapshots_off = "" if settings.snapshot_every and settings.topics.signer_state else "not configured"
        self.recovered_from: dict[str, Any] = {}  # how the latest recovery started (status)
        self._alerts: list[Finding] = []  # found during recovery, published in the next transaction
        self._probe: Consumer | None = None  # see _end_probe
        #: next offset to read per topic (entries, checkpoints, signer_state) when following
        self._pos: dict[str, int] = {"entries": 0, "checkpoints": 0, "signer_state": 0}
        #: the latest verified snapshot (record, key) the snapshot writer continues from
        self._snapshot_base: tuple[dict[str, Any], str] | None = None
        self._warm = False  # a standby whose state follows the leader's commits

    # --- set-up ------------------------------------------------------------------------------
    def _producer(self) -> Producer:
        return Producer(producer_config(self.s))

    def _consumer(self) -> Consumer:
        return Consumer(consumer_config(self.s))

    def _end_probe(self) -> Consumer:
        """A consumer only for end offsets that include the open transaction's records
        (a read_committed consumer's end offset stops before it)."""
        return Consumer(kafka_config(self.s.bootstrap, "signer", {
            "group.id": f"{self.s.group}.offsets", "isolation.level": "read_uncommitted",
            "enable.auto.commit": False}))

    def recover(self) -> None:
        """Rebuild seq, chain heads, Merkle tree, dedup index and anchor backlog: from the
        latest snapshot that verifies plus the tail after it, else from the whole ledger."""
        self._recover()
        # the snapshot's chunks and the replayed records are garbage now that _recover returned
        procinfo.release_free_memory()

    def _recover(self) -> None:
        t0 = time.monotonic()
        self.state = LedgerState(self.s.dedup_horizon)
        self._pos = {"entries": 0, "checkpoints": 0, "signer_state": 0}
        base, found = self._adoptable_snapshot()
        self._alerts = found
        if self.snapshots_off:  # no snapshot will ask for event ids
            self.state.events.forget_ids()
        if base is not None:
            cand, events = base
            self.state.adopt(cand.record, events)
            self._pos.update(entries=cand.record["entries_offset"] + 1, checkpoints=cand.record["checkpoints_offset"])
        self._snapshot_base = (base[0].record, base[0].key) if base else None
        self._replay_tail()
        self.recovered_from = {"snapshot_seq": base[0].record["next_seq"] if base else None,
                               "tail_entries": self.state.next_seq - (base[0].record["next_seq"] if base else 0),
                               "snapshots_rejected": len(found), "warm": False}
        self.seq = Sequencer(self.state, self.key, signing_mode=self.s.signing_mode,
                             max_record_bytes=self.s.max_record_bytes, defer_signing=self.sign_ahead)
        #: Sequencer.seal first (checkpoint mode; a per-entry token is added to the entry dict)
        self._sealing = self.s.signing_mode == "checkpoint" and self.s.timestamp_mode != "entry"
        log.info("recovered %d entries (%s), checkpoint at %d, %d unanchored, in %.2fs",
                 self.state.next_seq, "from a snapshot" if base else "full replay", self.state.checkpoint_size,
                 len(self.state.unanchored), time.monotonic() - t0)

    def _replay_tail(self) -> None:
        """Adopt what was committed on ``checkpoints`` and ``entries`` after ``self._pos``."""
        self.state.recover(self._tail("entries", "recovering from entries"),
                           self._tail("checkpoints", "recovering from checkpoints"), self.pub)

    def _tail(self, name: str, doing: str) -> Iterator[tuple[int, bytes]]:
        topic = getattr(self.s.topics, name)
        for offset, raw in self._beating(read_partition(self.s.bootstrap, topic, start=self._pos[name] or None,
                                                        role="signer"), doing):
            self._pos[name] = offset + 1
            yield offset, raw

    def _ready_to_sign(self) -> None:
        """Before signing on: the anchor backlog handed over, snapshots continuing from the
        latest one known (a standby's state followed the leader since its recovery)."""
        for size, body in sorted(self.state.unanchored.items()):
            self.anchorer.submit(size, body)
        base = self._snapshot_base
        self.snapshots.restart_from(base[0] if base else None, base[1] if base else None)
        self.state.events.release_ids(self.snapshots.covered)

    # --- warm standby ----------------------------------------------------------------------------
    def _stand_by(self, lease: LeaderLease, stop: threading.Event) -> bool:
        """Wait for the lease while following the leader: the state is recovered once, then
        every FOLLOW_EVERY_S what the leader committed since is adopted, so that a takeover
        only reads the last moments (docs/signer.md, "Hot standby")."""
        # the lease is polled on a thread of its own: the rebalance that hands it over is seen
        # within a poll interval, not after a catch-up that happens to be reading the topics
        settled, leaving = threading.Event(), threading.Event()
        refused: list[ConfigError] = []  # the lease can never be won (LeaderLease.poll)

        def wait_for_lease() -> None:
            try:
                while not (stop.is_set() or leaving.is_set() or lease.held):
                    lease.poll(0.05)
            except ConfigError as exc:
                refused.append(exc)
            settled.set()

        poller = threading.Thread(target=wait_for_lease, name="lease-wait", daemon=True)
        poller.start()
        try:
            while not settled.is_set():
                try:
                    if self._warm:
                        self._catch_up()
                    else:
                        self.recover()
                        self._warm = True
                except (ConfigError, KafkaException) as exc:  # e.g. the broker is down: start over later
                    log.warning("standby: cannot follow the ledger (%s); will recover again", exc)
                    self._warm = False
                self.write_status()
                settled.wait(FOLLOW_EVERY_S)
        finally:
            leaving.set()  # on an error too: the poller never outlives the wait
            poller.join()
        if refused:
            raise refused[0]
        return lease.held and not stop.is_set()

    def _catch_up(self) -> int:
        """Adopt what the leader committed since the last call (entries, checkpoints and the
        latest snapshot's dedup chunks); the number of entries adopted."""
        before = self.state.next_seq
        self._replay_tail()
        if self.snapshots_off:
            return self.state.next_seq - before
        for offset, key, value in read_keyed(self.s.bootstrap, self.s.topics.signer_state,
                                             start=self._pos["signer_state"] or None, role="signer"):
            self._pos["signer_state"] = offset + 1
            if key and key.startswith(b"snapshot/") and value:
                try:
                    _, rec = codec.decode(value, expect="SignerSnapshot")
                    if rec["key_id"] == self.pub.key_id and rec["origin"] == self.s.origin:
                        self.pub.verify(bytes(rec["signature"]), snapshots.signing_message(rec))
                        self._snapshot_base = (rec, key.decode())
                        chunks = rec["dedup_chunks"]  # the leader wrote these events' ids: not needed here
                        self.state.events.release_ids(chunks[-1]["first_seq"] + chunks[-1]["count"] if chunks else 0)
                except (DecodeError, InvalidSignature):
                    continue  # the leader's next start refuses it with an alert
        return self.state.next_seq - before

    def _adoptable_snapshot(self) -> tuple[tuple[snapshots.Candidate, list[Columns]] | None, list[Finding]]:
        """The newest snapshot on signer-state that passes snapshots.check, and a finding
        for each newer one that did not."""
        if self.snapshots_off and self.snapshots_off != "no signer-state topic":
            return None, []
        topic = self.s.topics.signer_state
        self.watchdog.beat("reading snapshots")
        try:
            store = snapshots.read_store(self._tracked_keyed(topic))
        except ConfigError as exc:
            if "does not exist" not in str(exc):
                raise
            log.warning("snapshots off: %s (every start replays the whole ledger)", exc)
            self.snapshots_off = "no signer-state topic"
            return None, []
        self.snapshots_off = ""
        found = []
        for cand in store.candidates:
            try:
                events = snapshots.check(cand, store.chunks, self.pub, self.s.origin, self._entry_at)
            except snapshots.SnapshotError as exc:
                log.error("not adopting snapshot %s at offset %d: %s", cand.key, cand.offset, exc)
                found.append(Finding.make(Kind.SNAPSHOT_REJECTED, f"signer snapshot not adopted: {exc}",
                                          topic=topic, offset=cand.offset, key=cand.key, reason=exc.reason))
                continue
            return (cand, events), found
        return None, found

    def _tracked_keyed(self, topic: str) -> Iterator[tuple[int, bytes | None, bytes | None]]:
        for offset, key, value in read_keyed(self.s.bootstrap, topic, role="signer"):
            self._pos["signer_state"] = offset + 1
            yield offset, key, value

    def _entry_at(self, offset: int) -> bytes | None:
        """The committed entries record at exactly ``offset``, if there is one."""
        if offset < 0:
            return None
        reader = read_partition(self.s.bootstrap, self.s.topics.entries, start=offset, batch=1, role="signer")
        try:
            first = next(reader, None)
        finally:
            reader.close()
        return first[1] if first is not None and first[0] == offset else None

    def _beating(self, records: Iterable[Any], doing: str) -> Iterator[Any]:
        """``records``, telling the watchdog that reading them makes progress."""
        self.watchdog.beat(doing)
        for n, record in enumerate(records, 1):
            if not n % 4096:
                self.watchdog.beat(doing)
            yield record
        self.watchdog.beat(doing)

    def _assign(self, consumer: Consumer) -> None:
        assign_actions(consumer, self.s.topics.actions)

    # --- the loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> int:
        lease = None
        if self.s.leader_election:
            lease = LeaderLease(self.s.bootstrap, self.s.topics.checkpoints, f"{self.s.group}.leader",
                                self.s.session_timeout_ms)
            lease.start()
            self.role = "standby"
            self.write_status(force=True)
            log.info("standby: following the ledger, waiting for the leadership lease")
            if not self._stand_by(lease, stop):
                lease.close()
                return 0
        self.role = "leader"
        since = time.time() if lease is not None else (procinfo.started_at(os.getpid()) or self.started)
        self.watchdog.start()
        if self.sign_ahead:
            self.signing = SigningThread(self.key, nice=self.s.signing_nice)
            if self.signing.priority_error:
                log.warning("%s; under CPU contention entry signing will be slower", self.signing.priority_error)
        producer = self._producer()
        self.watchdog.beat("init_transactions")
        producer.init_transactions(60)  # fences the old leader: what it committed is final
        if self._warm:
            # snapshot_seq and snapshots_rejected: of the standby's first recovery
            self.recovered_from = {**self.recovered_from, "tail_entries": self._catch_up(), "warm": True}
        else:
            self.recover()
        self._ready_to_sign()
        consumer = self._consumer()
        self._assign(consumer)
        self.anchorer.start()
        self.recovery_s = round(time.time() - since, 3)
        log.info("ready to sign after %.2f s (next seq %d)", self.recovery_s, self.state.next_seq)
        self.write_status(force=True)
        try:
            while not stop.is_set():
                if lease is not None:
                    lease.poll(0)
                    if lease.lost:
                        raise Fenced("leadership lease lost")
                self._iteration(producer, consumer)
            return 0
        except Fenced as exc:
            log.error("stopping: %s", exc)
            return 3
        finally:
            self.watchdog.stop()
            self.anchorer.stop()
            if self.signing is not None:
                self.signing.close()
            self.role = "stopped"
            self.write_status(force=True)
            consumer.close()
            if self._probe is not None:
                self._probe.close()
            if lease is not None:
                lease.close()
            try:
                producer.flush(5)
            except KafkaException:  # a fenced (fatal) producer has nothing left to deliver
                pass

    def _checkpoint_due(self) -> bool:
        pending = self.state.tree.size - self.state.checkpoint_size
        if pending <= 0:
            return False
        return (pending >= self.s.checkpoint_every
                or (time.monotonic() - self.last_checkpoint_time) * 1000 >= self.s.checkpoint_ms)

    def _iteration(self, producer: Producer, consumer: Consumer) -> None:
        """One transaction. While a backlog drains and entries are signed on the signing
        thread, the next batch is consumed and sequenced (its signatures started) before this
        transaction's last signatures are in and it is committed; it is produced in the next
        transaction (``_Ahead``)."""
        self.watchdog.beat("consuming actions")
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            msgs = [m for m in self._take(consumer) if self._usable(m)]
            consumed = len(msgs)
        else:
            msgs, consumed = [], ahead.consumed  # sequenced already
        producer.poll(0)
        tokens = self.anchorer.ready()
        if not consumed and not tokens and not self._checkpoint_due() and not self._alerts and not self._snapshot_due(0):
            self.write_status()
            return
        published: list[tuple[int, bytes]] = ahead.published if ahead is not None else []
        counts = ahead.counts if ahead is not None else dict.fromkeys(
            ("entries", "dead_letters", "duplicates", "checkpoints", "anchors"), 0)
        try:
            self.watchdog.beat("producing a transaction")
            producer.begin_transaction()
            if ahead is not None:
                for topic, value, key in ahead.records:
                    producer.produce(topic, value, key=key)
                for outcome in ahead.signed:
                    self._produce_entry(producer.produce, outcome)
            self._current_left = len(self._unsigned)  # the rest of the ahead batch, if any
            for m in msgs:
                self._handle(producer, producer.produce, m, counts, published)
            if self._checkpoint_due():
                published.append(self._checkpoint(producer.produce))
                counts["checkpoints"] += 1
            for t in tokens:
                producer.produce(self.s.topics.checkpoints, codec.encode("TimestampAnchor", {
                    "tree_size": t.tree_size, "body_hash": records.sha256(t.body),
                    "timestamp": {"tsa": t.tsa, "token": t.token}, "created_at": now_us()}))
                counts["anchors"] += 1
            alerts, self._alerts = self._alerts, []
            for finding in alerts:
                key, value = encode_alert(finding, SIGNER_VERIFIER_ID, now_us(), self.key)
                producer.produce(self.s.topics.alerts, value, key=key)
            # the state as of this transaction's last entry (before the next batch is sequenced)
            had_entries = counts["entries"] > 0
            snap = self._capture_snapshot(published, tokens) if self._snapshot_due(counts["entries"]) else None
            if snap is not None:
                for key, value in snap.chunk_records():
                    producer.produce(self.s.topics.signer_state, value, key=key)
            positions = consumer.position(consumer.assignment()) if consumed else None
            if self.sign_ahead and consumed >= self.s.batch_size:  # a backlog: start on the next batch now
                self._sequence_ahead(producer, consumer)
            if self._to_sign:
                self._submit(producer)
            while self._current_left:  # every entry of the batch, in seq order, as its chunk is signed
                self._produce_signed(producer, wait=True)
            if snap is not None:
                snap = self._produce_snapshot(producer, snap, had_entries)
            if positions is not None:
                self.watchdog.beat("send_offsets_to_transaction")
                producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
            self.watchdog.beat("commit_transaction")
            producer.commit_transaction(60)
        except KafkaException as exc:
            self._on_txn_error(exc, producer, consumer, tokens)
            return
        if snap is not None:
            self.snapshots.committed(snap)
            self.state.events.release_ids(self.snapshots.covered)
        if had_entries:  # where they landed is known only if a snapshot asked
            self.state.head_offset = snap.record["entries_offset"] if snap is not None else None
        for key, n in counts.items():
            self.counters[key] += n
        for size, body in published:
            self.anchorer.submit(size, body)
            if self.s.tsa_urls:  # without a TSA nothing will ever anchor it
                self.state.unanchored[size] = body
        for t in tokens:
            self.state.unanchored.pop(t.tree_size, None)
        self.write_status()

    def _snapshot_due(self, entries_in_txn: int) -> bool:
        """A snapshot needs the head's offset: learnt in a transaction with entries (see
        _produce_snapshot), or still known from recovery or the last snapshot."""
        return (not self.snapshots_off and self.snapshots.due(self.state.next_seq)
                and (entries_in_txn > 0 or self.state.head_offset is not None))

    def _capture_snapshot(self, published: list[tuple[int, bytes]], tokens: list) -> snapshots.Pending:
        unanchored = dict(self.state.unanchored)
        if self.s.tsa_urls:
            unanchored.update(published)
        for t in tokens:
            unanchored.pop(t.tree_size, None)
        return self.snapshots.capture(self.state, self.s.origin, self.pub.key_id, unanchored)

    def _produce_snapshot(self, producer: Producer, snap: snapshots.Pending,
                          had_entries: bool) -> snapshots.Pending | None:
        """Add the captured snapshot to the open transaction. Once this transaction's records
        are delivered (flush) and only the signer writes ``entries``, the partition's end
        offset less one is the offset of this transaction's last entry, the snapshot's head
        (without entries in this transaction, the head's offset is still the known one)."""
        self.watchdog.beat("writing a snapshot")
        if producer.flush(30):
            log.warning("snapshot skipped: this transaction's records were not delivered within 30 s")
            self.snapshots.postpone(snap)
            return None
        if self._probe is None:
            self._probe = self._end_probe()
        ends = [self._probe.get_watermark_offsets(TopicPartition(t, 0), timeout=10, cached=False)[1]
                for t in (self.s.topics.entries, self.s.topics.checkpoints)]
        head_offset = ends[0] - 1 if had_entries else self.state.head_offset
        assert head_offset is not None  # _snapshot_due
        out = self.snapshots.finish(snap, head_offset, ends[1], self.key, now_us())
        if out is None:
            log.warning("snapshot skipped: larger than %d bytes (%d agents)", snapshots.MAX_SNAPSHOT_BYTES,
                        len(self.state.agents))
            return None
        for key, value in out:
            producer.produce(self.s.topics.signer_state, value, key=key)
        return snap

    def _take(self, consumer: Consumer) -> list[Any]:
        """The next batch, without waiting for it to fill: whatever the consumer holds now
        (up to batch_size); if nothing, wait up to batch_ms for the first record and take
        what arrived with it. Below saturation a record is signed and committed as soon as
        the transaction before it is done, not after a fixed batch window; under a backlog
        the consumer holds full batches and nothing changes."""
        msgs = take(consumer, self.s.batch_size, self.s.batch_ms / 1000)
        if len(msgs) == 1 and self.s.batch_size > 1:  # the first of a burst: take what came with it
            msgs += consumer.consume(self.s.batch_size - 1, timeout=0)
        return msgs

    def _sequence_ahead(self, producer: Producer, consumer: Consumer) -> None:
        """Sequence what the consumer already holds of the next batch (no waiting), into
        ``self._ahead``; this transaction's entries keep being produced as they are signed."""
        msgs = [m for m in consumer.consume(self.s.batch_size, timeout=0) if self._usable(m)]
        if not msgs:
            return
        ahead = self._ahead = _Ahead(consumed=len(msgs))
        for m in msgs:
            self._handle(producer, ahead.produce, m, ahead.counts, ahead.published)
        if self._to_sign:
            self._submit(producer)

    def _usable(self, msg: Any) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error: %s", err)
        return False

    def _handle(self, producer: Producer, produce: Produce, m: Any, counts: dict[str, int],
                published: list[tuple[int, bytes]]) -> None:
        """Sequence one action; its records go to ``produce`` (this transaction, or the
        next batch's buffer), its signature to the signing thread."""
        assert self.seq is not None
        if self._sealing:
            sealed = self.seq.seal(m.value(), m.topic(), m.partition(), m.offset())
            if sealed is not None:
                produce(self.s.topics.entries, *sealed)
                self._sequenced(produce, counts, published)
                return
        outcome = self.seq.process(m.value(), Source(m.topic(), m.partition(), m.offset(), m.key()))
        entry = outcome.entry
        if entry is not None:
            if self.s.timestamp_mode == "entry":
                stamped = self.anchorer.stamp_now(bytes(entry["entry_hash"]))
                entry["timestamp_token"] = stamped[1] if stamped else None
            if outcome.signing_message is not None:
                assert self.signing is not None
                self._unsigned.append(outcome)
                if self._ahead is None:  # else it belongs to the next batch (_sequence_ahead)
                    self._current_left += 1
                self._to_sign.append(outcome.signing_message)
                if len(self._to_sign) >= SUBMIT_EVERY:
                    self._submit(producer)
            else:
                self._produce_entry(produce, outcome)
            self._sequenced(produce, counts, published)
        elif outcome.dead_letter is not None:
            produce(self.s.topics.deadletter, codec.encode("DeadLetter", outcome.dead_letter))
            counts["dead_letters"] += 1
        else:
            counts["duplicates"] += 1

    def _sequenced(self, produce: Produce, counts: dict[str, int], published: list[tuple[int, bytes]]) -> None:
        """After an entry: count it, and publish a checkpoint when one is due."""
        counts["entries"] += 1
        if self.state.tree.size - self.state.checkpoint_size >= self.s.checkpoint_every:
            published.append(self._checkpoint(produce))
            counts["checkpoints"] += 1

    def _produce_entry(self, produce: Produce, outcome: Outcome) -> None:
        # the key positionally: confluent-kafka parsing it as a keyword cost up to 1 us more per entry
        produce(self.s.topics.entries, Sequencer.encode(outcome), outcome.entry["action"]["agent_id"].encode())

    def _submit(self, producer: Producer) -> None:
        """Hand the signing messages gathered so far to the signing thread (one lock, one
        wake-up per SUBMIT_EVERY entries), and produce the entries already signed."""
        assert self.signing is not None
        self.signing.submit_many(self._to_sign)
        self._to_sign = []
        self._produce_signed(producer, wait=False)

    def _produce_signed(self, producer: Producer, wait: bool) -> None:
        """Produce the open transaction's sequenced entries whose signatures are done, in
        seq order (those of the next batch are kept for its transaction); with ``wait``,
        wait for at least one."""
        assert self.signing is not None
        signatures = self.signing.take(wait)
        if wait and not signatures and self._current_left:
            raise RuntimeError(f"the signing thread has nothing left for {self._current_left} entries")
        for signature in signatures:
            outcome = self._unsigned.popleft()
            outcome.entry["signature"] = signature
            if self._current_left:
                self._current_left -= 1
                self._produce_entry(producer.produce, outcome)
            else:
                assert self._ahead is not None
                self._ahead.signed.append(outcome)

    def _checkpoint(self, produce: Produce) -> tuple[int, bytes]:
        st = self.state
        size, created = st.tree.size, now_us()
        root = st.tree.root()
        body = records.checkpoint_body(self.s.origin, size, root, st.head, created)
        produce(self.s.topics.checkpoints, codec.encode("Checkpoint", {
            "spec_version": records.SPEC_VERSION, "origin": self.s.origin, "tree_size": size,
            "root_hash": root, "chain_head": st.head, "created_at": created, "body": body,
            "key_id": self.pub.key_id, "signature": self.key.sign(body)}))
        if self.note_signer is not None:  # same transaction: a checkpoint never lacks its note line
            sig = self.note_signer.sign(body)
            produce(self.s.topics.checkpoints, codec.encode("NoteSignature", {
                "tree_size": size, "body_hash": hashlib.sha256(body).digest(), "role": "log", "name": sig.name,
                "key_id": sig.key_id, "signature": sig.signature, "created_at": created}))
        st.checkpoint_size = size
        self.last_checkpoint_time = time.monotonic()
        return size, body

    def _on_txn_error(self, exc: KafkaException, producer: Producer, consumer: Consumer,
                      tokens: list) -> None:
        err: KafkaError = exc.args[0]
        if err.fatal() or err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                         KafkaError.INVALID_PRODUCER_EPOCH):
            raise Fenced(f"fatal transaction error: {err}")
        log.warning("transaction failed (%s); aborting and rebuilding state", err)
        self.counters["aborts"] += 1
        if self.signing is not None:  # nothing of the aborted batch may leak into the next
            self.signing.reset()
        self._unsigned.clear()
        self._to_sign = []
        self._current_left = 0
        self._ahead = None  # sequenced on top of the aborted batch: redone after it
        try:
            self.watchdog.beat("abort_transaction")
            producer.abort_transaction(60)
        except KafkaException as abort_exc:
            raise Fenced(f"abort failed: {abort_exc}") from exc
        for t in tokens:  # not published: ask again
            self.anchorer.submit(t.tree_size, t.body)
        self._warm = False
        self.recover()
        self._ready_to_sign()
        self._assign(consumer)

    # --- status ----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        st = self.state
        return {
            "pid": os.getpid(), "role": self.role, "key_id": self.pub.key_id,
            "next_seq": st.next_seq, "checkpoint_size": st.checkpoint_size,
            "signing_mode": self.s.signing_mode, "timestamp_mode": self.s.timestamp_mode,
            "tsa_backlog": self.anchorer.backlog, "tsa_failures": self.anchorer.failures,
            "tsa_last_error": self.anchorer.last_error, "unanchored_checkpoints": len(st.unanchored),
            "skipped_on_recovery": st.skipped_on_recovery, **self.counters,
            "signing_thread_nice": self.signing.nice if self.signing is not None else None,
            "started_at": self.started, "updated_at": time.time(),
            "recovery_s": self.recovery_s, "rss_mb": procinfo.rss_mb(os.getpid()),
            "recovered_from": self.recovered_from,
            "snapshots": {"off": self.snapshots_off or None, "written": self.snapshots.written,
                          "last_seq": self.snapshots.last_seq, "dedup_chunks": len(self.snapshots.live),
                          "skipped_too_large": self.snapshots.skipped_too_large},
            "watchdog_seconds": self.s.watchdog_seconds, "doing": self.watchdog.doing,
        }

    def write_status(self, force: bool = False) -> None:
        if self.s.status_file is None:
            return
        now = time.monotonic()
        if not force and now - self._last_status < 0.5:
            return
        self._last_status = now
        path = self.s.status_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(), indent=2))
        os.replace(tmp, path)
