"""core.procinfo against procps's ``ps`` (another reader of /proc): a child's resident memory
and its start time."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from ledgerstream.core import procinfo

pytestmark = pytest.mark.unit


@pytest.fixture
def child():
    # a process holding ~64 MiB it has touched, so its RSS is well above the interpreter's
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time; b = bytearray(64 << 20); "
                             "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.skipif(shutil.which("ps") is None, reason="procps ps is not installed")
def test_rss_and_start_agree_with_ps(child) -> None:
    rss_kb = int(subprocess.run(["ps", "-o", "rss=", "-p", str(child.pid)], capture_output=True, text=True,
                                check=True).stdout)
    assert abs(procinfo.rss_mb(child.pid) - rss_kb / 1024) < 2
    assert procinfo.rss_mb(child.pid) > 64
    age = int(subprocess.run(["ps", "-o", "etimes=", "-p", str(child.pid)], capture_output=True, text=True,
                             check=True).stdout)  # whole seconds since it started
    assert abs((time.time() - procinfo.started_at(child.pid)) - age) <= 1.05


def test_a_process_that_is_gone_has_no_numbers() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert procinfo.rss_mb(proc.pid) is None
    assert procinfo.started_at(proc.pid) is None
