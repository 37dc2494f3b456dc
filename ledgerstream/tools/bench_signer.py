"""``ledgerstream bench signer``: how fast the real signer turns actions into ledger entries.

One run starts a private embedded Kafka broker and, for each available ML-DSA-65 backend
and each signing mode (``entry``, ``checkpoint``), a real signer subprocess
(``python -m ledgerstream.signer_worker``, backend chosen with $LEDGERSTREAM_MLDSA_BACKEND,
no leader election, no TSA: anchoring is off the signing path). What is measured:

* ``raw_sign_per_s``: the backend's own ML-DSA-65 sign rate, one thread, 256-byte
  messages (:func:`ledgerstream.core.mldsa.measure_sign_rate`), in this process, in the
  same run, just before that backend's scenarios; ``raw_sign_per_s_after_entry`` the same,
  measured again just after the entry-mode scenario. On a shared or throttled host the
  two can differ by a third; ``raw_sign_per_s_ref`` is their mean, the rate the ratios use.
* ``entries_per_s`` (drain): N actions are produced first; then the signer is started
  and drains them. Rate = N / (time the last entry became visible to a read_committed
  consumer - ``received_at`` of entry 0). Start-up and recovery are not counted; every
  transaction commit, including the last, is.
* ``ratio_to_raw_sign``: entries_per_s / raw_sign_per_s_ref. In ``entry`` mode each entry
  costs one signature, so this says how much of the crypto budget the rest of the loop
  leaves; the goal is >= 0.8. In ``checkpoint`` mode it is shown for comparison only.
* ``cpu_us_per_entry`` (drain): CPU time (user + system, all threads, from /proc) that the
  signer process and the Kafka broker each spent per entry while the signer drained, and
  ``raw_sign_cpu_us`` the CPU time of one signature. The clocks start when the first entry
  is visible and stop when the last drained one is; the entries counted are those the signer
  sequenced (``received_at``) after the start, so a large first transaction is not counted
  without its CPU. These depend little on what else the machine runs, so they explain the
  rates on a busy machine: on C cores the ceiling is about C / (signer + broker CPU per
  entry) entries/s.
* ``sign_share_of_signer_cpu`` (entry mode): ``raw_sign_cpu_us`` / the signer's CPU per
  entry, i.e. the fraction of the signer's work that is the signature itself. It is what the
  entries/s ratio would be on an otherwise idle machine with the loop on one core, and it
  does not move with the load.
* ``latency_ms`` (paced): with the signer caught up, M more actions are produced at a
  steady rate (half the drain rate, at most 1,000/s). Latency of one event = time its entry
  became visible to the read_committed consumer - time this process called
  ``produce()`` for the action (one clock: both are in this process). It includes the
  producer's linger (5 ms, as the producer library), the signer's fetch and batch window
  (``--batch-ms``, 50 ms by default), sequencing and signing, the transaction commit and
  the consumer's fetch. ``latency_split_p50_ms`` splits it at ``received_at`` (the moment
  the signer sequenced the action).

Before any of this the broker is warmed up until its CPU per record settles (a fresh JVM
costs several times more per record; ``broker_warmup_us_per_record``). Every scenario
checks what it measured: the ledger must hold exactly N + M entries with a gapless seq.
The load average is reported because a busy machine changes the numbers.
"""
from __future__ import annotations

from ledgerstream.stack.topics import delete_topics

import cProfile
import io
import json
import os
import platform
import pstats
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from ledgerstream.tools.proc_cpu import cpu_seconds
from ledgerstream.core.kafka_security import kafka_config, role_env
from ledgerstream.core.topic_reader import take

GOAL_RATIO = 0.8
MODES = ("entry", "checkpoint")
LATENCY_RATE_CAP = 1000.0
WARMUP_MAX_BURSTS = 12
AGENTS = 8
PAYLOAD = {"query": "overdue invoices for ACME Corp in Q3", "top_k": 5,
           "filters": {"status": ["open", "overdue"], "currency": "EUR"}, "caller": "billing-agent"}

Log = Callable[[str], None]


