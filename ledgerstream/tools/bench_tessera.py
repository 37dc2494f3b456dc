"""Tessera, the transparency log most engineers would pick instead, measured beside us.

``bench signer --compare tessera`` builds ``tessera_harness/`` (Go, Tessera v1.0.4's POSIX
driver, pinned in its go.mod) with the local Go toolchain into the cache and runs it on this
machine right after our own runs, so the ratio of checkpoint-mode entries/s to Tessera's
appends/s is measured in one session, not cited (issue 18 item 5).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable

from ledgerstream.core.config import cache_dir

HARNESS = Path(__file__).resolve().parent / "tessera_harness"
#: issue 18's setup: 2,048 concurrent adders, 600-byte entries, batches of 1,024 / 50 ms, 1 s checkpoints
DEFAULTS = {"adders": 2048, "entry-bytes": 600, "batch": 1024, "batch-ms": 50, "checkpoint-ms": 1000}


def build(timeout: float = 900.0) -> Path | None:
    """The harness binary, built once per Go version and source; None without ``go``.
    RuntimeError with go's output if the build fails (e.g. no module proxy)."""
    go = shutil.which("go")
    if go is None:
        return None
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout.strip()
    digest = hashlib.sha256(version.encode())
    for name in ("main.go", "go.mod", "go.sum"):
        digest.update((HARNESS / name).read_bytes())
    binary = cache_dir() / "go-bin" / f"tessera-harness-{digest.hexdigest()[:12]}"
    if binary.is_file():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    done = subprocess.run([go, "build", "-o", str(binary), "."], cwd=HARNESS, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0 or not binary.is_file():
        raise RuntimeError(f"building the Tessera harness failed:\n{done.stdout}{done.stderr}")
    return binary


def run(seconds: float = 20.0, log: Callable[[str], None] = lambda msg: None, **options: Any) -> dict[str, Any]:
    """One measurement: ``{"entries_per_s", "entries", "seconds", ...}`` as the harness prints
    it, or ``{"skipped": reason}`` when Go is missing."""
    try:
        binary = build()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return {"skipped": f"the Tessera harness could not be built: {exc}"}
    if binary is None:
        return {"skipped": "no Go toolchain (go) on PATH"}
    args = {**DEFAULTS, **{k.replace("_", "-"): v for k, v in options.items()}}
    with tempfile.TemporaryDirectory(prefix="ledgerstream-tessera-") as tmp:
        log(f"Tessera v1.0.4 (POSIX) appending for {seconds:.0f} s with {args['adders']} adders ...")
        argv = [str(binary), "-dir", str(Path(tmp) / "log"), "-seconds", str(seconds),
                *[f"-{k}={v}" for k, v in args.items()]]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"the Tessera harness failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    result["entries_per_s"] = round(result["entries_per_s"])
    result["seconds"] = round(result["seconds"], 2)
    return result


def compare(ours_per_s: float, tessera: dict[str, Any]) -> dict[str, Any]:
    """Our checkpoint-mode rate against Tessera's, from the same session."""
    if "skipped" in tessera:
        return {"tessera": tessera, "checkpoint_mode_entries_per_s": ours_per_s, "ratio": None}
    return {"tessera": tessera, "checkpoint_mode_entries_per_s": ours_per_s,
            "ratio": round(ours_per_s / max(tessera["entries_per_s"], 1), 2)}
