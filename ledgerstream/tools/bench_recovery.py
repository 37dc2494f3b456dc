"""``ledgerstream bench recovery``: what a signer restart costs as the ledger grows.

One run, one machine, private topics on a private embedded broker (or the given one). For
each ledger size, smallest first, the ledger is extended by the signer's own sequencer
(``bench_ledger``; checkpoint signing mode, so millions of entries are affordable: the
signer adopts such entries like its own), and then a real signer process
(``python -m ledgerstream.signer_worker``, entry signing mode unless ``signing_mode`` says
otherwise; the tail is then signed, and replayed, in that mode) is

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
from ledgerstream.signer_worker.settings import SignerSettings

#: seconds a signer may take to become ready (a full replay of millions of entries is slow)
READY_TIMEOUT = 1800.0


class _Signer:
    """One signer process on the bench topics, with its own status file."""

    def __init__(self, bootstrap: str, key_path: Path, prefix: str, workdir: Path, name: str,
                 signing_mode: str, leader_election: bool = False) -> None:
        self.status_file = workdir / f"{name}.status.json"
        self.status_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "ledgerstream.signer_worker", "--bootstrap", bootstrap, "--key", str(key_path),
                "--topic-prefix", prefix, "--status-file", str(self.status_file), "--signing-mode", signing_mode,
                "--watchdog-seconds", "0", *([] if leader_election else ["--no-leader-election"])]
        with open(workdir / f"{name}.log", "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, **role_env(bootstrap, "admin")))

    def ready(self, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """The status once the process reports ``recovery_s``."""
        return self._wait(lambda st: st.get("recovery_s") is not None, timeout, "ready")

    def status(self, what: str, done: Callable[[dict[str, Any]], Any], timeout: float = 120.0) -> dict[str, Any]:
        """The status once ``done(status)`` holds."""
        return self._wait(done, timeout, what)

    def snapshot_written(self, timeout: float = 120.0) -> dict[str, Any]:
        """The status once the process has written a snapshot (after a full replay it writes
        one at once), or reports that snapshots are off."""
        return self._wait(lambda st: (st.get("snapshots") or {}).get("written", 0) > 0
                          or (st.get("snapshots") or {}).get("off"), timeout, "done with its first snapshot")

    def read_status(self) -> dict[str, Any]:
        try:
            status = json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}
        return status if status.get("pid") == self.proc.pid else {}

    def _wait(self, done: Callable[[dict[str, Any]], Any], timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the signer exited with {self.proc.returncode} (see its log)")
            status = self.read_status()
            if status and done(status):
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


def _point(bootstrap: str, topics: Any, key_path: Path, workdir: Path, size: int, tail: int,
           signing_mode: str, log: Callable[[str], None]) -> dict[str, Any]:
    from confluent_kafka import Producer

    from ledgerstream.tools.bench_ledger import action_record

    prefix = topics.actions[: -len("actions")]
    producer = Producer(kafka_config(bootstrap, "admin", {"acks": "all", "enable.idempotence": True,
                                                          "linger.ms": 5}))

    def send(n: int, agent: str) -> None:
        for i in range(n):
            producer.produce(topics.actions, action_record(size + i, agent), key=agent.encode())
            producer.poll(0)
        producer.flush(60)

    first = _Signer(bootstrap, key_path, prefix, workdir, f"signer-{size}-a", signing_mode)
    try:
        start = first.ready()
        start_rss = procinfo.rss_mb(first.proc.pid)
        first.snapshot_written()
        # entries after the snapshot, as a crash would find them: the restart replays this tail
        send(tail, "tail")
        first.status(f"{size + tail} entries", lambda st: st.get("next_seq") == size + tail)
        log(f"  first start: ready after {start['recovery_s']} s, RSS {start_rss} MB; {tail:,} entries "
            f"after its snapshot; kill -9 ...")
        committed = _committed_after(bootstrap, topics.entries)
        killed_at = time.time()
        first.kill()
    finally:
        first.stop()
    second = _Signer(bootstrap, key_path, prefix, workdir, f"signer-{size}-b", signing_mode)
    try:
        send(1, "after-kill")
        committed_at, _ = _expect(committed, size + tail, "after-kill")
        again = second.ready(60)
        again_rss = procinfo.rss_mb(second.proc.pid)
    finally:
        second.stop()
    takeover = _takeover(bootstrap, prefix, key_path, workdir, size, size + tail + 1, send, topics, signing_mode)
    result = {"entries": size, "tail": tail,
              "first_start": {"recovery_s": start["recovery_s"], "rss_mb": start_rss},
              "after_kill": {"recovery_s": again["recovery_s"], "rss_mb": again_rss,
                             "kill_to_commit_s": round(committed_at - killed_at, 2),
                             "recovered_from": again.get("recovered_from"), "signing_mode": again.get("signing_mode")},
              "standby": takeover}
    log(f"  after kill -9: recovery_s {again['recovery_s']}, kill to commit {result['after_kill']['kill_to_commit_s']} s, "
        f"RSS {again_rss} MB; standby takeover {takeover['kill_to_commit_s']} s "
        f"(session timeout {takeover['session_timeout_s']} s)")
    return result


def _expect(committed: Callable[[float], tuple[float, bytes]], seq: int, agent: str) -> tuple[float, dict[str, Any]]:
    """When the next committed entry landed; it must be entry ``seq`` of ``agent``."""
    at, raw = committed(READY_TIMEOUT)
    entry = codec.decode(raw, expect="LedgerEntry")[1]
    if (entry["seq"], entry["action"]["agent_id"]) != (seq, agent):
        raise RuntimeError(f"the entry committed after the kill is seq {entry['seq']} of "
                           f"{entry['action']['agent_id']!r}, not seq {seq} of {agent!r}")
    return at, entry


def _takeover(bootstrap: str, prefix: str, key_path: Path, workdir: Path, size: int, next_seq: int,
              send: Callable[[int, str], None], topics: Any, signing_mode: str) -> dict[str, Any]:
    """A leader and a warm standby: kill -9 the leader once the standby has caught up, then
    one action; seconds from the kill until its entry is committed by the standby."""
    pair = [_Signer(bootstrap, key_path, prefix, workdir, f"signer-{size}-{n}", signing_mode, leader_election=True)
            for n in "cd"]
    try:
        leader = next(s for s in _until_roles(pair) if s.read_status().get("role") == "leader")
        standby = next(s for s in pair if s is not leader)
        standby.status("following", lambda st: st.get("role") == "standby" and st.get("next_seq") == next_seq)
        committed = _committed_after(bootstrap, topics.entries)
        killed_at = time.time()
        leader.kill()
        send(1, "after-takeover")
        committed_at, _ = _expect(committed, next_seq, "after-takeover")
        took = standby.status("leader", lambda st: st.get("role") == "leader" and st.get("recovery_s") is not None)
        return {"kill_to_commit_s": round(committed_at - killed_at, 2), "recovery_s": took["recovery_s"],
                "session_timeout_s": SignerSettings.session_timeout_ms / 1000, "recovered_from": took.get("recovered_from"),
                "rss_mb": procinfo.rss_mb(standby.proc.pid)}
    finally:
        for s in pair:
            s.stop()


def _until_roles(pair: list[_Signer], timeout: float = 120.0) -> list[_Signer]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        roles = sorted(str(s.read_status().get("role")) for s in pair)
        if roles == ["leader", "standby"]:
            return pair
        time.sleep(0.1)
    raise RuntimeError("no leader and standby pair within 120 s (see the signer logs)")


def run(sizes: tuple[int, ...] = (100_000, 1_000_000), bootstrap: str | None = None,
        log: Callable[[str], None] = lambda msg: None, tail: int = 5_000,
        signing_mode: str = "entry") -> dict[str, Any]:
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
                points[str(size)] = _point(kafka.bootstrap, topics, key_path, kafka.scratch, size, tail,
                                           signing_mode, log)
            finally:
                delete_topics(kafka.bootstrap, topics)
        embedded = kafka.embedded
    small, large = points[str(sizes[0])], points[str(sizes[-1])]
    ratio = lambda a, b: round(b / max(a, 1e-9), 2)  # noqa: E731
    return {
        "benchmark": "recovery", "sizes": list(sizes), "signing_mode": signing_mode,
        "bootstrap": "embedded" if embedded else bootstrap,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_1m": round(os.getloadavg()[0], 2), "mldsa_backend": mldsa.default_backend()},
        "points": points,
        "growth": {"recovery_s_ratio": ratio(small["after_kill"]["recovery_s"], large["after_kill"]["recovery_s"]),
                   "kill_to_commit_ratio": ratio(small["after_kill"]["kill_to_commit_s"],
                                                 large["after_kill"]["kill_to_commit_s"]),
                   "rss_ratio": ratio(small["after_kill"]["rss_mb"] or 0, large["after_kill"]["rss_mb"] or 0)},
        "goal": "issue 18: recovery < 5 s and RSS within 20 % from 100k to 10M entries",
    }