def _action(i: int) -> dict[str, Any]:
    from ledgerstream.core import records

    canonical = records.canonical_json({**PAYLOAD, "i": i})
    salt = os.urandom(records.SALT_LEN)
    return {
        "event_id": str(uuid.uuid4()), "agent_id": f"bench-agent-{i % AGENTS}", "session_id": None,
        "action_type": "tool:search", "payload": canonical, "payload_salt": salt,
        "payload_hash": records.payload_commitment(salt, canonical), "occurred_at": time.time_ns() // 1000,
        "links": [], "policy": None, "approvals": [], "trace": None,
        "producer": {"library": "bench", "version": "0", "host": platform.node(), "pid": os.getpid(),
                     "adapter": None},
        "offline": False,
    }


def _encoded_actions(n: int) -> list[tuple[bytes, bytes, str]]:
    from ledgerstream.core.wire import codec

    out = []
    for i in range(n):
        a = _action(i)
        out.append((a["agent_id"].encode(), codec.encode("ActionEvent", a), a["event_id"]))
    return out


def _producer(bootstrap: str) -> Any:
    from confluent_kafka import Producer

    return Producer(kafka_config(bootstrap, "admin", {"enable.idempotence": True, "acks": "all",
                                                      "linger.ms": 5, "queue.buffering.max.messages": 1_000_000}))


