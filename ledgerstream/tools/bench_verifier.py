"""``ledgerstream bench verifier``: entries verified per second, against what signing costs.

Scenarios, one run, one machine:

* ``raw_sign`` / ``raw_verify``: bare ML-DSA-65 sign and verify per second on one thread,
  for every available backend (the signer's ceiling is its sign rate).
* ``checker_1_thread``: the pure checker (core/verify/) over N pre-built entries (entry
  signing mode, a checkpoint every 1,000): decode, re-hash, verify the signature, chain,
  per-agent chain, Merkle tree, checkpoints.
* ``checker_threads``: the same with signature checks on ``--threads`` background threads
  (``SignaturePool``: a chunk per GIL-free liboqs call) while the feeding thread decodes,
  re-hashes and chains the next entries (what the
  workers and ``ledgerstream verify`` do).
* ``worker_end_to_end``: a real verifier worker process (faust) over the same N entries
  written to Kafka in signer-like transactions: ``steady_per_s`` and ``cpu_us_per_entry``
  between the batches its consumer group commits at about 20 % and 80 % of the ledger,
  ``wall_s`` including its start-up.

The ledger is built by the signer's own code (``signer_worker.sequencer``), so the entries
are exactly what a running signer writes, and timing it gives the signer's own per-entry
rate (``signer_sequencer``: hash, sign, encode; an upper bound of what the signer sustains).
Goal: verify at least twice that fast; ``met_against_pyca_raw_sign`` also compares with the
bare pyca sign rate (the signer's ceiling without liboqs).
"""
from __future__ import annotations

import bisect
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from ledgerstream.core import mldsa, procinfo, records
from ledgerstream.core.wire import avro_fast, codec
from ledgerstream.tools.proc_cpu import cpu_seconds, tree_cpu_seconds
from ledgerstream.core.kafka_security import kafka_config, role_env
from ledgerstream.tools.bench_kafka import private_kafka

CHECKPOINT_EVERY = 1000
BATCH = 1000  # entries per feed_entries call (the worker's default batch)
GOAL_FACTOR = 2.0


def _action(i: int) -> dict[str, Any]:
    payload = records.canonical_json({"tool": "search", "query": f"invoice {i}", "top_k": 5})
    salt = os.urandom(records.SALT_LEN)
    return {"event_id": str(uuid.uuid4()), "agent_id": f"agent-{i % 8}", "session_id": f"s-{i // 100}",
            "action_type": "tool:search", "payload": payload, "payload_salt": salt,
            "payload_hash": records.payload_commitment(salt, payload), "occurred_at": time.time_ns() // 1000,
            "links": [], "policy": None, "approvals": [], "trace": None,
            "producer": {"library": "ledgerstream", "version": "bench", "host": "bench", "pid": os.getpid(),
                         "adapter": None}, "offline": False}


