"""signer_worker.signing (the entry-signing thread) and the loop around it, without Kafka.

Signatures are checked with pyca directly. The loop tests drive ``SignerWorker._iteration``
with an in-memory stand-in for the transactional producer and the consumer, so they can
check what a transaction contains, in which order, and what survives an abort.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from cryptography.hazmat.primitives.asymmetric import mldsa as pyca_mldsa

from ledgerstream.core import mldsa, records
from ledgerstream.core.wire import codec
from ledgerstream.core.config import Topics
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.signer_worker import loop as loop_module
from ledgerstream.signer_worker.loop import SignerWorker
from ledgerstream.signer_worker.settings import SignerSettings
from ledgerstream.signer_worker.signing import SigningThread
from support.actions import make_action

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module", params=mldsa.available_backends())
def key(request: pytest.FixtureRequest) -> PrivateKey:
    return PrivateKey.generate(request.param)


def _pyca(key: PrivateKey) -> pyca_mldsa.MLDSA65PublicKey:
    return pyca_mldsa.MLDSA65PublicKey.from_public_bytes(key.public_key().raw)


# --- the signing thread ------------------------------------------------------------------------

def _take_all(signing: SigningThread) -> list[bytes]:
    out: list[bytes] = []
    while signing.pending:
        out += signing.take(wait=True)
    return out


def test_signatures_come_back_in_submission_order(key: PrivateKey) -> None:
    signing = SigningThread(key, max_chunk=7)
    try:
        messages = [records.entry_signing_message(records.sha256(bytes([i]))) for i in range(40)]
        got: list[bytes] = []
        for message in messages[:20]:
            signing.submit_many([message])
            got += signing.take()  # whatever is done so far, in order
        for start in range(20, 40, 5):  # and in groups, as the loop hands them over
            signing.submit_many(messages[start:start + 5])
            got += signing.take()
        got += _take_all(signing)
        assert signing.pending == 0 and signing.take(wait=True) == []
        assert len(got) == len(messages) and signing.chunks >= 40 // 7
        verifier = _pyca(key)
        for message, signature in zip(messages, got):
            verifier.verify(signature, message)
    finally:
        signing.close()


def test_reset_drops_what_was_submitted(key: PrivateKey) -> None:
    signing = SigningThread(key, max_chunk=3)
    try:
        for i in range(20):
            signing.submit_many([b"aborted %d" % i])
        signing.reset()
        fresh = [b"kept %d" % i for i in range(5)]
        for message in fresh:
            signing.submit_many([message])
        got = _take_all(signing)
        assert len(got) == 5
        for message, signature in zip(fresh, got):
            _pyca(key).verify(signature, message)
    finally:
        signing.close()


class _GatedKey:
    """Fake signatures (b"sig:" + message), each chunk held until the test lets it go."""

    def __init__(self) -> None:
        self.gate = threading.Semaphore(0)
        self.started = threading.Semaphore(0)

    def sign_many(self, messages: list[bytes]) -> list[bytes]:
        self.started.release()
        self.gate.acquire()
        return [b"sig:" + m for m in messages]


def test_reset_drops_the_chunk_in_flight() -> None:
    fake = _GatedKey()
    signing = SigningThread(fake, max_chunk=2)  # type: ignore[arg-type]
    try:
        for m in (b"a1", b"a2", b"a3"):
            signing.submit_many([m])
        assert fake.started.acquire(timeout=5)  # a1, a2 are being signed
        signing.reset()
        signing.submit_many([b"b1"])
        for _ in range(2):
            fake.gate.release()
        assert _take_all(signing) == [b"sig:b1"]  # neither a1/a2 (in flight) nor a3 (queued)
    finally:
        for _ in range(3):
            fake.gate.release()
        signing.close()


class _FailingKey:
    def __init__(self) -> None:
        self.calls = 0

    def sign_many(self, messages: list[bytes]) -> list[bytes]:
        self.calls += 1
        raise RuntimeError("liboqs OQS_SIG_sign failed (message 0 of 1)")


def test_a_signing_failure_reaches_the_loop_thread() -> None:
    signing = SigningThread(_FailingKey())  # type: ignore[arg-type]
    try:
        signing.submit_many([b"m"])
        with pytest.raises(RuntimeError, match="entry signing failed"):
            signing.take(wait=True)
        signing.reset()
        assert signing.take() == []
    finally:
        signing.close()
    assert not signing._thread.is_alive()


# --- the loop with an in-memory Kafka -----------------------------------------------------------

class _Msg:
    def __init__(self, topic: str, partition: int, offset: int, key: bytes, value: bytes) -> None:
        self._t, self._p, self._o, self._k, self._v = topic, partition, offset, key, value

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._v

    def key(self) -> bytes:
        return self._k

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def timestamp(self) -> tuple[int, int]:
        return 1, 1_700_000_000_000


class _TP:
    def __init__(self, topic: str, partition: int, offset: int = 0) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset


class _Kafka:
    """One transactional producer and one consumer over in-memory topics."""

    def __init__(self, actions_topic: str, actions: list[bytes]) -> None:
        self.actions_topic = actions_topic
        self.input = [_Msg(actions_topic, 0, i, b"agent", raw) for i, raw in enumerate(actions)]
        self.position_ = 0
        self.committed_offset = 0
        self.log: dict[str, list[bytes]] = {}
        self.txn: list[tuple[str, bytes]] | None = None
        self.txn_offsets: int | None = None
        self.fail_commits = 0
        self.fail_produce_at: int | None = None  # fail the n-th produce of the next transaction
        self.aborts = 0
        self.commits: list[list[tuple[str, bytes]]] = []

    # consumer
    def consume(self, n: int, timeout: float) -> list[_Msg]:
        out = self.input[self.position_:self.position_ + n]
        self.position_ += len(out)
        return out

    def assignment(self) -> list[_TP]:
        return [_TP(self.actions_topic, 0)]

    def position(self, parts: list[_TP]) -> list[_TP]:
        return [_TP(self.actions_topic, 0, self.position_)]

    def consumer_group_metadata(self) -> object:
        return object()

    def list_topics(self, topic: str, timeout: float) -> Any:
        class _Md:
            topics = {topic: type("T", (), {"partitions": {0: None}})()}
        return _Md()

    def committed(self, parts: list[Any], timeout: float) -> list[Any]:
        return parts

    def get_watermark_offsets(self, tp: Any, timeout: float, cached: bool) -> tuple[int, int]:
        return 0, len(self.input)  # the signer names a never-committed partition's first offset

    def assign(self, parts: list[Any]) -> None:
        self.position_ = self.committed_offset

    # producer
    def poll(self, timeout: float) -> int:
        return 0

    def begin_transaction(self) -> None:
        assert self.txn is None
        self.txn = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        assert self.txn is not None, "produce outside a transaction"
        if self.fail_produce_at is not None and len(self.txn) == self.fail_produce_at:
            self.fail_produce_at = None
            raise KafkaException(KafkaError(KafkaError._STATE, "abortable error (test)"))
        self.txn.append((topic, value))

    def send_offsets_to_transaction(self, positions: list[_TP], meta: object, timeout: float) -> None:
        self.txn_offsets = positions[0].offset

    def commit_transaction(self, timeout: float) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "commit timed out (test)"))
        assert self.txn is not None
        for topic, value in self.txn:
            self.log.setdefault(topic, []).append(value)
        self.commits.append(self.txn)
        if self.txn_offsets is not None:
            self.committed_offset = self.txn_offsets
        self.txn, self.txn_offsets = None, None

    def abort_transaction(self, timeout: float) -> None:
        self.aborts += 1
        self.txn, self.txn_offsets = None, None

    def read_partition(self, bootstrap: str, topic: str, role: str = "reader",
                       start: int | None = None) -> list[tuple[int, bytes]]:
        return list(enumerate(self.log.get(topic, [])))[start or 0:]


class _SlowKey:
    """A real key whose chunks take a while, so an abort finds signatures still being made."""

    def __init__(self, key: PrivateKey) -> None:
        self.key = key

    def sign_many(self, messages: list[bytes]) -> list[bytes]:
        time.sleep(0.01 * len(messages))
        return self.key.sign_many(messages)


def _worker(key: PrivateKey, kafka: _Kafka, topics: Topics, monkeypatch: pytest.MonkeyPatch,
            max_chunk: int | None = None, **settings: Any) -> SignerWorker:
    monkeypatch.setattr(loop_module, "read_partition", kafka.read_partition)
    settings.setdefault("snapshot_every", 0)  # this in-memory Kafka has no signer-state (test_signer_snapshots)
    worker = SignerWorker(SignerSettings(bootstrap="memory:0", topics=topics, key_path=Path("unused"),
                                         leader_election=False, **settings), key)
    worker.recover()
    if worker.sign_ahead:  # as run() does
        worker.signing = SigningThread(worker.key) if max_chunk is None else SigningThread(worker.key,
                                                                                           max_chunk=max_chunk)
    return worker


def _check_ledger(key: PrivateKey, kafka: _Kafka, topics: Topics, n: int) -> list[dict[str, Any]]:
    entries = [codec.decode(raw, expect="LedgerEntry")[1] for raw in kafka.log[topics.entries]]
    assert [e["seq"] for e in entries] == list(range(n))
    head, verifier = records.ZERO_HASH, _pyca(key)
    for e in entries:
        assert e["prev_hash"] == head and records.entry_hash(e) == e["entry_hash"]
        verifier.verify(e["signature"], records.entry_signing_message(e["entry_hash"]))
        head = e["entry_hash"]
    assert [e["action"]["event_id"] for e in entries] == [
        codec.decode(m.value())[1]["event_id"] for m in kafka.input[:n]]
    return entries


def test_loop_produces_each_batch_in_seq_order_in_its_transaction(key: PrivateKey,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    topics = Topics.with_prefix("t.")
    kafka = _Kafka(topics.actions, [codec.encode("ActionEvent", make_action(payload={"i": i})) for i in range(70)])
    worker = _worker(key, kafka, topics, monkeypatch, batch_size=25, checkpoint_every=30)
    assert worker.sign_ahead == key.sign_many_releases_gil
    try:
        worker._iteration(kafka, kafka)
        assert kafka.committed_offset == 25
        if worker.sign_ahead:  # a full batch: the next one was consumed and sequenced before this one committed
            assert worker._ahead is not None and worker._ahead.consumed == 25 and worker.state.next_seq == 50
        for _ in range(2):
            worker._iteration(kafka, kafka)
    finally:
        if worker.signing is not None:
            worker.signing.close()
    assert kafka.committed_offset == 70 and len(kafka.commits) == 3 and worker._ahead is None
    entries_so_far = 0
    for txn, first in zip(kafka.commits, (0, 25, 50)):
        seqs = [codec.decode(v)[1]["seq"] for t, v in txn if t == topics.entries]
        assert seqs == list(range(first, min(70, first + 25)))  # the batch, in seq order, in one transaction
        entries_so_far += len(seqs)
        for t, v in txn:  # a checkpoint never covers an entry of a later transaction
            assert t != topics.checkpoints or codec.decode(v)[1]["tree_size"] <= entries_so_far
    _check_ledger(key, kafka, topics, 70)
    assert len(kafka.log[topics.checkpoints]) == 2  # checkpoints at 30 and 60, mid-batch
    assert not worker._unsigned


@pytest.mark.parametrize("failure", ["commit", "mid-batch produce"])
def test_an_aborted_batch_is_redone_from_the_committed_state(key: PrivateKey, failure: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """After an abort nothing of the batch survives: not its state, not a signature still
    being made for it on the signing thread."""
    topics = Topics.with_prefix("t.")
    kafka = _Kafka(topics.actions, [codec.encode("ActionEvent", make_action(payload={"i": i})) for i in range(60)])
    worker = _worker(key, kafka, topics, monkeypatch, batch_size=20, checkpoint_every=1000)
    try:
        if failure != "commit" and worker.signing is not None:
            # slow chunks, so that signatures are still being made at the abort (swapped before
            # the first batch: the next batch's signatures are started before a commit)
            worker.signing.close()
            worker.signing = SigningThread(_SlowKey(key), max_chunk=4)
        worker._iteration(kafka, kafka)
        if failure == "commit":
            kafka.fail_commits = 1  # entries 20..39 are signed and produced, then the commit fails
        else:
            kafka.fail_produce_at = 0  # the first entry's produce fails while later ones are being signed
        worker._iteration(kafka, kafka)
        assert kafka.aborts == 1 and worker.counters["aborts"] == 1
        assert worker.state.next_seq == 20 and not worker._unsigned
        if worker.signing is not None:
            assert worker.signing.pending == 0
        worker._iteration(kafka, kafka)
        worker._iteration(kafka, kafka)
    finally:
        if worker.signing is not None:
            worker.signing.close()
    _check_ledger(key, kafka, topics, 60)
    assert kafka.committed_offset == 60


def test_chunk_signed_entries_verify_with_pyca(monkeypatch: pytest.MonkeyPatch) -> None:
    """The liboqs sign_many path end to end: entries signed on the signing thread, in chunks."""
    key = PrivateKey.generate(mldsa.available_backends()[0])
    if not key.sign_many_releases_gil:
        pytest.skip(f"no sign_many shim: {mldsa._probe_liboqs().reason}")
    topics = Topics.with_prefix("t.")
    kafka = _Kafka(topics.actions, [codec.encode("ActionEvent", make_action(agent_id=f"a{i % 3}", payload={"i": i}))
                                    for i in range(300)])
    worker = _worker(key, kafka, topics, monkeypatch, max_chunk=128, batch_size=300)
    try:
        worker._iteration(kafka, kafka)
        assert worker.signing is not None and worker.signing.chunks >= 3  # 300 entries, at most 128 a chunk
    finally:
        worker.signing.close()
    entries = _check_ledger(key, kafka, topics, 300)
    raw = kafka.log[topics.entries]
    for e, data in zip(entries, raw):
        assert codec.encode("LedgerEntry", e) == data  # byte-identical to codec


def test_signing_thread_stops_with_the_worker(key: PrivateKey) -> None:
    before = {t.name for t in threading.enumerate()}
    signing = SigningThread(key)
    assert "ledgerstream-entry-signing" in {t.name for t in threading.enumerate()} - before
    signing.close()
    assert not signing._thread.is_alive()


def test_a_dead_signing_thread_does_not_hang_the_loop(key: PrivateKey) -> None:
    signing = SigningThread(key)
    signing.close()  # the thread is gone; a message submitted now will never be signed
    signing.submit_many([b"m"])
    with pytest.raises(RuntimeError, match="thread is gone"):
        signing.take(wait=True)


# --- the signing thread's priority -------------------------------------------------------------

def test_signing_thread_runs_at_the_nice_value_asked_for(key: PrivateKey) -> None:
    """A positive nice value can always be set, so this runs unprivileged too; only the
    signing thread changes, not the thread that started it."""
    import os

    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    wanted = min(19, own + 3)
    signing = SigningThread(key, nice=wanted)
    try:
        assert signing.nice == wanted and signing.priority_error is None
        assert os.getpriority(os.PRIO_PROCESS, signing.native_id) == wanted
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
        signing.submit_many([b"still signs"])
        (signature,) = _take_all(signing)
        _pyca(key).verify(signature, b"still signs")
    finally:
        signing.close()


def test_a_refused_priority_is_reported_and_signing_goes_on(key: PrivateKey,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CAP_SYS_NICE the OS refuses a negative nice value; as root it would not, so
    there the refusal is injected at the system call."""
    import errno
    import os

    if os.geteuid() == 0:
        def refuse(*_: Any) -> None:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
        monkeypatch.setattr(os, "setpriority", refuse)
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    signing = SigningThread(key, nice=-5)
    try:
        assert signing.priority_error is not None and "CAP_SYS_NICE" in signing.priority_error
        assert signing.nice == own == os.getpriority(os.PRIO_PROCESS, signing.native_id)
        signing.submit_many([b"m1", b"m2"])
        assert len(_take_all(signing)) == 2
    finally:
        signing.close()


def test_signer_settings_reject_an_impossible_nice_value() -> None:
    with pytest.raises(ValueError, match="signing_nice"):
        SignerSettings(bootstrap="x", topics=Topics.with_prefix("t."), key_path=Path("k"), signing_nice=-21)


def test_the_signers_producer_retries_a_refused_transaction_start_within_milliseconds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A transaction begun right after a commit is refused (CONCURRENT_TRANSACTIONS) until the
    broker has written that commit's markers, and librdkafka waits retry.backoff.ms (100 by
    default) before asking again: with back-to-back transactions that wait was most of a
    paced entry's latency (docs/benchmarks-signer.md, 2026-12-06). The signer asks again after
    a few ms."""
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(loop_module, "Producer", lambda conf: seen.append(conf) or conf)
    settings = dict(bootstrap="127.0.0.1:9", topics=Topics.with_prefix("t."), key_path=Path("k"),
                    leader_election=False)
    SignerWorker(SignerSettings(**settings), PrivateKey.generate())._producer()
    assert seen[-1]["retry.backoff.ms"] <= 10 and seen[-1]["transactional.id"]
