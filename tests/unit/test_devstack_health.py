"""``dev status --json`` gives each component a health: a live process whose loop stopped
writing its status (stuck, issue 20) is "unhealthy", not "running"."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledgerstream.core.config import STACK_FILE
from ledgerstream.stack import devstack

pytestmark = pytest.mark.unit


@pytest.fixture()
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _home(tmp_path: Path, signer: dict | None, verifiers: dict[str, dict | None], pids: dict[str, int]) -> Path:
    live = os.getpid()
    state = {"home": str(tmp_path), "ready": True, "supervisor": {"pid": live},
             "kafka": {"bootstrap": "127.0.0.1:1", "pid": pids.get("kafka", live)},
             "tsa": {"url": "http://127.0.0.1:2/", "pid": pids.get("tsa", live)},
             "signer": {"pid": pids.get("signer", live), "restarts": 0},
             "verifiers": [{"id": vid, "pid": pids.get(vid, live), "restarts": 0} for vid in verifiers],
             "dashboard": {"url": None, "pid": pids.get("dashboard", live)}, "topics": {}}
    (tmp_path / STACK_FILE).write_text(json.dumps(state))
    if signer is not None:
        (tmp_path / "signer").mkdir()
        (tmp_path / "signer" / "status.json").write_text(json.dumps(signer))
    for vid, st in verifiers.items():
        if st is not None:
            (tmp_path / "verifiers" / vid).mkdir(parents=True)
            (tmp_path / "verifiers" / vid / "status.json").write_text(json.dumps(st))
    return tmp_path


def test_fresh_status_files_are_healthy_and_a_stale_one_is_unhealthy(tmp_path: Path) -> None:
    now, me = time.time(), os.getpid()
    home = _home(tmp_path, {"pid": me, "role": "leader", "updated_at": now - 95},
                 {"v1": {"pid": me, "healthy": True, "updated_at": now - 1},
                  "v2": {"pid": me, "healthy": True, "updated_at": now - 300},
                  "v3": {"pid": me, "healthy": False, "updated_at": now}}, {})
    st = devstack.status(home)
    assert st["signer"]["health"] == "unhealthy"       # alive, but its loop wrote nothing for 95 s
    assert [v["health"] for v in st["verifiers"]] == ["healthy", "unhealthy", "unhealthy"]
    assert st["kafka"]["health"] == st["tsa"]["health"] == st["dashboard"]["health"] == "healthy"


def test_dead_processes_are_down_and_new_ones_starting(tmp_path: Path, dead_pid: int) -> None:
    now, me = time.time(), os.getpid()
    home = _home(tmp_path, {"pid": dead_pid + 0, "role": "leader", "updated_at": now},
                 {"v1": None, "v2": {"pid": me, "healthy": True, "updated_at": now}},
                 {"kafka": dead_pid, "v2": dead_pid})
    st = devstack.status(home)
    assert st["kafka"]["health"] == "down" and st["kafka"]["pid"] is None
    assert st["signer"]["health"] == "starting"        # alive, but the status is its predecessor's
    assert [v["health"] for v in st["verifiers"]] == ["starting", "down"]


def test_a_leader_that_keeps_writing_is_healthy_and_a_standby_needs_no_fresh_status(tmp_path: Path) -> None:
    now, me = time.time(), os.getpid()
    st = devstack.status(_home(tmp_path, {"pid": me, "role": "leader", "updated_at": now - 2}, {}, {}))
    assert st["signer"]["health"] == "healthy"
    (tmp_path / "signer" / "status.json").write_text(json.dumps({"pid": me, "role": "standby", "updated_at": 0}))
    assert devstack.status(tmp_path)["signer"]["health"] == "healthy"
