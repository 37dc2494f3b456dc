"""The faust verifier worker as a real process against the real broker: it resumes after
kill -9 without re-verifying, --reverify starts over with stable alert ids, one process per
id, ``stalled`` when actions wait, and its status, graph and metrics outputs. The tamper
matrix (test_tamper_matrix.py) runs two of these workers over every fault."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from ledgerstream.core import mldsa
from ledgerstream.core.wire import codec
from ledgerstream.core.alert_signature import (check_alert, trusted_verifier_keys, verifier_key_path,
                                               verifier_public_key_path)
from ledgerstream.core.config import Topics
from ledgerstream.tools.ledger_reader import read_topic
from support.actions import encode_action
from support.ledger_builder import LedgerBuilder, LedgerWriter, RogueProducer, enc, entry_bytes
from support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = mldsa.PrivateKey.from_seed(bytes(range(32)))


def verifier_home(root: Path, key: mldsa.PrivateKey, tsa_ca: Path | None = None,
                  verifiers: tuple[str, ...] = ("v1", "v2")) -> Path:
    """A home folder with the signer's public key (and the TSA CA) as the dev stack lays it out,
    and the alert signing keys of ``verifiers`` (keys/verifier-<id>.pem and .pub.pem)."""
    (root / "keys").mkdir(parents=True, exist_ok=True)
    (root / "keys" / "signer.pub.pem").write_bytes(mldsa.public_key_pem(key.public_key()))
    for vid in verifiers:
        alert_key = mldsa.PrivateKey.generate()
        mldsa.save_private_key(alert_key, verifier_key_path(root, vid), overwrite=True)
        verifier_public_key_path(root, vid).write_bytes(mldsa.public_key_pem(alert_key.public_key()))
    if tsa_ca is not None:
        (root / "tsa").mkdir(exist_ok=True)
        shutil.copy(tsa_ca, root / "tsa" / "ca.pem")
    return root


class WorkerProcess:
    """``python -m ledgerstream.verifier_worker`` in its own session, killed by pid."""

    def __init__(self, home: Path, vid: str, bootstrap: str, topics: Topics, *args: str) -> None:
        self.home, self.vid, self.args = home, vid, list(args)
        self.base = ["--home", str(home), "--id", vid, "--bootstrap", bootstrap,
                     "--topic-prefix", topics.entries[: -len("entries")], "--status-seconds", "0.5"]
        self.proc: subprocess.Popen | None = None
        self.log_path = home / f"{vid}.log"

    def start(self, *extra: str) -> "WorkerProcess":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "ledgerstream.verifier_worker", *self.base,
                                          *self.args, *extra], stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"})
        return self

    def status(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.home / "verifiers" / self.vid / "status.json").read_text())
        except (OSError, ValueError):
            return None

    def wait_position(self, position: int, timeout: float = 90.0) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            st = self.status()
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"verifier {self.vid} exited with {self.proc.returncode}:\n{self.log()}")
            return st if st and st["position"] == position and st["lag"] == 0 and st["pid"] == self.proc.pid else None
        return wait_until(ready, timeout, f"verifier {self.vid} at position {position}", self.log)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def alerts_of(bootstrap: str, topics: Topics, vid: str) -> dict[str, dict[str, Any]]:
    """The alerts a verifier published, by alert_id (at-least-once: duplicates collapse)."""
    out = {}
    for rec in read_topic(bootstrap, topics.alerts):
        _, alert = codec.decode(rec.value, expect="Alert")
        if alert["verifier_id"] == vid:
            out[alert["alert_id"]] = alert
    return out


def write_ledger(writer: LedgerWriter, builder: LedgerBuilder, batches: int, size: int) -> None:
    for _ in range(batches):
        es = builder.many(size)
        writer.commit([entry_bytes(e) for e in es], [enc("Checkpoint", builder.checkpoint())])


def test_resumes_after_kill9_without_reverifying_then_reverify_keeps_alert_ids(
        bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    home = verifier_home(tmp_path, KEY)
    builder, writer = LedgerBuilder(KEY), LedgerWriter(bootstrap, topics)
    write_ledger(writer, builder, 3, 100)
    RogueProducer(bootstrap).send(topics.entries, entry_bytes(builder.entries[10]))  # a replay: one alert
    worker = WorkerProcess(home, "v1", bootstrap, topics).start()
    try:
        first = worker.wait_position(300)
        worker.kill9()
        write_ledger(writer, builder, 1, 50)
        worker.start()
        st = worker.wait_position(350)
        second = WorkerProcess(home, "v1", bootstrap, topics).start()  # one process per verifier id
        assert second.proc.wait(60) == 2 and "another verifier process holds" in second.log()
        # resumed from its saved state: nothing counted twice, no second alert for the replay
        assert st["stats"]["entries_seen"] == 351 and first["stats"]["entries_seen"] == 301
        assert st["alerts"] == {"duplicate": 1} and st["healthy"] is True
        assert st["last_checkpoint"]["tree_size"] == 350
        alerts = wait_until(lambda: alerts_of(bootstrap, topics, "v1") or None, 30, "the duplicate alert")
        assert [a["kind"] for a in alerts.values()] == ["duplicate"]
        trusted = trusted_verifier_keys(home, environ={})  # signed with keys/verifier-v1.pem
        assert [check_alert(a, trusted).verdict.value for a in alerts.values()] == ["verified"]
        metrics = urllib.request.urlopen(st["metrics_url"], timeout=10).read().decode()
        assert 'ledgerstream_verifier_position{verifier="v1"} 350.0' in metrics
        assert 'ledgerstream_verifier_alerts_total{kind="duplicate",verifier="v1"} 1.0' in metrics

        worker.stop()
        worker.start("--reverify")
        st = worker.wait_position(350)
        assert st["stats"]["entries_seen"] == 351  # counted from scratch: everything verified again
        again = wait_until(lambda: len(alerts_of(bootstrap, topics, "v1")) == 1 and alerts_of(bootstrap, topics, "v1"),
                           30, "the re-published alert")
        assert again.keys() == alerts.keys()  # same finding, same alert_id
    finally:
        worker.stop()


def test_stalled_when_actions_wait_and_the_ledger_head_stands_still(bootstrap: str, topics: Topics,
                                                                    tmp_path: Path) -> None:
    home = verifier_home(tmp_path, KEY)
    worker = WorkerProcess(home, "v2", bootstrap, topics, "--stall-seconds", "2").start()
    try:
        worker.wait_position(0)
        producer = Producer({"bootstrap.servers": bootstrap})
        for _ in range(3):  # no signer runs: these actions wait forever
            producer.produce(topics.actions, encode_action())
        producer.flush(30)
        wait_until(lambda: (worker.status() or {}).get("alerts", {}).get("stalled") == 1, 60, "a stalled alert",
                   worker.log)
        kinds = [a["kind"] for a in wait_until(lambda: list(alerts_of(bootstrap, topics, "v2").values()), 30,
                                               "the stalled alert on the topic")]
        assert kinds == ["stalled"]
    finally:
        worker.stop()


def test_status_and_graph_files(bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    home = verifier_home(tmp_path, KEY)
    builder, writer = LedgerBuilder(KEY), LedgerWriter(bootstrap, topics)
    cause = builder.entry("agent-a")
    effect = builder.entry("agent-b", links=[("agent-a", cause["action"]["event_id"])])
    writer.commit([entry_bytes(cause), entry_bytes(effect)], [enc("Checkpoint", builder.checkpoint())])
    worker = WorkerProcess(home, "v1", bootstrap, topics).start()
    try:
        st = worker.wait_position(2)
        for field in ("id", "position", "lag", "last_checkpoint", "healthy", "alerts", "updated_at", "metrics_url"):
            assert field in st
        assert "batches through shared memory" in worker.log()  # batch_ring.py, not the pipe
        # with liboqs the worker process checked both signatures before the checker process
        # saw the batch (app.py); pyca holds the GIL, so there the checker process checks them
        ahead = 2 if KEY.public_key().verify_many_releases_gil else 0
        assert (st["stats"]["signatures_verified"], st["stats"]["signatures_checked_ahead"]) == (2, ahead)
        # the newest entry is integrated once a checkpoint covers it: the edge is in the graph
        graph = wait_until(lambda: json.loads((home / "verifiers" / "v1" / "graph.json").read_text()), 10, "graph")
        assert graph["edges"] == [{"from_seq": 1, "from_agent": "agent-b", "to_seq": 0, "to_agent": "agent-a",
                                   "relation": "caused_by"}]
        assert graph["agents"] == {"agent-b": {"agent-a": 1}}
        # Kafka lag tools see the verifier's own consumer group at the end of both topics
        group = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topics.entries[: -len('entries')]}verifier-v1"})
        try:
            def committed() -> dict[str, int] | None:
                tps = group.committed([TopicPartition(topics.entries, 0), TopicPartition(topics.checkpoints, 0)],
                                      timeout=10)
                found = {tp.topic: tp.offset for tp in tps}
                return found if found == {topics.entries: 2, topics.checkpoints: 1} else None
            wait_until(committed, 20, "the verifier group's committed offsets")
        finally:
            group.close()
    finally:
        worker.stop()
