"""Bad numbers on the command line are usage errors: exit 2 and one ``Error:`` line, no traceback,
before anything touches the ledger (the home here has no stack at all)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

BAD = [
    ["show", "--seq", "-1"],
    ["prove", "inclusion", "--seq", "-1"],
    ["prove", "inclusion", "--seq", "0", "--tree-size", "0"],
    ["prove", "consistency", "--from", "10", "--to", "5"],
    ["prove", "consistency", "--from", "0", "--to", "5"],
    ["prove", "consistency", "--from", "-3", "--to", "5"],
    ["checkpoints", "export", "--tree-size", "-3", "--out", "x"],
    ["verifier", "run", "--id", "v9", "--metrics-port", "70000"],
    ["verify", "--link-grace-entries", "-1"],
    ["verify", "--link-grace-seconds", "-0.5"],
    ["dashboard", "--port", "-1"],
    ["dashboard", "--host", "0.0.0.0", "--no-token"],
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a) for a in BAD])
def test_bad_invocation_exits_2_with_one_line_error(argv: list[str], tmp_path: Path) -> None:
    env = {"LEDGERSTREAM_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", "from ledgerstream.cli.main import main; main()", *argv],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1, proc.stderr
