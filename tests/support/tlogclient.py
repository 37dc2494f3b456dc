"""The Go tlog client of tests/interop/tlogclient (golang.org/x/mod/sumdb/tlog), built once
into the cache; the tests that read our tiles with code nobody here wrote share it."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ledgerstream.core.config import cache_dir

SOURCE = Path(__file__).resolve().parents[1] / "interop" / "tlogclient"


def build_tlogclient() -> Path:
    """The client binary; skip without ``go``, and fail under CI=true if the build fails."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not on PATH")
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256(version.encode())
    for name in ("main.go", "go.mod", "go.sum"):
        key.update(name.encode() + b"\0" + (SOURCE / name).read_bytes())
    out_dir = cache_dir() / "go-bin"
    binary = out_dir / f"tlogclient-{key.hexdigest()[:16]}"
    if binary.is_file():
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".{binary.name}.{os.getpid()}.tmp"
    env = {**os.environ, "GOFLAGS": "-mod=mod -buildvcs=false"}
    build = subprocess.run([go, "build", "-o", str(partial), "."], cwd=SOURCE, env=env,
                           capture_output=True, text=True, timeout=600)
    if build.returncode != 0:
        message = f"go build of {SOURCE} failed:\n{build.stdout}{build.stderr}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    os.replace(partial, binary)
    return binary


def run_client(binary: Path, prefix: str, size: int | None, root: bytes | None, *, indexes=(), old_size: int = 0,
               old_root: bytes | None = None, height: int = 8, bearer: str | None = None,
               note_vkeys=(), cosigner_vkeys=()) -> tuple[int, dict]:
    """Run the client; (exit status 0 or 1, its JSON report). With ``note_vkeys`` (and
    ``cosigner_vkeys``) the trusted tree comes from the log's verified checkpoint note."""
    argv = [str(binary), "-prefix", prefix, "-height", str(height)]
    if size is not None and root is not None:
        argv += ["-size", str(size), "-root", root.hex()]
    argv += [a for v in note_vkeys for a in ("-note-vkey", v)] + [a for v in cosigner_vkeys for a in ("-cosigner-vkey", v)]
    if indexes:
        argv += ["-index", ",".join(map(str, indexes))]
    if old_size:
        argv += ["-old-size", str(old_size), "-old-root", (old_root or bytes(32)).hex()]
    env = {**os.environ, **({"TLOG_BEARER_TOKEN": bearer} if bearer else {})}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)
