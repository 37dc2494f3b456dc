"""``ledgerstream index``: usage errors exit 2 before anything runs; ``index status --json``
keeps its contract even with no index and no Kafka (``lag`` null, ``kafka_error`` set);
``python -m ledgerstream.index`` is ``index run``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

BAD = [
    ["index", "run", "--batch-size", "0"],
    ["index", "run", "--threads", "0"],
    ["index", "run", "--watchdog-seconds", "-1"],
    ["index", "run", "--no-such-option"],
    ["index", "status", "--json", "--bogus"],
    ["index", "rebuild"],
]


def run(argv: list[str], home: Path, module: str = "ledgerstream.cli.main") -> subprocess.CompletedProcess:
    env = {"LEDGERSTREAM_HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a) for a in BAD])
def test_bad_invocation_exits_2_with_one_line_error(argv: list[str], tmp_path: Path) -> None:
    proc = run(argv, tmp_path / "home")
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.lower().startswith("error")]) == 1, proc.stderr


def test_status_json_without_an_index_or_kafka(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = run(["index", "status", "--json"], home)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert {k: doc[k] for k in ("indexed_size", "lag", "tiles_dir", "foreign", "tlog_url")} == {
        "indexed_size": 0, "lag": None, "tiles_dir": str((home / "tiles").resolve()), "foreign": 0, "tlog_url": None}
    assert doc["kafka_error"] and doc["exists"] is False
    assert not (home / "index").exists()  # status never creates the index
    human = run(["index", "status"], home)
    assert human.returncode == 0 and "lag:       unknown" in human.stdout


def test_run_without_a_trusted_key_is_an_environment_error(tmp_path: Path) -> None:
    proc = run(["index", "run", "--once", "--bootstrap", "127.0.0.1:1"], tmp_path / "home")
    assert proc.returncode == 2 and "no trusted signer keys" in proc.stderr, proc.stderr


def test_module_entry_point_is_index_run(tmp_path: Path) -> None:
    proc = run(["--help"], tmp_path / "home", module="ledgerstream.index")
    assert proc.returncode == 0 and "--once" in proc.stdout and "--tiles-dir" in proc.stdout


def test_a_second_follower_on_the_same_index_is_refused(tmp_path: Path) -> None:
    import fcntl

    from ledgerstream.core import mldsa

    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    (home / "keys" / "signer.pub.pem").write_bytes(mldsa.public_key_pem(mldsa.PrivateKey.generate().public_key()))
    (home / "index").mkdir()
    with open(home / "index" / "lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = run(["index", "run", "--once", "--bootstrap", "127.0.0.1:1"], home)
    assert proc.returncode == 2 and "another index follower holds" in proc.stderr, proc.stderr