def _produce_all(bootstrap: str, topic: str, items: list[tuple[bytes, bytes, str]]) -> None:
    producer = _producer(bootstrap)
    for key, value, _ in items:
        while True:
            try:
                producer.produce(topic, value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError("could not deliver the benchmark's actions")


def _backlog(bootstrap: str, prefix: str, events: int) -> Any:
    """Private topics ``<prefix><random>.*`` with ``events`` actions waiting on ``actions``."""
    from ledgerstream.core.config import Topics
    from ledgerstream.stack.topics import ensure_topics

    topics = Topics.with_prefix(f"{prefix}{uuid.uuid4().hex[:8]}.")
    ensure_topics(bootstrap, topics)
    _produce_all(bootstrap, topics.actions, _encoded_actions(events))
    return topics


class _StableEnd:
    """Samples the entries partition's last stable offset (the end a read_committed consumer
    sees) every few milliseconds, so the drain's end is timed without reading its records:
    a consumer fetching 3.8 KB entries at the drain rate took ~0.2 of the two cores here,
    CPU the signer and broker did not get. Offsets count transaction markers too."""

    def __init__(self, bootstrap: str, topic: str, every_s: float = 0.004) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.samples: list[tuple[float, int]] = []  # (time, first offset not yet visible)
        self._consumer = Consumer(kafka_config(bootstrap, "admin", {"group.id": f"bench-{uuid.uuid4().hex}",
                                                                    "isolation.level": "read_committed"}))
        self._tp = TopicPartition(topic, 0)
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-stable-end", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from confluent_kafka import KafkaException

        while not self._stop.is_set():
            try:
                end = self._consumer.get_watermark_offsets(self._tp, timeout=5, cached=False)[1]
            except KafkaException:  # a slow answer: ask again (wait() times out if it never comes)
                continue
            self.samples.append((time.time(), end))
            self._stop.wait(self._every)

    def wait(self, offset: int, timeout: float, alive: Callable[[], bool]) -> None:
        """Until the record at ``offset`` is visible."""
        deadline = time.monotonic() + timeout
        while not self.samples or self.samples[-1][1] <= offset:
            if time.monotonic() > deadline or not alive():
                raise RuntimeError(f"the signer's ledger did not reach offset {offset} "
                                   f"(stable end {self.samples[-1][1] if self.samples else 0})")
            time.sleep(0.002)

    def visible_at(self, offset: int) -> float:
        """When the record at ``offset`` was first seen visible (to the sampling interval)."""
        return next(t for t, end in self.samples if end > offset)

    def close(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(10)
            self._consumer.close()


class _Tail:
    """Records when each committed entry becomes visible (read_committed), off the hot path:
    raw bytes, offsets and arrival times only; decoding happens after the measurement."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.arrivals: list[tuple[float, bytes]] = []
        self.offsets: list[int] = []
        self._consumer = Consumer(kafka_config(bootstrap, "admin", {
            "group.id": f"bench-{uuid.uuid4().hex}", "enable.auto.commit": False,
            "isolation.level": "read_committed", "fetch.wait.max.ms": 100}))
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-tail", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msgs = take(self._consumer, 10_000, 0.05)  # stamped as they arrive (D39)
            now = time.time()
            good = [m for m in msgs if m.error() is None]
            self.offsets.extend(m.offset() for m in good)  # first: wait() counts arrivals, then reads offsets
            self.arrivals.extend((now, m.value()) for m in good)

    def wait(self, count: int, timeout: float, alive: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        while len(self.arrivals) < count:
            if time.monotonic() > deadline or not alive():
                raise RuntimeError(f"signer delivered {len(self.arrivals)} of {count} entries")
            time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def _sign_cpu_us(backend: str, seconds: float = 1.0) -> float:
    """CPU microseconds of one ML-DSA-65 signature (one thread, 256-byte message)."""
    from ledgerstream.core import mldsa

    key, message, count = mldsa.PrivateKey.generate(backend), bytes(256), 0
    start = time.process_time()
    while (used := time.process_time() - start) < seconds:
        key.sign(message)
        count += 1
    return used / count * 1e6


def _per_entry_us(cpu_seconds: float, entries: int) -> int | None:
    return None if cpu_seconds != cpu_seconds else round(cpu_seconds / entries * 1e6)  # NaN: unknown


def _percentiles(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    pick = lambda q: round(s[min(len(s) - 1, int(q * len(s)))], 1)  # noqa: E731
    return {"p50": pick(0.50), "p99": pick(0.99), "max": round(s[-1], 1), "mean": round(sum(s) / len(s), 1)}


def bench_scenario(bootstrap: str, key_path: Path, workdir: Path, backend: str, mode: str, events: int,
                   latency_events: int, raw_rate: float, log: Log, broker_pid: int | None = None,
                   signing_nice: int | None = None) -> dict[str, Any]:
    from ledgerstream.core import mldsa
    from ledgerstream.core.wire import codec

    log(f"[{backend}/{mode}] producing {events} actions, then starting the signer ...")
    topics = _backlog(bootstrap, "bench", events)
    end = _StableEnd(bootstrap, topics.entries)
    tail: _Tail | None = None
    logfile = workdir / f"signer-{backend}-{mode}.log"
    argv = [sys.executable, "-m", "ledgerstream.signer_worker", "--bootstrap", bootstrap, "--key", str(key_path),
            "--topic-prefix", topics.actions[: -len("actions")], "--status-file", str(workdir / "status.json"),
            "--signing-mode", mode, "--no-leader-election"]
    if signing_nice is not None:
        argv += ["--signing-nice", str(signing_nice)]
    env = dict(os.environ, **{mldsa.BACKEND_ENV: backend}, **role_env(bootstrap, "admin"))
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        alive = lambda: proc.poll() is None  # noqa: E731
        end.wait(0, 120, alive)  # the signer is up and committing: start the CPU clocks
        clocks_from_us = time.time_ns() // 1000
        cpu0 = (cpu_seconds(proc.pid), cpu_seconds(broker_pid) if broker_pid else float("nan"))
        # offsets count one commit marker per transaction: at this end all but the last few
        # entries are visible, and the clocks stop within one transaction of the true end
        end.wait(events - 1, 60 + events / 20, alive)
        cpu1 = (cpu_seconds(proc.pid), cpu_seconds(broker_pid) if broker_pid else float("nan"))
        tail = _Tail(bootstrap, topics.entries)  # the drained entries, read once they are all in
        tail.wait(events, 60, alive)
        end.wait(tail.offsets[events - 1], 10, alive)
        end.close()
        first = codec.decode(tail.arrivals[0][1], expect="LedgerEntry")[1]
        last = codec.decode(tail.arrivals[events - 1][1], expect="LedgerEntry")[1]
        drain_s = end.visible_at(tail.offsets[events - 1]) - first["received_at"] / 1e6
        rate = events / drain_s
        seq_rate = (events - 1) / max(1e-9, (last["received_at"] - first["received_at"]) / 1e6)
        log(f"[{backend}/{mode}] {rate:,.0f} entries/s; measuring latency at a steady rate ...")

        offered = min(LATENCY_RATE_CAP, rate / 2)
        sent: dict[str, float] = {}
        producer = _producer(bootstrap)
        items = _encoded_actions(latency_events)
        start = time.perf_counter()
        for i, (key, value, event_id) in enumerate(items):
            due = start + i / offered
            while (pause := due - time.perf_counter()) > 0:
                time.sleep(pause)
            sent[event_id] = time.time()
            producer.produce(topics.actions, value, key=key)
            producer.poll(0)
        producer.flush(60)
        tail.wait(events + latency_events, 60 + latency_events / 20, alive)
    finally:
        _terminate(proc)
        end.close()
        if tail is not None:
            tail.close()
    entries = [(t, codec.decode(raw, expect="LedgerEntry")[1]) for t, raw in tail.arrivals]
    if [e["seq"] for _, e in entries] != list(range(events + latency_events)):
        raise RuntimeError(f"[{backend}/{mode}] the ledger is not gapless: see {logfile}")
    # the entries whose work the CPU clocks saw: those sequenced after the clocks started
    counted = max(1, sum(1 for _, e in entries[:events] if e["received_at"] >= clocks_from_us))
    paced = entries[events:]
    status = json.loads((workdir / "status.json").read_text())
    latencies = [(t - sent[e["action"]["event_id"]]) * 1000 for t, e in paced]
    to_signer = [(e["received_at"] / 1e6 - sent[e["action"]["event_id"]]) * 1000 for _, e in paced]
    to_reader = [(t - e["received_at"] / 1e6) * 1000 for t, e in paced]
    delete_topics(bootstrap, topics)
    entries_per_s = round(rate)
    return {
        # the ratio from the reported rate, as _with_ratios computes it, so the two always agree
        "entries_per_s": entries_per_s, "sequencing_per_s": round(seq_rate),
        "ratio_to_raw_sign": round(entries_per_s / raw_rate, 2),
        "cpu_us_per_entry": {"signer": _per_entry_us(cpu1[0] - cpu0[0], counted),
                             "broker": _per_entry_us(cpu1[1] - cpu0[1], counted)},
        "latency_ms": _percentiles(latencies), "latency_offered_per_s": round(offered),
        # the two halves: produce() -> the signer sequences it (received_at), and
        # received_at -> visible to a read_committed consumer
        "latency_split_p50_ms": {"to_signer": _percentiles(to_signer)["p50"],
                                 "to_reader": _percentiles(to_reader)["p50"]},
        "entry_bytes_mean": round(sum(len(raw) for _, raw in tail.arrivals) / len(tail.arrivals)),
        "signing_thread_nice": status.get("signing_thread_nice"),  # as the signer set it (entry mode)
    }


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kafka_floor(bootstrap: str, workdir: Path, events: int, value_bytes: int, log: Log,
                broker_pid: int | None = None) -> dict[str, Any]:
    """The same drain as :func:`bench_scenario`, through ``tools/kafka_relay.py`` (the signer's
    transactional loop and client settings, no ledger work) writing ``value_bytes`` records:
    the ceiling of any Python signer over confluent-kafka on this machine and broker."""
    log(f"[kafka floor] producing {events} actions, then relaying them ({value_bytes}-byte records) ...")
    topics = _backlog(bootstrap, "relay", events)
    end = _StableEnd(bootstrap, topics.entries)
    tail: _Tail | None = None
    status_file = workdir / "relay-status.json"
    status_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "ledgerstream.tools.kafka_relay", "--bootstrap", bootstrap,
            "--topic-prefix", topics.actions[: -len("actions")], "--events", str(events),
            "--value-bytes", str(value_bytes), "--status-file", str(status_file)]
    with open(workdir / "relay.log", "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, **role_env(bootstrap, "admin")))
    try:
        alive = lambda: proc.poll() is None or status_file.exists()  # noqa: E731
        end.wait(0, 120, alive)
        cpu0 = (cpu_seconds(proc.pid), cpu_seconds(broker_pid) if broker_pid else float("nan"))
        # the records relayed while the clocks ran: those not yet visible when they started
        # (offsets count one marker per transaction, a few among thousands)
        counted = max(1, events - end.samples[-1][1])
        end.wait(events - 1, 60 + events / 20, alive)
        cpu1 = (cpu_seconds(proc.pid), cpu_seconds(broker_pid) if broker_pid else float("nan"))
        tail = _Tail(bootstrap, topics.entries)
        tail.wait(events, 60, alive)
        end.wait(tail.offsets[events - 1], 10, alive)
        proc.wait(30)
        started = json.loads(status_file.read_text())["first_taken_at"]
        rate = events / (end.visible_at(tail.offsets[events - 1]) - started)
        sizes = [len(value) for _, value in tail.arrivals[:events]]
    finally:
        _terminate(proc)
        end.close()
        if tail is not None:
            tail.close()
    delete_topics(bootstrap, topics)
    log(f"[kafka floor] {rate:,.0f} records/s")
    return {"records_per_s": round(rate), "record_bytes": value_bytes, "record_bytes_mean": round(sum(sizes) / events),
            "cpu_us_per_record": {"relay": _per_entry_us(cpu1[0] - cpu0[0], counted),
                                  "broker": _per_entry_us(cpu1[1] - cpu0[1], counted)}}


def _broker_burst(bootstrap: str, broker_pid: int, records: int, size: int = 3800, batch: int = 500) -> float:
    """Broker CPU µs per record for one burst of transactional ``size``-byte records (as
    the signer writes them: 8 keys, ``batch`` per transaction, a read_committed tail)."""
    from confluent_kafka import Producer

    from ledgerstream.core.config import Topics
    from ledgerstream.stack.topics import ensure_topics

    topics = Topics.with_prefix(f"benchwarm{uuid.uuid4().hex[:8]}.")
    ensure_topics(bootstrap, topics)
    producer = Producer(kafka_config(bootstrap, "admin", {
        "transactional.id": f"bench-warm-{uuid.uuid4().hex}", "enable.idempotence": True, "acks": "all",
        "linger.ms": 5, "batch.size": 256 * 1024, "message.max.bytes": 8 * 1024 * 1024,
        "queue.buffering.max.messages": 1_000_000}))
    producer.init_transactions(60)
    tail = _Tail(bootstrap, topics.entries)
    value = os.urandom(size)
    try:
        cpu0 = cpu_seconds(broker_pid)
        for start in range(0, records, batch):
            producer.begin_transaction()
            for i in range(start, min(records, start + batch)):
                producer.produce(topics.entries, value, key=f"bench-agent-{i % AGENTS}".encode())
            producer.commit_transaction(60)
        tail.wait(records, 120, lambda: True)
        cpu1 = cpu_seconds(broker_pid)
    finally:
        tail.close()
    delete_topics(bootstrap, topics)
    return (cpu1 - cpu0) / records * 1e6


def _warm_up(bootstrap: str, key_path: Path, work: Path, backend: str, log: Log,
             broker_pid: int | None = None) -> list[int]:
    """Unmeasured load until the broker's CPU per record has settled, then one short signer
    run per signing mode. A freshly started broker (JVM, C1-compiled only) spends up to five
    times more CPU per record during its first tens of thousands of records; unless it is
    warm, that cost lands on the first scenarios (entry mode). Returns the broker's µs per
    record of each warm-up burst (5,000 records of 3,800 bytes)."""
    log("warming up the broker ...")
    bursts: list[int] = []
    if broker_pid is not None:
        for _ in range(WARMUP_MAX_BURSTS):
            bursts.append(round(_broker_burst(bootstrap, broker_pid, 5000)))
            if len(bursts) >= 4 and bursts[-1] <= 1.2 * min(bursts[:-1]):
                break
        log(f"broker CPU per 3.8 KB record while warming up (µs): {bursts}")
    for mode in MODES:
        bench_scenario(bootstrap, key_path, work, backend, mode, 3000, 100, 1.0, lambda msg: None)
    return bursts


def _with_ratios(row: dict[str, Any]) -> dict[str, Any]:
    """Fill in each mode's ratio against the mean of the raw sign rates measured before the
    scenarios and after the entry scenario, and the entry mode's sign share."""
    ref = (row["raw_sign_per_s"] + row.get("raw_sign_per_s_after_entry", row["raw_sign_per_s"])) / 2
    sign_cpu = (row["raw_sign_cpu_us"] + row.get("raw_sign_cpu_us_after_entry", row["raw_sign_cpu_us"])) / 2
    row["raw_sign_per_s_ref"] = round(ref)
    for mode, r in row["modes"].items():
        r["ratio_to_raw_sign"] = round(r["entries_per_s"] / ref, 2)
        signer_cpu = r["cpu_us_per_entry"]["signer"]
        if mode == "entry" and signer_cpu:
            r["sign_share_of_signer_cpu"] = round(sign_cpu / signer_cpu, 2)
    return row


def run(events: int = 20_000, *, latency_events: int = 1000, backends: list[str] | None = None,
        modes: tuple[str, ...] = MODES, profile: str | None = None, signing_nice: int | None = None,
        log: Log = lambda msg: None) -> dict[str, Any]:
    """Every backend x mode on a private embedded broker; returns a JSON-able dict.
    ``profile``: also cProfile an in-process signer on that backend (entry mode);
    ``signing_nice``: the signers' ``--signing-nice`` (None: their default)."""
    from ledgerstream.core import mldsa
    from ledgerstream.core.config import Topics
    from ledgerstream.signer_worker.settings import DEFAULT_BATCH_SIZE, SignerSettings
    from ledgerstream.stack.kafka import KafkaBroker

    backends = backends or mldsa.available_backends()
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {}
    floor: dict[str, Any] | None = None
    profile_text = None
    with tempfile.TemporaryDirectory(prefix="ledgerstream-bench-signer-") as tmp:
        work = Path(tmp)
        key_path = work / "signer.pem"
        mldsa.save_private_key(mldsa.PrivateKey.generate(), key_path)
        log("starting a private embedded Kafka broker ...")
        broker = KafkaBroker(work / "kafka")
        broker.start()
        try:
            warmup = _warm_up(broker.bootstrap, key_path, work, backends[0], log, broker.pid)
            for backend in backends:
                log(f"[{backend}] raw ML-DSA-65 sign rate ...")
                raw = mldsa.measure_sign_rate(backend, 2.0)
                row: dict[str, Any] = {"raw_sign_per_s": round(raw), "raw_sign_cpu_us": round(_sign_cpu_us(backend)),
                                       "modes": {}}
                for mode in modes:
                    r = bench_scenario(broker.bootstrap, key_path, work, backend, mode, events, latency_events,
                                       raw, log, broker.pid, signing_nice)
                    if mode == "entry":  # measure again: the host's speed may have moved meanwhile
                        row["raw_sign_per_s_after_entry"] = round(mldsa.measure_sign_rate(backend, 2.0))
                        row["raw_sign_cpu_us_after_entry"] = round(_sign_cpu_us(backend))
                    row["modes"][mode] = r
                results[backend] = _with_ratios(row)
            checkpoint = next((r["modes"]["checkpoint"] for r in results.values() if "checkpoint" in r["modes"]), None)
            if checkpoint is not None:  # the baseline: the same drain with no ledger work
                floor = kafka_floor(broker.bootstrap, work, events, checkpoint["entry_bytes_mean"], log, broker.pid)
                floor["checkpoint_mode_share"] = round(checkpoint["entries_per_s"] / max(floor["records_per_s"], 1), 2)
            if profile:
                log(f"[{profile}/entry] cProfile of an in-process signer ...")
                profile_text = profile_in_process(broker.bootstrap, profile, "entry", events)
                log(profile_text)
        finally:
            broker.stop()
    met = {b: r["modes"]["entry"]["ratio_to_raw_sign"] >= GOAL_RATIO
           for b, r in results.items() if "entry" in r["modes"]}
    defaults = SignerSettings(bootstrap="", topics=Topics.with_prefix(""), key_path=Path())
    return {
        "benchmark": "signer", "events": events, "latency_events": latency_events,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_1m_before": round(load_before, 2), "load_avg_1m_after": round(os.getloadavg()[0], 2)},
        "broker_warmup_us_per_record": warmup,
        "signer": {"batch_size": dict(DEFAULT_BATCH_SIZE), "batch_ms": defaults.batch_ms,
                   "checkpoint_every": defaults.checkpoint_every, "leader_election": False, "tsa": None,
                   "signing_nice": defaults.signing_nice if signing_nice is None else signing_nice},
        "backends": results,
        **({"kafka_floor": floor} if floor else {}),
        "goal": {"entry_mode_ratio_to_raw_sign": GOAL_RATIO, "met": met},
        **({"profile": profile_text} if profile_text else {}),
    }


def render(result: dict[str, Any], console: Any) -> None:
    """The result as a rich table."""
    from rich.table import Table

    m = result["machine"]
    table = Table(title=f"ledgerstream signer: {result['events']} actions drained, {result['latency_events']} paced "
                        f"({m['cpus']} CPUs, load {m['load_avg_1m_before']} -> {m['load_avg_1m_after']})")
    for col in ("backend", "mode", "raw sign/s (before / after)", "entries/s", "ratio", "CPU µs/entry signer+broker (sign)",
                "sign share", "latency p50 ms", "p99 ms", "max ms", "paced at /s", "entry bytes"):
        table.add_column(col, justify="left" if col in ("backend", "mode") else "right")
    for backend, row in result["backends"].items():
        for mode, r in row["modes"].items():
            ratio = f"{r['ratio_to_raw_sign']:.2f}"
            if mode == "entry":
                ratio = f"[{'green' if r['ratio_to_raw_sign'] >= GOAL_RATIO else 'red'}]{ratio}[/]"
            lat, cpu = r["latency_ms"], r["cpu_us_per_entry"]
            raw = f"{row['raw_sign_per_s']:,}"
            if "raw_sign_per_s_after_entry" in row:
                raw += f" / {row['raw_sign_per_s_after_entry']:,}"
            table.add_row(backend, mode, raw, f"{r['entries_per_s']:,}", ratio,
                          f"{cpu['signer']}+{cpu['broker']} ({row['raw_sign_cpu_us']})",
                          str(r.get("sign_share_of_signer_cpu", "")), f"{lat['p50']}",
                          f"{lat['p99']}", f"{lat['max']}", f"{r['latency_offered_per_s']:,}",
                          f"{r['entry_bytes_mean']:,}")
    console.print(table)
    console.print(f"goal: entry-mode entries/s >= {GOAL_RATIO} x raw sign/s: "
                  + ", ".join(f"{b} {'met' if ok else 'NOT met'}" for b, ok in result["goal"]["met"].items()))
    floor = result.get("kafka_floor")
    if floor is not None:
        cpu = floor["cpu_us_per_record"]
        console.print(f"Kafka floor (the signer's transactional loop, no ledger work, {floor['record_bytes']:,}-byte "
                      f"records): {floor['records_per_s']:,} records/s, CPU µs/record relay+broker "
                      f"{cpu['relay']}+{cpu['broker']}; checkpoint mode reaches {floor['checkpoint_mode_share']} of it")
    cmp = result.get("compare")
    if cmp is not None:
        t = cmp["tessera"]
        if "skipped" in t:
            console.print(f"Tessera: not measured ({t['skipped']})")
        else:
            console.print(f"checkpoint mode {cmp['checkpoint_mode_entries_per_s']:,} entries/s vs Tessera v1.0.4 POSIX "
                          f"{t['entries_per_s']:,} appends/s ({t['adders']} adders, {t['seconds']} s): "
                          f"ratio {cmp['ratio']} (goal >= 1)")


def profile_in_process(bootstrap: str, backend: str, mode: str = "entry", events: int = 5000,
                       top: int = 25) -> str:
    """cProfile of an in-process SignerWorker draining ``events`` actions (a diagnosis aid:
    py-spy is not available everywhere). Returns the pstats text, by internal time."""
    from ledgerstream.core import mldsa
    from ledgerstream.signer_worker.loop import SignerWorker
    from ledgerstream.signer_worker.settings import SignerSettings

    topics = _backlog(bootstrap, "benchprof", events)
    worker = SignerWorker(SignerSettings(bootstrap=bootstrap, topics=topics, key_path=Path(os.devnull),
                                         signing_mode=mode, leader_election=False),
                          mldsa.PrivateKey.generate(backend))
    stop = threading.Event()

    def watch() -> None:
        while worker.state.next_seq < events and not stop.is_set():
            time.sleep(0.01)
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        worker.run(stop)
    finally:
        profiler.disable()
        stop.set()
    delete_topics(bootstrap, topics)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()

