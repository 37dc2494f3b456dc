"""``ledgerstream bench verifier``: entries verified per second, against what signing costs.

Scenarios, one run, one machine:

* ``raw_sign`` / ``raw_verify``: bare ML-DSA-65 sign and verify per second on one thread,
  for every available backend (the signer's ceiling is its sign rate).
* ``checker_1_thread``: the pure checker (core/verify.py) over N pre-built entries (entry
  signing mode, a checkpoint every 1,000): decode, re-hash, verify the signature, chain,
  per-agent chain, Merkle tree, checkpoints.
* ``checker_threads``: the same with signature checks spread over a thread pool (what the
  workers and ``ledgerstream verify`` do).
* ``worker_end_to_end``: a real verifier worker process (faust) over the same N entries
  written to Kafka in signer-like transactions: ``steady_per_s`` from its first reported
  progress to the last entry, ``wall_s`` including its start-up.

The ledger is built by the signer's own code (``signer_worker.sequencer``), so the entries
are exactly what a running signer writes, and timing it gives the signer's own per-entry
rate (``signer_sequencer``: hash, sign, encode; an upper bound of what the signer sustains).
Goal: verify at least twice that fast; ``met_against_pyca_raw_sign`` also compares with the
bare pyca sign rate (the signer's ceiling without liboqs).
"""
from __future__ import annotations

from ledgerstream.stack.topics import delete_topics

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from ledgerstream.core import codec, mldsa, records

CHECKPOINT_EVERY = 1000
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
    out = {}
    for backend in mldsa.available_backends():
        key = mldsa.PrivateKey.generate(backend)
        message = bytes(64)
        signature = key.sign(message)
        pub = key.public_key()
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            pub.verify(signature, message)
            count += 1
        out[backend] = {"sign_per_s": round(mldsa.measure_sign_rate(backend, seconds)),
                        "verify_per_s": round(count / (time.perf_counter() - start))}
    return out


def bench_checker(key: mldsa.PrivateKey, entries: list[bytes], checkpoints: list[bytes], threads: int) -> dict[str, Any]:
    from ledgerstream.core.verify import Checker, CheckerConfig, chunked_map

    checker = Checker(CheckerConfig.from_keys([key.public_key()]))
    start, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        map_fn = chunked_map(pool, threads)
        for i in range(0, len(entries), 500):
            checker.feed_entries([(j, entries[j]) for j in range(i, min(i + 500, len(entries)))], map_fn)
        checker.feed_checkpoints(list(enumerate(checkpoints)))
        findings = checker.finish()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if findings or checker.position != len(entries):
        raise RuntimeError(f"benchmark ledger did not verify: {findings[:3]}")
    return {"threads": threads, "entries": len(entries), "seconds": round(elapsed, 2),
            "per_s": round(len(entries) / elapsed), "per_cpu_s": round(len(entries) / cpu)}


