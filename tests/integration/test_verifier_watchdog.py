"""Issue 20, no hang, for verifiers: when the checker process stops answering (frozen with
SIGSTOP here), the verifier's observation never completes and its status goes stale; the
watchdog ends the verifier with status 4, and a restarted verifier resumes and verifies."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from ledgerstream.core.config import Topics
from ledgerstream.core.watchdog import EXIT_WATCHDOG
from support.ledger_builder import LedgerBuilder, LedgerWriter
from test_verifier_worker import KEY, WorkerProcess, verifier_home, write_ledger

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _checker_pid(worker: WorkerProcess) -> int:
    """The checker process: the child running the pool worker (not the resource tracker)."""
    for child in _children(worker.proc.pid):
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"spawn_main" in cmdline:
            return child
    raise AssertionError(f"no checker process under {worker.proc.pid}")


def test_a_frozen_checker_process_makes_the_watchdog_end_the_verifier(bootstrap: str, topics: Topics,
                                                                     tmp_path: Path) -> None:
    home = verifier_home(tmp_path, KEY)
    builder, writer = LedgerBuilder(KEY), LedgerWriter(bootstrap, topics)
    write_ledger(writer, builder, 2, 50)
    worker = WorkerProcess(home, "v1", bootstrap, topics, "--watchdog-seconds", "4").start()
    frozen = None
    try:
        worker.wait_position(100)
        frozen = _checker_pid(worker)
        os.kill(frozen, signal.SIGSTOP)
        assert worker.proc.wait(60) == EXIT_WATCHDOG, worker.log()
        assert "made no progress" in worker.log()
        os.kill(frozen, signal.SIGCONT)
        write_ledger(writer, builder, 1, 50)
        worker.start()
        st = worker.wait_position(150)
        assert st["healthy"] is True and st["alerts"] == {}
    finally:
        if frozen is not None:
            try:
                os.kill(frozen, signal.SIGCONT)
            except ProcessLookupError:
                pass
        worker.stop()
