"""``ledgerstream export siem`` against the real broker and a real signer.

At-least-once is checked from the outside: every entry and alert on the topics reaches
the sink (by seq / alert id), a restarted export resumes where the group committed, a
``kill -9`` mid-export loses nothing, a TCP syslog collector that is stopped and started
again receives everything, and a slow HTTP collector makes the consumer pause with the
buffer bounded.
"""
from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from ledgerstream.core.wire import codec
from ledgerstream.core.config import Topics
from ledgerstream.core.topic_reader import read_partition
from ledgerstream.tools.siem.exporter import ExportSettings, Exporter
from ledgerstream.tools.siem.formats import get_format
from ledgerstream.tools.siem.sinks.http import HttpSink
from tests.support.actions import encode_action
from support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEQ = re.compile(r'seq="(\d+)"')
ALERT_ID = re.compile(r'alert_id="([^"]+)"')


# --- helpers ----------------------------------------------------------------------------------

def prefix(topics: Topics) -> str:
    return topics.actions[: -len("actions")]


def produce_actions(bootstrap: str, topics: Topics, n: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(n):
        agent = f"agent-{i % 3}"
        producer.produce(topics.actions, encode_action(agent_id=agent, payload={"i": i}), key=agent.encode())
    producer.flush(30)


def produce_alerts(bootstrap: str, topics: Topics, n: int) -> list[str]:
    """Alerts as a verifier writes them (the verifier workers are tested elsewhere)."""
    producer = Producer({"bootstrap.servers": bootstrap})
    ids = [f"alert-{uuid.uuid4().hex[:8]}" for _ in range(n)]
    for i, alert_id in enumerate(ids):
        producer.produce(topics.alerts, codec.encode("Alert", {
            "alert_id": alert_id, "kind": "prev_hash_mismatch", "severity": "critical", "seq_from": i, "seq_to": i,
            "agent_id": "agent-0", "detail": f"chain break | at = {i}", "evidence": {"k": "v"},
            "verifier_id": "v-test", "time": time.time_ns() // 1000}), key=alert_id.encode())
    producer.flush(30)
    return ids


def wait_entries(bootstrap: str, topics: Topics, n: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = sum(1 for _ in read_partition(bootstrap, topics.entries))
        if count >= n:
            return
        time.sleep(0.5)
    raise AssertionError(f"only {count} of {n} entries were signed")


def export_cmd(bootstrap: str, topics: Topics, *args: str) -> list[str]:
    return [sys.executable, "-m", "ledgerstream.cli.main", "export", "siem", "--bootstrap", bootstrap,
            "--topic-prefix", prefix(topics), *args]


def run_export(bootstrap: str, topics: Topics, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(export_cmd(bootstrap, topics, *args), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc


def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return consumer.committed([TopicPartition(topic, 0)], timeout=15)[0].offset
    finally:
        consumer.close()


class SyslogCollector:
    """A TCP syslog collector (RFC 6587 octet counting) that can be stopped and restarted
    on the same port; it reads promptly and, on stop, drains what is readable then resets."""

    def __init__(self, delay: float = 0.0, rcvbuf: int | None = None) -> None:
        self.delay, self.rcvbuf = delay, rcvbuf
        self.messages: list[str] = []
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._running = False

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf:  # a small window: the sender is held back by how fast we read
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        self._listener, self._running = listener, True
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while self._running:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        conn.settimeout(0.2)
        while True:
            try:
                data = conn.recv(65536)
            except socket.timeout:
                if not self._running:
                    return
                continue
            except OSError:
                return
            if not data:
                return
            buf += data
            while True:
                space = buf.find(b" ")
                if space < 0 or len(buf) < space + 1 + int(buf[:space]):
                    break
                length = int(buf[:space])
                with self._lock:
                    self.messages.append(buf[space + 1:space + 1 + length].decode())
                buf = buf[space + 1 + length:]
            if self.delay:
                time.sleep(self.delay)

    def stop(self) -> None:
        self._running = False
        if self._listener is not None:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close alone does not
            self._listener.close()
        time.sleep(0.5)  # readers drain what already arrived
        with self._lock:
            for conn in self._conns:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()  # RST: anything unread now is lost, as with a crashed collector
            self._conns.clear()

    def seqs(self) -> set[int]:
        with self._lock:
            return {int(m.group(1)) for msg in self.messages if " ENTRY " in msg for m in [SEQ.search(msg)] if m}


@pytest.fixture()
def ledger(bootstrap: str, topics: Topics, start_signer) -> Iterator[tuple[str, Topics]]:
    """A topic set with a running signer."""
    signer = start_signer("--no-leader-election")
    signer.wait_role("leader")
    yield bootstrap, topics


@pytest.fixture()
def collector() -> Iterator[SyslogCollector]:
    c = SyslogCollector()
    c.start()
    yield c
    c.stop()


# --- tests --------------------------------------------------------------------------------------

def test_every_format_exports_everything_and_exits(ledger, tmp_path: Path) -> None:
    bootstrap, topics = ledger
    produce_actions(bootstrap, topics, 12)
    alert_ids = produce_alerts(bootstrap, topics, 3)
    wait_entries(bootstrap, topics, 12)
    for fmt in ("ecs", "cef", "ocsf", "syslog"):
        out = tmp_path / f"out.{fmt}"
        proc = run_export(bootstrap, topics, "--format", fmt, "--output", str(out))
        lines = out.read_text().splitlines()
        assert len(lines) == 15, (fmt, proc.stderr)
        assert "exported 12 entries and 3 alerts" in proc.stderr
        if fmt in ("ecs", "ocsf"):
            docs = [json.loads(line) for line in lines]
            ids = {d["event"]["id"] if fmt == "ecs" else d["metadata"]["uid"] for d in docs}
            assert set(alert_ids) <= ids
        elif fmt == "cef":
            assert all(line.startswith("CEF:0|ledgerstream|ledgerstream|") for line in lines)
            assert sum("|entry:" in line for line in lines) == 12
        else:
            assert {int(SEQ.search(l).group(1)) for l in lines if " ENTRY " in l} == set(range(12))
            assert {ALERT_ID.search(l).group(1) for l in lines if " ALERT " in l} == set(alert_ids)
    only = run_export(bootstrap, topics, "--format", "ecs", "--only", "alerts", "--group", "g-only",
                      "--output", str(tmp_path / "alerts.ndjson"))
    assert len((tmp_path / "alerts.ndjson").read_text().splitlines()) == 3, only.stderr


def test_resume_exports_only_what_is_new(ledger, tmp_path: Path) -> None:
    bootstrap, topics = ledger
    out = tmp_path / "feed.log"
    produce_actions(bootstrap, topics, 10)
    wait_entries(bootstrap, topics, 10)
    run_export(bootstrap, topics, "--format", "syslog", "--only", "entries", "--output", str(out))
    assert committed(bootstrap, f"{prefix(topics)}siem-syslog", topics.entries) > 0
    produce_actions(bootstrap, topics, 7)
    wait_entries(bootstrap, topics, 17)
    run_export(bootstrap, topics, "--format", "syslog", "--only", "entries", "--output", str(out))
    seqs = [int(SEQ.search(line).group(1)) for line in out.read_text().splitlines()]
    assert sorted(seqs) == list(range(17))  # each exactly once: the second run resumed
    again = run_export(bootstrap, topics, "--format", "syslog", "--only", "entries", "--output", str(out))
    assert "exported 0 entries" in again.stderr
    rewound = run_export(bootstrap, topics, "--format", "syslog", "--only", "entries", "--output", str(out),
                         "--from-beginning")
    assert "exported 17 entries" in rewound.stderr


def test_kill9_mid_export_loses_nothing(ledger) -> None:
    bootstrap, topics = ledger
    produce_actions(bootstrap, topics, 120)
    wait_entries(bootstrap, topics, 120)
    slow = SyslogCollector(delay=0.1, rcvbuf=4096)
    slow.start()
    try:
        proc = subprocess.Popen(export_cmd(bootstrap, topics, "--format", "syslog", "--only", "entries", "--follow",
                                           "--batch", "5", "--buffer", "20",
                                           "--output", f"syslog+tcp://127.0.0.1:{slow.port}"),
                                stderr=subprocess.PIPE, text=True)
        wait_until(lambda: len(slow.seqs()) >= 20, 60, "the first records at the collector")
        proc.kill()  # kill -9: no chance to commit or flush anything more
        proc.wait()
        got_before = slow.seqs()
        assert len(got_before) < 120, "the export finished before it could be killed; slow the collector"
        slow.delay = 0.0
        run_export(bootstrap, topics, "--format", "syslog", "--only", "entries",
                   "--output", f"syslog+tcp://127.0.0.1:{slow.port}")
        wait_until(lambda: slow.seqs() == set(range(120)), 30, "every entry at the collector")
    finally:
        slow.stop()


def test_dead_syslog_collector_loses_nothing(ledger, collector: SyslogCollector) -> None:
    bootstrap, topics = ledger
    group = f"siem-dead-{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen(export_cmd(bootstrap, topics, "--format", "cef", "--only", "entries", "--follow",
                                       "--group", group, "--batch", "10",
                                       "--output", f"syslog+tcp://127.0.0.1:{collector.port}"),
                            stderr=subprocess.PIPE, text=True)
    try:
        produce_actions(bootstrap, topics, 30)
        wait_until(lambda: len(collector.seqs()) == 30, 60, "30 entries at the collector")
        collector.stop()
        produce_actions(bootstrap, topics, 30)
        wait_entries(bootstrap, topics, 60)
        first_unwritten = [off for off, _ in read_partition(bootstrap, topics.entries)][30]
        time.sleep(3)  # the exporter meets the dead collector and backs off
        assert committed(bootstrap, group, topics.entries) <= first_unwritten
        collector.start()  # same port
        wait_until(lambda: collector.seqs() == set(range(60)), 90, "all 60 entries after the restart")
        wait_until(lambda: committed(bootstrap, group, topics.entries) >= 60, 30, "the commit past the last entry")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "sink unavailable" in err and "is back after" in err


class _SlowCollector(http.server.BaseHTTPRequestHandler):
    lines: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        time.sleep(0.3)
        type(self).lines += body.splitlines()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_slow_http_collector_pauses_the_consumer(ledger) -> None:
    bootstrap, topics = ledger
    produce_actions(bootstrap, topics, 80)
    wait_entries(bootstrap, topics, 80)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowCollector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fmt = get_format("ecs")
        sink = HttpSink(f"http://127.0.0.1:{server.server_address[1]}/ingest", fmt.media_type)
        settings = ExportSettings(bootstrap=bootstrap, topics=topics, group=f"slow-{uuid.uuid4().hex[:6]}",
                                  streams=("entries",), batch_size=10, buffer_size=20)
        stats = Exporter(settings, fmt, sink, log=lambda m: None).run(threading.Event())
    finally:
        server.shutdown()
    assert stats.entries == 80 and len(_SlowCollector.lines) == 80
    assert stats.pauses >= 1
    assert stats.peak_buffer <= settings.buffer_size + settings.batch_size
    assert {json.loads(l)["event"]["sequence"] for l in _SlowCollector.lines} == set(range(80))
    assert committed(bootstrap, settings.group, topics.entries) >= 80


def test_bad_options_are_usage_errors(bootstrap: str, topics: Topics) -> None:
    from click.testing import CliRunner

    from ledgerstream.cli.export import export

    base = ["siem", "--bootstrap", bootstrap, "--topic-prefix", prefix(topics)]
    for args, message in [
        (["--format", "leef"], "Invalid value for '--format'"),
        (["--format", "ecs", "--output", "syslog+udp://h:1"], "unsupported output"),
        (["--format", "ecs", "--output", "syslog+tcp://h"], "expected syslog+tcp://HOST:PORT"),
        (["--format", "ecs", "--header", "X: y"], "--header only applies"),
        (["--format", "ecs", "--output", "https://h/x", "--header", "novalue"], "expected 'Name: value'"),
        (["--format", "ecs", "--batch", "10", "--buffer", "5"], "must not exceed"),
    ]:
        result = CliRunner().invoke(export, base + args)
        assert result.exit_code == 2 and message in result.output, result.output
    missing = subprocess.run([sys.executable, "-m", "ledgerstream.cli.main", "export", "siem", "--format", "ecs",
                              "--bootstrap", bootstrap, "--topic-prefix", "nope-"], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "LEDGERSTREAM_HOME": "/nonexistent"})
    assert missing.returncode == 2 and "do not exist" in missing.stderr