def bench_worker(key: mldsa.PrivateKey, entries: list[bytes], checkpoints: list[bytes], bootstrap: str,
                 topics: Any, home: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"bench-{uuid.uuid4().hex}",
                         "message.max.bytes": 8 * 1024 * 1024, "linger.ms": 5})
    producer.init_transactions(60)
    for i in range(0, len(entries), CHECKPOINT_EVERY):  # one transaction per checkpoint, like the signer
        producer.begin_transaction()
        for raw in entries[i:i + CHECKPOINT_EVERY]:
            producer.produce(topics.entries, raw)
            producer.poll(0)
        producer.produce(topics.checkpoints, checkpoints[i // CHECKPOINT_EVERY])
        producer.commit_transaction(60)
    (home / "keys").mkdir(parents=True, exist_ok=True)
    (home / "keys" / "signer.pub.pem").write_bytes(mldsa.public_key_pem(key.public_key()))
    status_path = home / "verifiers" / "bench" / "status.json"
    log(f"worker: verifying {len(entries)} entries from Kafka ...")
    start, cpu = time.perf_counter(), _children_cpu()
    proc = subprocess.Popen([sys.executable, "-m", "ledgerstream.verifier_worker", "--home", str(home), "--id", "bench",
                             "--bootstrap", bootstrap, "--topic-prefix", topics.entries[: -len("entries")],
                             "--status-seconds", "0.2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first: tuple[float, int] | None = None
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the verifier worker exited with {proc.returncode}")
            try:
                position = json.loads(status_path.read_text())["position"]
            except (OSError, ValueError, KeyError):
                position = 0
            now = time.perf_counter()
            if position and first is None:
                first = (now, position)
            if position >= len(entries):
                break
            if now - start > 600:
                raise RuntimeError("the verifier worker did not finish within 600 s")
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(30)
    cpu = _children_cpu() - cpu
    steady = (len(entries) - first[1]) / (now - first[0]) if first and now > first[0] else None
    return {"entries": len(entries), "wall_s": round(now - start, 2),
            "steady_per_s": round(steady) if steady else None, "per_cpu_s": round(len(entries) / cpu),
            "note": "wall_s and per_cpu_s include process start-up (both processes: faust and checker)"}


def _children_cpu() -> float:
    """CPU seconds (user + system) of finished child processes (the worker and its checker)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(entries: int = 10_000, bootstrap: str | None = None, threads: int | None = None,
        log: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Every scenario; starts a private embedded Kafka when no bootstrap is given."""
    from ledgerstream.core.config import Topics
    from ledgerstream.stack.kafka import KafkaBroker
    from ledgerstream.stack.topics import ensure_topics

    threads = threads or max(2, os.cpu_count() or 2)
    backend = mldsa.default_backend()
    log(f"raw ML-DSA-65 rates ({', '.join(mldsa.available_backends())}) ...")
    results: dict[str, Any] = {"raw": raw_rates()}
    key = mldsa.PrivateKey.generate()
    log(f"building {entries} entries with the signer's sequencer ({backend}) ...")
    start = time.perf_counter()
    ledger, checkpoints = build_ledger(key, entries)
    results["signer_sequencer"] = {"entries": entries, "per_s": round(entries / (time.perf_counter() - start)),
                                   "note": "the signer's own per-entry work (hash, sign, encode), no Kafka"}
    log("pure checker ...")
    results["checker_1_thread"] = bench_checker(key, ledger, checkpoints, 1)
    results["checker_threads"] = bench_checker(key, ledger, checkpoints, threads)
    broker = None
    tmp = tempfile.TemporaryDirectory(prefix="ledgerstream-bench-verifier-")
    try:
        if bootstrap is None:
            log("no Kafka configured: starting a private embedded broker ...")
            broker = KafkaBroker(Path(tmp.name) / "kafka")
            broker.start()
            bootstrap = broker.bootstrap
        topics = Topics.with_prefix(f"benchv-{uuid.uuid4().hex[:8]}.")
        ensure_topics(bootstrap, topics)
        try:
            results["worker_end_to_end"] = bench_worker(key, ledger, checkpoints, bootstrap, topics,
                                                        Path(tmp.name) / "home", log)
        finally:
            delete_topics(bootstrap, topics)
    finally:
        if broker is not None:
            broker.stop()
        tmp.cleanup()
    signer_rate = results["signer_sequencer"]["per_s"]
    rates = {"checker": max(results["checker_1_thread"]["per_s"], results["checker_threads"]["per_s"]),
             "worker": results["worker_end_to_end"]["steady_per_s"]}
    return {
        "benchmark": "verifier", "entries": entries, "backend": backend,
        "bootstrap": "embedded" if broker else bootstrap,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "scenarios": {"signer_sequencer": results["signer_sequencer"],
                      "checker_1_thread": results["checker_1_thread"], "checker_threads": results["checker_threads"],
                      "worker_end_to_end": results["worker_end_to_end"],
                      **{f"raw_{b}": r for b, r in results["raw"].items()}},
        "goal": {"signer_per_s": signer_rate, "target_per_s": round(GOAL_FACTOR * signer_rate),
                 **{f"{k}_per_s": v for k, v in rates.items()},
                 "met": all(v is not None and v >= GOAL_FACTOR * signer_rate for v in rates.values()),
                 "pyca_raw_sign_per_s": results["raw"].get("pyca", {}).get("sign_per_s"),
                 "met_against_pyca_raw_sign": all(v is not None and v >= GOAL_FACTOR * results["raw"].get("pyca", {})
                                                  .get("sign_per_s", float("inf")) for v in rates.values())},
    }

