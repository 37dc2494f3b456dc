"""Issue 20, no false alarm: `ledgerstream verify` run again and again while the signer is
busy sequencing a large demo (checkpoints committed every second next to their entries)
never reports a checkpoint that claims entries it has not read: it reads checkpoints
first, then entries, so every checkpoint's entries are there."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_verify_during_a_busy_signer_finds_nothing(own_stack: dict) -> None:
    env = own_stack["env"]
    cli = [sys.executable, "-m", "ledgerstream.cli.main"]
    demo = subprocess.Popen(cli + ["demo", "--agents", "3", "--events", "30000"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs: list[dict] = []
    try:
        deadline = time.monotonic() + 240
        while len(runs) < 3 and time.monotonic() < deadline:
            proc = subprocess.run(cli + ["verify", "--json"], env=env, capture_output=True, text=True, timeout=300)
            doc = json.loads(proc.stdout)
            assert proc.returncode == 0 and doc["ok"], doc["errors"]
            runs.append(doc)
        assert demo.wait(300) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
    assert len(runs) == 3
    sizes = [r["entries"] for r in runs]
    assert sizes == sorted(sizes) and sizes[0] < 30000, f"the runs overlapped the signer's work: {sizes}"
    assert all(r["errors"] == [] for r in runs)