def build_ledger(key: mldsa.PrivateKey, n: int) -> tuple[list[bytes], list[bytes]]:
    """N encoded entries and their checkpoints, made by the signer's sequencer."""
    from ledgerstream.signer_worker.sequencer import Sequencer, Source
    from ledgerstream.signer_worker.state import LedgerState

    state = LedgerState()
    seq = Sequencer(state, key)
    entries, checkpoints = [], []
    for i in range(n):
        outcome = seq.process(codec.encode("ActionEvent", _action(i)), Source("bench.actions", 0, i))
        entries.append(codec.encode("LedgerEntry", outcome.entry))
        if state.tree.size % CHECKPOINT_EVERY == 0 or i == n - 1:
            root, size = state.tree.root(), state.tree.size
            body = records.checkpoint_body("bench", size, root, state.head, time.time_ns() // 1000)
            checkpoints.append(codec.encode("Checkpoint", {
                "spec_version": 1, "origin": "bench", "tree_size": size, "root_hash": root, "chain_head": state.head,
                "created_at": time.time_ns() // 1000, "body": body, "key_id": key.public_key().key_id,
                "signature": key.sign(body)}))
    return entries, checkpoints


def raw_rates(seconds: float = 1.0) -> dict[str, dict[str, float]]:
    """One thread's ML-DSA-65 sign and verify rates per backend (each timed on its own)."""
    return {backend: {"sign_per_s": round(mldsa.measure_sign_rate(backend, seconds)),
                      "verify_per_s": round(mldsa.measure_verify_rate(backend, seconds))}
            for backend in mldsa.available_backends()}


def bench_checker(key: mldsa.PrivateKey, entries: list[bytes], checkpoints: list[bytes], threads: int) -> dict[str, Any]:
    """``threads``: signature-check threads beside the feeding one (0: all on one thread)."""
    from ledgerstream.core import interpreter
    from ledgerstream.core.verify import SWITCH_INTERVAL, Checker, CheckerConfig, SignaturePool

    checker = Checker(CheckerConfig.from_keys([key.public_key()]))
    start, cpu = time.perf_counter(), time.process_time()
    # as the workers run it (with one thread: the interval is moot, the collector is not)
    with interpreter.tuned(SWITCH_INTERVAL if threads else sys.getswitchinterval()), \
            ThreadPoolExecutor(max(1, threads)) as pool:
        signatures = SignaturePool(pool, threads) if threads else None
        for i in range(0, len(entries), BATCH):
            checker.feed_entries([(j, entries[j]) for j in range(i, min(i + BATCH, len(entries)))], signatures)
        checker.feed_checkpoints(list(enumerate(checkpoints)))
        findings = checker.finish()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if findings or checker.position != len(entries):
        raise RuntimeError(f"benchmark ledger did not verify: {findings[:3]}")
    return {"threads": threads, "entries": len(entries), "seconds": round(elapsed, 2),
            "per_s": round(len(entries) / elapsed), "per_cpu_s": round(len(entries) / cpu),
            "journal_restore": _journal_restore(checker) if not threads else None}


def _journal_restore(checker: Any) -> dict[str, Any]:
    """The baseline for a worker's restart: what restoring the in-memory history from a journal
    with a line per entry costs (how workers restarted before D38), for this checker's ledger."""
    from ledgerstream.core.verify import Checker

    journal = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in checker.drain_journal()).encode()
    state = json.loads(json.dumps(checker.export_state()))
    start = time.perf_counter()
    restored = Checker.restore(checker.config, state, (json.loads(line) for line in journal.splitlines()))
    seconds = time.perf_counter() - start
    if restored.tree.root() != checker.tree.root():
        raise RuntimeError("the journal did not restore the same tree")
    return {"seconds": round(seconds, 2), "journal_bytes_per_entry": round(len(journal) / max(1, checker.position)),
            "note": "in process: parse the journal and rebuild the in-memory history (no Python start-up)"}


