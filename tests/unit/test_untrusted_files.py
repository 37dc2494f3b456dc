"""Files a user names on the command line or in configuration are read within a size bound,
with a clear error (exit 2 for the CLI), never a crash or an unbounded read."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerstream.core.errors import ConfigError
from ledgerstream.producers.policy import MAX_POLICY_BYTES, Policy

pytestmark = pytest.mark.unit


def test_a_huge_pinned_pem_is_a_usage_error(tmp_path: Path) -> None:
    big = tmp_path / "big.pem"
    big.write_bytes(bytes(2 << 20))
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty ZIP
    exe = shutil.which("ledgerstream", path=os.path.dirname(sys.executable))
    assert exe is not None
    for option in ("--tsa-ca", "--trusted-key"):
        done = subprocess.run([exe, "verify-bundle", str(bundle), option, str(big)], capture_output=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert b"larger than 1048576 bytes" in done.stderr and b"Traceback" not in done.stderr


def test_a_huge_policy_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    with path.open("wb") as fh:
        fh.write(b'{"default": "allow", "rules": []}')
        fh.write(b" " * MAX_POLICY_BYTES)
    with pytest.raises(ConfigError, match=f"larger than {MAX_POLICY_BYTES} bytes"):
        Policy.from_file(path)


def test_a_policy_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_bytes(b'{"default": "\xff"}')
    with pytest.raises(ConfigError, match="not UTF-8"):
        Policy.from_file(path)


def test_a_policy_file_within_the_bound_loads(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"default": "deny", "rules": []}' + " " * 1000)
    assert Policy.from_file(path).default == "deny"
