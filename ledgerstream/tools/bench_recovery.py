"""``ledgerstream bench recovery``: what a signer restart costs as the ledger grows.

One run, one machine, private topics on a private embedded broker (or the given one). For
each ledger size, smallest first, the ledger is extended by the signer's own sequencer
(``bench_ledger``; checkpoint signing mode, so millions of entries are affordable: the
signer adopts such entries like its own), and then a real signer process
(``python -m ledgerstream.signer_worker``, entry signing mode) is

1. started on it: its ``recovery_s`` (status file: process start until ready to commit)
   and its RSS once ready;
2. killed with SIGKILL and started again at once, as a supervisor would, with one action
   produced right after the kill: the seconds from the kill until that action's entry is
   committed (visible to a read_committed consumer; it must be entry ``size``, continuing
   the same chain), the new process's ``recovery_s`` and its RSS.

The first start replays the whole ledger (nothing else wrote a snapshot) and then writes a
snapshot at once; the bench waits for it before the kill, so the restart adopts it and
replays only the tail (decision D35; ``recovered_from`` says which). The signer's Merkle
state is a compact range, so its RSS grows only with the dedup index (at most
``--dedup-horizon`` event ids). The ``growth`` ratios compare the largest size with the
smallest.
"""
from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from ledgerstream.core import mldsa, procinfo
from ledgerstream.core.kafka_security import kafka_config, role_env
from ledgerstream.core.wire import codec
from ledgerstream.tools.bench_kafka import private_kafka
from ledgerstream.tools.bench_ledger import LedgerWriter

#: seconds a signer may take to become ready (a full replay of millions of entries is slow)
READY_TIMEOUT = 1800.0