def bench_worker(key: mldsa.PrivateKey, entries: list[bytes], checkpoints: list[bytes], bootstrap: str,
                 topics: Any, home: Path, log: Callable[[str], None], broker_pid: int | None = None) -> dict[str, Any]:
    """A real worker (default settings) over the entries, written in signer-like transactions.
    Progress is read from the offsets its consumer group commits after each batch (what lag
    tools see), which leaves the worker's own cadence (state saves, status) untouched."""
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    offsets: list[int] = []  # of the entry records, as the broker assigned them
    producer = Producer(kafka_config(bootstrap, "admin", {"transactional.id": f"bench-{uuid.uuid4().hex}",
                                                          "message.max.bytes": 8 * 1024 * 1024, "linger.ms": 5}))
    producer.init_transactions(60)
    for i in range(0, len(entries), CHECKPOINT_EVERY):  # one transaction per checkpoint, like the signer
        producer.begin_transaction()
        for raw in entries[i:i + CHECKPOINT_EVERY]:
            producer.produce(topics.entries, raw, on_delivery=lambda err, msg: offsets.append(msg.offset()))
            producer.poll(0)
        producer.produce(topics.checkpoints, checkpoints[i // CHECKPOINT_EVERY])
        producer.commit_transaction(60)
    producer.flush(30)
    offsets.sort()
    (home / "keys").mkdir(parents=True, exist_ok=True)
    (home / "keys" / "signer.pub.pem").write_bytes(mldsa.public_key_pem(key.public_key()))
    from ledgerstream.core.alert_signature import verifier_key_path

    alert_key = verifier_key_path(home, "bench")  # the worker signs its alerts with it
    mldsa.save_private_key(mldsa.PrivateKey.generate(), alert_key, overwrite=True)
    prefix = topics.entries[: -len("entries")]
    group = Consumer(kafka_config(bootstrap, "admin", {"group.id": f"{prefix}verifier-bench",
                                                       "enable.auto.commit": False}))
    partition = [TopicPartition(topics.entries, 0)]

    last = 0

    def verified() -> int:
        """Entries below the group's committed offset (the last known count while the group
        coordinator is still loading on a fresh broker: NOT_COORDINATOR and the like)."""
        nonlocal last
        try:
            committed = group.committed(partition, timeout=10)[0].offset
        except KafkaException:
            return last
        last = bisect.bisect_left(offsets, committed) if committed >= 0 else 0
        return last

    broker_now = (lambda: cpu_seconds(broker_pid)) if broker_pid else (lambda: float("nan"))
    log(f"worker: verifying {len(entries)} entries from Kafka ...")

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "ledgerstream.verifier_worker", "--home", str(home),
                                 "--id", "bench", "--bootstrap", bootstrap, "--topic-prefix", prefix],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=dict(os.environ, **role_env(bootstrap, "admin")))

    start = time.perf_counter()
    proc = spawn()
    progress: list[tuple[float, int, float, float]] = []  # at each committed batch: time, entries, CPU worker, broker
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the verifier worker exited with {proc.returncode}")
            done, now = verified(), time.perf_counter()
            if done and (not progress or done > progress[-1][1]):
                progress.append((now, done, tree_cpu_seconds(proc.pid), broker_now()))
            if done >= len(entries):
                break
            if now - start > 600:
                raise RuntimeError("the verifier worker did not finish within 600 s")
            time.sleep(0.02)
        status_path = home / "verifiers" / "bench" / "status.json"
        _wait_for_position(status_path, len(entries), proc)
        log("worker: kill -9, then a restart on the saved state ...")
        time.sleep(1.5)  # the status timer saves what is left once batches stop
        proc.kill()
        proc.wait(30)
        restarted = time.perf_counter()
        proc = spawn()
        resumed = _wait_for_position(status_path, len(entries), proc, pid=proc.pid)
        restart = {"restart_s": round(time.perf_counter() - restarted, 2), "resumed_at": resumed["position"],
                   "checker_rss_mb": procinfo.rss_mb(int(resumed["checker_pid"])),
                   "note": "kill -9 of a caught-up worker, then seconds from starting it again until its "
                           "restored state is written to status.json (Python and imports included); "
                           "checker_rss_mb: its checker process at that moment"}
    finally:
        proc.terminate()
        proc.wait(30)
        group.close()
    first, last = _steady_window(progress, len(entries))
    counted = last[1] - first[1]
    return {"entries": len(entries), "wall_s": round(now - start, 2),
            "steady_per_s": round(counted / (last[0] - first[0])) if counted else None,
            "steady_entries": counted,
            "cpu_us_per_entry": _per_entry_us(last[2] - first[2], counted),
            "broker_cpu_us_per_entry": _per_entry_us(last[3] - first[3], counted),
            "restart": restart,
            "note": "steady_per_s and cpu_us_per_entry (worker + checker process, all threads) between the "
                    "batches committed at about 20 % and 80 % of the ledger; wall_s includes start-up"}


def _steady_window(progress: list[tuple[float, int, float, float]], entries: int
                   ) -> tuple[tuple[float, int, float, float], tuple[float, int, float, float]]:
    """The first and last progress points between 20 % and 80 % of the entries: there the
    worker has batches in flight at both ends, so the commit lags the work equally (from the
    first commit on, the worker has already checked the batches behind it). Too few points
    (a short ledger): the first and last commit."""
    inside = [p for p in progress if 0.2 * entries <= p[1] <= 0.8 * entries]
    if len(inside) >= 3:
        return inside[0], inside[-1]
    return progress[0], progress[-1]


