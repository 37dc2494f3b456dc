"""``ledgerstream dev up|status|down`` as a user runs them (subprocesses, real stack)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from ledgerstream.stack.kafka import pid_alive
from conftest import stack_kafka_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CLI = [sys.executable, "-m", "ledgerstream.cli.main"]


def run(args: list[str], env: dict, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, env=env, capture_output=True, text=True, check=check, timeout=timeout)


def produce_actions(state: dict, n: int) -> None:
    from confluent_kafka import Producer

    from tests.support.actions import encode_action

    p = Producer(stack_kafka_config(state, "producer"))
    for _ in range(n):
        p.produce(state["topics"]["actions"], encode_action(agent_id="resume-test"), key=b"resume-test")
    assert p.flush(30) == 0


def wait_entries(state: dict, n: int, timeout: float = 60) -> int:
    import time

    from ledgerstream.core.topic_reader import read_partition

    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = sum(1 for _ in read_partition(state["kafka"]["bootstrap"], state["topics"]["entries"]))
        if count >= n:
            return count
        time.sleep(0.5)
    return count


def status(env: dict) -> dict:
    return json.loads(run(["dev", "status", "--json"], env).stdout)


def test_status_json_contract(dev_stack: dict) -> None:
    s = status(dev_stack["env"])
    assert isinstance(s["home"], str)
    assert s["kafka"]["bootstrap"].startswith("127.0.0.1:") and isinstance(s["kafka"]["pid"], int)
    assert s["tsa"]["url"].startswith("http://127.0.0.1:") and Path(s["tsa"]["ca_cert"]).exists()
    assert isinstance(s["tsa"]["pid"], int)
    assert {"pid", "recovery_s", "rss_mb"} <= set(s["signer"]) and isinstance(s["verifiers"], list)
    for v in s["verifiers"]:
        assert isinstance(v["id"], str) and isinstance(v["pid"], int)
    assert set(s["topics"]) >= {"actions", "entries", "checkpoints", "alerts", "deadletter"}


def test_kafka_jvm_answers_admin_client(dev_stack: dict) -> None:
    s = status(dev_stack["env"])
    assert b"kafka.Kafka" in Path(f"/proc/{s['kafka']['pid']}/cmdline").read_bytes()
    md = AdminClient(stack_kafka_config(s)).list_topics(timeout=10)
    assert s["topics"]["entries"] in md.topics
    assert len(md.topics[s["topics"]["entries"]].partitions) == 1


def test_tsa_reply_passes_openssl_verify(dev_stack: dict, tmp_path: Path) -> None:
    import urllib.request

    s = status(dev_stack["env"])
    data = tmp_path / "data.txt"
    data.write_bytes(b"ledgerstream acceptance\n")
    subprocess.run(["openssl", "ts", "-query", "-data", str(data), "-sha256", "-cert", "-out", str(tmp_path / "q.tsq")],
                   check=True, capture_output=True)
    req = urllib.request.Request(s["tsa"]["url"], data=(tmp_path / "q.tsq").read_bytes(),
                                 headers={"Content-Type": "application/timestamp-query"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Type"] == "application/timestamp-reply"
        (tmp_path / "r.tsr").write_bytes(resp.read())
    ok = subprocess.run(["openssl", "ts", "-verify", "-in", str(tmp_path / "r.tsr"), "-data", str(data),
                         "-CAfile", s["tsa"]["ca_cert"]], capture_output=True, text=True)
    assert ok.returncode == 0 and "Verification: OK" in ok.stdout
    other = tmp_path / "other.txt"
    other.write_bytes(b"something else\n")
    bad = subprocess.run(["openssl", "ts", "-verify", "-in", str(tmp_path / "r.tsr"), "-data", str(other),
                          "-CAfile", s["tsa"]["ca_cert"]], capture_output=True, text=True)
    assert bad.returncode != 0


def test_up_is_idempotent(dev_stack: dict) -> None:
    before = status(dev_stack["env"])
    run(["dev", "up", "--detach"], dev_stack["env"])
    after = status(dev_stack["env"])
    assert after["kafka"]["pid"] == before["kafka"]["pid"]
    assert after["supervisor"]["pid"] == before["supervisor"]["pid"]


def test_down_leaves_nothing_up_resumes_the_same_ledger_and_fresh_wipes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = dict(os.environ, LEDGERSTREAM_HOME=str(tmp_path / "home"))
    monkeypatch.setenv("LEDGERSTREAM_HOME", env["LEDGERSTREAM_HOME"])  # in-process reads use its credentials
    env.pop("LEDGERSTREAM_BOOTSTRAP", None)
    run(["dev", "up", "--detach"], env)
    try:
        s1 = status(env)
        key1 = json.loads(run(["keys", "show", s1["signer"]["key"], "--json"], env).stdout)["key_id"]
        ca1 = Path(s1["tsa"]["ca_cert"]).read_bytes()
        produce_actions(s1, 3)
        assert wait_entries(s1, 3) == 3
        pids = [s1["kafka"]["pid"], s1["tsa"]["pid"], s1["supervisor"]["pid"], s1["signer"]["pid"]]
        pids += [v["pid"] for v in s1["verifiers"]]
        run(["dev", "down"], env)
        assert [p for p in pids if p and pid_alive(p)] == []
        leftover = subprocess.run(["pgrep", "-f", str(tmp_path / "home")], capture_output=True, text=True)
        assert leftover.stdout.strip() == ""
        run(["dev", "up", "--detach"], env)
        s2 = status(env)
        assert s2["kafka"]["bootstrap"] == s1["kafka"]["bootstrap"]
        assert Path(s2["tsa"]["ca_cert"]).read_bytes() == ca1
        assert json.loads(run(["keys", "show", s2["signer"]["key"], "--json"], env).stdout)["key_id"] == key1
        produce_actions(s2, 1)
        assert wait_entries(s2, 4) == 4  # the restarted signer continued the same chain
        old_pid = _assert_signer_resources(env)
        os.kill(old_pid, signal.SIGKILL)  # the supervisor starts another signer
        new_pid = _assert_signer_resources(env, not_pid=old_pid)
        assert new_pid != old_pid
        produce_actions(s2, 1)
        assert wait_entries(s2, 5) == 5
        from ledgerstream.tools.ledger_snapshot import load_ledger
        from ledgerstream.core.config import Topics
        from ledgerstream.index.reads import trust_of

        snap = load_ledger(s2["kafka"]["bootstrap"], Topics(**s2["topics"]), trust_of(tmp_path / "home"))
        assert len(snap.entries) == 5 and not snap.foreign
        # (one stack for both: --fresh on a running stack wipes the data, new CA included)
        run(["dev", "up", "--detach", "--fresh"], env)
        assert Path(status(env)["tsa"]["ca_cert"]).read_bytes() != ca1
    finally:
        run(["dev", "down"], env, check=False)


def _assert_signer_resources(env: dict, not_pid: int | None = None, timeout: float = 90) -> int:
    """Wait until ``dev status --json`` shows a signer (other than ``not_pid``) with its
    ``recovery_s``; check it against the process's age and ``rss_mb`` against ps; its pid."""
    deadline = time.monotonic() + timeout
    while True:
        signer = status(env)["signer"]
        pid = signer.get("pid")
        if pid and pid != not_pid and signer.get("recovery_s") is not None:
            break
        assert time.monotonic() < deadline, signer
        time.sleep(0.5)
    age = int(subprocess.run(["ps", "-o", "etimes=", "-p", str(pid)], capture_output=True, text=True,
                             check=True).stdout)
    assert 0 < signer["recovery_s"] <= age + 1, (signer, age)
    rss_kb = int(subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True,
                                check=True).stdout)
    assert signer["rss_mb"] > 10 and abs(signer["rss_mb"] - rss_kb / 1024) < 0.2 * rss_kb / 1024, (signer, rss_kb)
    return pid


def test_dashboard_is_locked_and_private_folders_are_0700(dev_stack: dict) -> None:
    import stat
    import urllib.error
    import urllib.request

    s = status(dev_stack["env"])
    home = Path(s["home"])
    token_file = Path(s["dashboard"]["token_file"])
    assert token_file == home / "dashboard" / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "keys" / "signer.pem").stat().st_mode) == 0o600
    for name in ("keys", "spool", "kafka", "kafka/data", "kafka/logs", "tsa", "verifiers", "dashboard"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o700, name
    token = token_file.read_text().strip()
    assert token not in json.dumps(s)  # --json names the 0600 file, never the token
    assert f"?token={token}" in run(["dev", "status"], dev_stack["env"]).stdout.replace("\n", "")
    api = s["dashboard"]["url"] + "api/head"
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(api, timeout=10)
    assert exc.value.code == 401
    request = urllib.request.Request(api, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and "size" in json.loads(response.read())