class _Signer:
    """One signer process on the bench topics, with its own status file."""

    def __init__(self, bootstrap: str, key_path: Path, prefix: str, workdir: Path, name: str) -> None:
        self.status_file = workdir / f"{name}.status.json"
        self.status_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "ledgerstream.signer_worker", "--bootstrap", bootstrap, "--key", str(key_path),
                "--topic-prefix", prefix, "--status-file", str(self.status_file), "--signing-mode", "entry",
                "--no-leader-election", "--watchdog-seconds", "0"]
        with open(workdir / f"{name}.log", "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, **role_env(bootstrap, "admin")))

    def ready(self, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """The status once the process reports ``recovery_s``."""
        return self._wait(lambda st: st.get("recovery_s") is not None, timeout, "ready")

    def snapshot_written(self, timeout: float = 120.0) -> dict[str, Any]:
        """The status once the process has written a snapshot (after a full replay it writes
        one at once), or reports that snapshots are off."""
        return self._wait(lambda st: (st.get("snapshots") or {}).get("written", 0) > 0
                          or (st.get("snapshots") or {}).get("off"), timeout, "done with its first snapshot")

    def _wait(self, done: Callable[[dict[str, Any]], Any], timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the signer exited with {self.proc.returncode} (see its log)")
            try:
                status = json.loads(self.status_file.read_text())
            except (OSError, ValueError):
                status = {}
            if status.get("pid") == self.proc.pid and done(status):
                return status
            time.sleep(0.05)
        raise RuntimeError(f"the signer was not {what} after {timeout:.0f} s")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def _committed_after(bootstrap: str, topic: str) -> Callable[[float], tuple[float, bytes]]:
    """A read_committed consumer at the end of ``topic`` now; the returned function waits
    (up to ``timeout`` seconds) for the next committed record: when it came, and its bytes."""
    from confluent_kafka import OFFSET_END, Consumer, TopicPartition

    consumer = Consumer(kafka_config(bootstrap, "admin", {
        "group.id": f"bench-recovery-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "isolation.level": "read_committed", "fetch.wait.max.ms": 20}))
    consumer.assign([TopicPartition(topic, 0, OFFSET_END)])
    consumer.consume(1, timeout=1.0)  # resolve OFFSET_END before anything new is written

    def wait(timeout: float) -> tuple[float, bytes]:
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                for m in consumer.consume(1, timeout=0.05):
                    if m.error() is None:
                        return time.time(), m.value()
            raise RuntimeError(f"no entry committed within {timeout:.0f} s")
        finally:
            consumer.close()
    return wait


def _point(bootstrap: str, topics: Any, key_path: Path, workdir: Path, size: int,
           log: Callable[[str], None]) -> dict[str, Any]:
    from confluent_kafka import Producer

    from ledgerstream.tools.bench_ledger import action_record

    prefix = topics.actions[: -len("actions")]
    first = _Signer(bootstrap, key_path, prefix, workdir, f"signer-{size}-a")
    try:
        start = first.ready()
        start_rss = procinfo.rss_mb(first.proc.pid)
        first.snapshot_written()
        log(f"  first start: ready after {start['recovery_s']} s, RSS {start_rss} MB; kill -9 ...")
        committed = _committed_after(bootstrap, topics.entries)
        producer = Producer(kafka_config(bootstrap, "admin", {"acks": "all", "enable.idempotence": True}))
        killed_at = time.time()
        first.kill()
    finally:
        first.stop()
    second = _Signer(bootstrap, key_path, prefix, workdir, f"signer-{size}-b")
    try:
        producer.produce(topics.actions, action_record(size, "after-kill"), key=b"after-kill")
        producer.flush(30)
        committed_at, raw = committed(READY_TIMEOUT)
        entry = codec.decode(raw, expect="LedgerEntry")[1]
        if (entry["seq"], entry["action"]["agent_id"]) != (size, "after-kill"):
            raise RuntimeError(f"the entry committed after the kill is seq {entry['seq']} of "
                               f"{entry['action']['agent_id']!r}, not seq {size} of 'after-kill'")
        again = second.ready(60)
        again_rss = procinfo.rss_mb(second.proc.pid)
        recovered_from = again.get("recovered_from")
    finally:
        second.stop()
    result = {"entries": size, "first_start": {"recovery_s": start["recovery_s"], "rss_mb": start_rss},
              "after_kill": {"recovery_s": again["recovery_s"], "rss_mb": again_rss,
                             "kill_to_commit_s": round(committed_at - killed_at, 2),
                             "recovered_from": recovered_from}}
    log(f"  after kill -9: recovery_s {again['recovery_s']}, kill to commit {result['after_kill']['kill_to_commit_s']} s, "
        f"RSS {again_rss} MB")
    return result


def run(sizes: tuple[int, ...] = (100_000, 1_000_000), bootstrap: str | None = None,
        log: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    from ledgerstream.core.config import Topics
    from ledgerstream.stack.topics import delete_topics, ensure_topics

    sizes = tuple(sorted(set(sizes)))
    key = mldsa.PrivateKey.generate()
    points: dict[str, Any] = {}
    with private_kafka(bootstrap, "benchr", log) as kafka:
        key_path = kafka.scratch / "signer.pem"
        mldsa.save_private_key(key, key_path)
        for size in sizes:  # a ledger of its own per size, so that each is exactly that size
            topics = Topics.with_prefix(f"benchr-{uuid.uuid4().hex[:8]}-{size}.")
            ensure_topics(kafka.bootstrap, topics)
            try:
                log(f"writing a ledger of {size:,} entries (checkpoint signing) ...")
                LedgerWriter(key, size, kafka.bootstrap, topics, "checkpoint").write_to(size, log)
                log(f"signer restarts at {size:,} entries ...")
                points[str(size)] = _point(kafka.bootstrap, topics, key_path, kafka.scratch, size, log)
            finally:
                delete_topics(kafka.bootstrap, topics)
        embedded = kafka.embedded
    small, large = points[str(sizes[0])], points[str(sizes[-1])]
    ratio = lambda a, b: round(b / max(a, 1e-9), 2)  # noqa: E731
    return {
        "benchmark": "recovery", "sizes": list(sizes), "bootstrap": "embedded" if embedded else bootstrap,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_1m": round(os.getloadavg()[0], 2), "mldsa_backend": mldsa.default_backend()},
        "points": points,
        "growth": {"recovery_s_ratio": ratio(small["after_kill"]["recovery_s"], large["after_kill"]["recovery_s"]),
                   "kill_to_commit_ratio": ratio(small["after_kill"]["kill_to_commit_s"],
                                                 large["after_kill"]["kill_to_commit_s"]),
                   "rss_ratio": ratio(small["after_kill"]["rss_mb"] or 0, large["after_kill"]["rss_mb"] or 0)},
        "goal": "issue 18: recovery < 5 s and RSS within 20 % from 100k to 10M entries",
    }