def _wait_for_position(status_path: Path, entries: int, proc: subprocess.Popen[bytes], timeout: float = 30.0,
                       pid: int | None = None) -> dict[str, Any]:
    """The worker's own status must confirm it verified every entry (not only consumed it);
    with ``pid``, a status written by that process (a restarted worker). Returns the status."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = json.loads(status_path.read_text())
            if status["position"] >= entries and (pid is None or status["pid"] == pid):
                return status
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"the verifier worker did not report all {entries} entries verified")
        time.sleep(0.02)


def _per_entry_us(seconds: float, entries: int) -> float | None:
    return round(seconds / entries * 1e6, 1) if entries and seconds == seconds else None  # NaN: unknown


def signer_rate_from(report: dict[str, Any], backend: str) -> float:
    """Entry-mode entries/s of ``backend`` in a ``ledgerstream bench signer --json`` report."""
    try:
        return float(report["backends"][backend]["modes"]["entry"]["entries_per_s"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"not a 'bench signer' report with an entry-mode {backend} result") from None


def run(entries: int = 60_000, bootstrap: str | None = None, threads: int | None = None,
        log: Callable[[str], None] = lambda msg: None, signer_report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every scenario; starts a private embedded Kafka when no bootstrap is given. The goal
    compares with ``signer_report`` (a ``bench signer`` result: the real signer's rate) when
    given, else with the ``signer_sequencer`` scenario of this run."""
    threads = threads or max(1, (os.cpu_count() or 2) - 1)
    backend = mldsa.default_backend()
    measured_signer = signer_rate_from(signer_report, backend) if signer_report is not None else None
    if not avro_fast.compiled():
        log("warning: the compiled entry reader is not installed (no C compiler at install?): "
            "every entry is decoded by fastavro, slower")
    log(f"raw ML-DSA-65 rates ({', '.join(mldsa.available_backends())}) ...")
    results: dict[str, Any] = {"raw": raw_rates()}
    key = mldsa.PrivateKey.generate()
    log(f"building {entries} entries with the signer's sequencer ({backend}) ...")
    start = time.perf_counter()
    ledger, checkpoints = build_ledger(key, entries)
    results["signer_sequencer"] = {"entries": entries, "per_s": round(entries / (time.perf_counter() - start)),
                                   "note": "the signer's own per-entry work (hash, sign, encode), no Kafka"}
    log("pure checker ...")
    results["checker_1_thread"] = bench_checker(key, ledger, checkpoints, 0)
    results["checker_threads"] = bench_checker(key, ledger, checkpoints, threads)
    with private_kafka(bootstrap, "benchv", log) as kafka:
        results["worker_end_to_end"] = bench_worker(key, ledger, checkpoints, kafka.bootstrap, kafka.topics,
                                                    kafka.scratch / "home", log, kafka.broker_pid)
        bootstrap_used = "embedded" if kafka.embedded else kafka.bootstrap
    signer_rate = measured_signer or results["signer_sequencer"]["per_s"]
    target = GOAL_FACTOR * signer_rate
    pyca_target = GOAL_FACTOR * results["raw"].get("pyca", {}).get("sign_per_s", float("inf"))
    checker = max(results["checker_1_thread"]["per_s"], results["checker_threads"]["per_s"])
    worker = results["worker_end_to_end"]["steady_per_s"]
    return {
        "benchmark": "verifier", "entries": entries, "backend": backend,
        "bootstrap": bootstrap_used,
        # the compiled LedgerEntry reader (setup.py): without it every entry goes through fastavro
        "compiled_entry_reader": avro_fast.compiled(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "scenarios": {"signer_sequencer": results["signer_sequencer"],
                      "checker_1_thread": results["checker_1_thread"], "checker_threads": results["checker_threads"],
                      "worker_end_to_end": results["worker_end_to_end"],
                      **{f"raw_{b}": r for b, r in results["raw"].items()}},
        # the goal is the verifier's: a worker as deployed; the pure checker (how
        # `ledgerstream verify` runs, in one process) is judged beside it
        "goal": {"signer_per_s": round(signer_rate), "target_per_s": round(target),
                 "signer_source": "bench signer report" if measured_signer else "signer_sequencer",
                 "checker_per_s": checker, "worker_per_s": worker,
                 "met": worker is not None and worker >= target, "checker_met": checker >= target,
                 "pyca_raw_sign_per_s": results["raw"].get("pyca", {}).get("sign_per_s"),
                 "met_against_pyca_raw_sign": worker is not None and worker >= pyca_target},
    }

