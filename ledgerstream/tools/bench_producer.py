"""``ledgerstream bench producer``: what ``emit`` costs the agent, and what it sustains.

Five scenarios in one run, on the same machine and payload:

* ``baseline_produce``: a bare confluent-kafka ``produce()`` loop of one pre-encoded record
  (idempotent, acks=all): the floor any Kafka client library pays.
* ``emit_broker_up``: ``Ledger.emit`` with Kafka reachable.
* ``emit_broker_down``: ``Ledger.emit`` with nothing listening at the bootstrap address, so
  every event goes to the spool only.
* ``emit_paced``: ``Ledger.emit`` at a steady 1,000 events/s (an agent's realistic peak),
  broker up.
* ``noise_floor``: emit's own CPU work (canonicalise + commit the payload) with no Ledger and
  no other thread: what this machine's scheduler alone adds to the tail. Read the emit
  percentiles against it; on a loaded machine its p99 can exceed the goal by itself.

Latency is the wall time of each call on the caller's thread (p50/p99/p99.9 in
microseconds). Throughput is events / (first call -> every event acknowledged by Kafka,
or journaled to the spool when the broker is down).
"""
from __future__ import annotations

from ledgerstream.core.kafka_security import kafka_config
from ledgerstream.tools.bench_kafka import private_kafka

import os
import platform
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

GOAL_P99_US = 100.0
PACED_RATE = 1000
WARMUP = 2000

PAYLOAD = {"query": "overdue invoices for ACME Corp in Q3", "top_k": 5,
           "filters": {"status": ["open", "overdue"], "currency": "EUR"}, "caller": "billing-agent"}


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    s = sorted(samples_ns)
    n = len(s)

    def pick(q: float) -> float:
        return round(s[min(n - 1, int(q * n))] / 1000, 1)

    return {"p50_us": pick(0.50), "p99_us": pick(0.99), "p999_us": pick(0.999), "max_us": round(s[-1] / 1000, 1),
            "mean_us": round(sum(s) / n / 1000, 1)}


def _timed(n: int, call: Callable[[int], Any], pace: float = 0.0) -> tuple[list[int], float]:
    samples = [0] * n
    clock = time.perf_counter_ns
    start = time.perf_counter()
    next_at = start
    for i in range(n):
        if pace:
            next_at += pace
            while time.perf_counter() < next_at:
                time.sleep(max(0.0, next_at - time.perf_counter()) * 0.9)
        t0 = clock()
        call(i)
        samples[i] = clock() - t0
    return samples, start


def bench_baseline(bootstrap: str, topic: str, events: int) -> dict[str, Any]:
    from confluent_kafka import Producer

    from ledgerstream.producers.delivery import PRODUCER_DEFAULTS, kafka_log
    from ledgerstream.producers.ledger import Ledger

    with tempfile.TemporaryDirectory() as spool:  # one real encoded record to send
        led = Ledger("bench-baseline", spool_dir=spool)
        led.emit("tool:search", PAYLOAD)
        led.close()
        from ledgerstream.producers.spool import Spool

        sp = Spool(Path(spool) / "bench-baseline")
        record = next(sp.records())
        sp.close()
    producer = Producer(kafka_config(bootstrap, "producer", {**PRODUCER_DEFAULTS, "logger": kafka_log}))
    for _ in range(WARMUP):
        producer.produce(topic, record, b"bench-baseline")
    producer.flush(30)
    samples, start = _timed(events, lambda i: producer.produce(topic, record, b"bench-baseline"))
    left = producer.flush(60)
    elapsed = time.perf_counter() - start
    return {**percentiles(samples), "events_per_s": round(events / elapsed), "undelivered": left,
            "record_bytes": len(record)}


def bench_floor(events: int) -> dict[str, Any]:
    from ledgerstream.core import records
    from ledgerstream.producers.canonical import canonical_payload

    salt = bytes(32)
    for _ in range(WARMUP):
        records.payload_commitment(salt, canonical_payload(PAYLOAD))
    samples, start = _timed(events, lambda i: records.payload_commitment(salt, canonical_payload(PAYLOAD)))
    return {**percentiles(samples), "events_per_s": round(events / (time.perf_counter() - start))}


def bench_emit(bootstrap: str, topics: Any, events: int, *, down: bool = False, pace: float = 0.0) -> dict[str, Any]:
    from ledgerstream.producers.ledger import connect

    with tempfile.TemporaryDirectory() as spool:
        agent = f"bench-{'down' if down else 'up'}-{uuid.uuid4().hex[:6]}"
        led = connect(agent, bootstrap, topics=topics, spool_dir=spool, max_spool_bytes=4 * 1024**3)
        try:
            for i in range(WARMUP):
                led.emit("tool:search", PAYLOAD)
            if not down:
                led.flush(30)
            else:
                _wait(lambda: led.stats()["journaled"] >= WARMUP, 30)
            base = led.stats()["journaled"]
            samples, start = _timed(events, lambda i: led.emit("tool:search", PAYLOAD), pace)
            if down:
                done = _wait(lambda: led.stats()["journaled"] >= base + events, 120)
                left = led.stats()["undelivered"]
            else:
                left = led.flush(120)
                done = left == 0
            elapsed = time.perf_counter() - start
            stats = led.stats()
        finally:
            led.close(timeout=2.0)
    return {**percentiles(samples), "events_per_s": round(events / elapsed) if done else None,
            "undelivered": left, "dropped": stats["dropped"], "completed": done}


def _wait(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def run(events: int = 20_000, bootstrap: str | None = None,
        log: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Run every scenario; starts a private embedded Kafka when no bootstrap is given."""
    from ledgerstream.stack.kafka import free_port

    results: dict[str, Any] = {}
    with private_kafka(bootstrap, "bench", log) as kafka:
        bootstrap, topics, embedded = kafka.bootstrap, kafka.topics, kafka.embedded
        log(f"noise floor: emit's CPU work alone x {events} ...")
        results["noise_floor"] = bench_floor(events)
        log(f"baseline: bare confluent-kafka produce() x {events} ...")
        results["baseline_produce"] = bench_baseline(bootstrap, topics.actions, events)
        log(f"emit, broker up x {events} ...")
        results["emit_broker_up"] = bench_emit(bootstrap, topics, events)
        log(f"emit, broker down (spool only) x {events} ...")
        results["emit_broker_down"] = bench_emit(f"127.0.0.1:{free_port()}", topics, events, down=True)
        paced = min(events, 3 * PACED_RATE)
        log(f"emit at {PACED_RATE}/s x {paced} ...")
        results["emit_paced"] = {**bench_emit(bootstrap, topics, paced, pace=1 / PACED_RATE),
                                 "offered_per_s": PACED_RATE}
    worst = max(results["emit_broker_up"]["p99_us"], results["emit_broker_down"]["p99_us"])
    return {
        "benchmark": "producer", "events": events, "bootstrap": "embedded" if embedded else bootstrap,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "scenarios": results,
        "goal": {"emit_p99_us": GOAL_P99_US, "worst_emit_p99_us": worst, "met": worst < GOAL_P99_US},
    }

