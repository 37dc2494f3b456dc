"""An untrusted bundle ZIP is read within limits: bombs, lying headers, bad names, too many members.

The ZIPs are built here with the standard library's zipfile (the oracle for what the archive
holds); the verifier must refuse each with a `zip` error naming the limit, never crash.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from ledgerstream.tools.bundle_verify import verify_bundle
from ledgerstream.tools.bundle_zip import ZipLimits

pytestmark = pytest.mark.unit

_MIB = 1 << 20


def _zip(members: dict[str, bytes], **kw: object) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, **kw) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _zip_errors(source: Path | bytes, limits: ZipLimits = ZipLimits()) -> list[dict[str, str]]:
    report = verify_bundle(source, limits=limits)
    assert not report.ok
    assert {e["check"] for e in report.errors} == {"zip"}, report.errors
    return report.errors


def _ledgerstream() -> str:
    exe = shutil.which("ledgerstream", path=os.path.dirname(sys.executable))
    assert exe is not None
    return exe

_LAUNCHER = ("import resource, subprocess, sys\n"
             "proc = subprocess.run(sys.argv[2:], capture_output=True)\n"
             "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
             "open(sys.argv[1], 'w').write(str(rss))\n"
             "sys.stdout.buffer.write(proc.stdout); sys.stderr.buffer.write(proc.stderr)\n"
             "sys.exit(proc.returncode)\n")


def _verify_measured(bundle: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[bytes], int]:
    """Run `ledgerstream verify-bundle --json` and return its max RSS in bytes. A small launcher
    starts it, so the figure is the verifier's own and not this (forked) pytest process's."""
    rss_file = tmp_path / "rss"
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, str(rss_file), _ledgerstream(), "verify-bundle",
                           "--json", str(bundle)], capture_output=True, timeout=300)
    return done, int(rss_file.read_text()) * 1024


@pytest.mark.slow
def test_zip_bomb_manifest_is_refused_fast_in_little_memory(tmp_path: Path) -> None:
    """The issue's bomb: a 2 GiB zero-filled manifest.json, deflated, refused by the CLI."""
    bomb = tmp_path / "bomb.zip"
    chunk = bytes(_MIB)
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("manifest.json", "w", force_zip64=True) as fh:
            for _ in range(2048):
                fh.write(chunk)
    assert bomb.stat().st_size < 16 * _MIB
    assert zipfile.ZipFile(bomb).getinfo("manifest.json").file_size == 2048 * _MIB
    started = time.monotonic()
    done, rss = _verify_measured(bomb, tmp_path)
    elapsed = time.monotonic() - started
    out, err = done.stdout, done.stderr
    assert done.returncode == 1, err.decode()
    doc = json.loads(out)
    assert doc["ok"] is False
    assert doc["errors"] == [{"check": "zip", "member": "manifest.json",
                              "detail": f"declares {2048 * _MIB} bytes uncompressed, more than the member limit "
                                        f"of {ZipLimits().member_bytes}"}]
    assert b"Traceback" not in err
    assert rss < 100 * 1000 * 1000, f"verifier RSS {rss} bytes"
    assert elapsed < 30  # generous: the measured time is reported, not asserted tightly
    print(f"bomb refused in {elapsed:.2f} s, RSS {rss / 1e6:.1f} MB (process start-up included)")


def test_bomb_rss_of_the_verifying_process_is_small(tmp_path: Path) -> None:
    """RSS of `ledgerstream verify-bundle` on a bomb (here 512 MiB of zeros, to keep the unit
    test quick; the slow test above builds the issue's 2 GiB one) stays under 100 MB."""
    bomb = tmp_path / "bomb.zip"
    chunk = bytes(_MIB)
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("manifest.json", "w", force_zip64=True) as fh:
            for _ in range(512):
                fh.write(chunk)
    done, rss = _verify_measured(bomb, tmp_path)
    assert done.returncode == 1
    assert json.loads(done.stdout)["errors"][0]["check"] == "zip"
    assert rss < 100 * 1000 * 1000, f"verifier RSS {rss} bytes"


def test_lying_header_does_not_inflate_past_the_declared_size() -> None:
    """A member that declares 100 bytes but inflates to 64 MiB: read stops at 101 bytes."""
    blob = bytearray(_zip({"manifest.json": bytes(64 * _MIB)}))
    cd = blob.rindex(b"PK\x01\x02")
    struct.pack_into("<L", blob, cd + 24, 100)  # uncompressed size in the central directory
    errors = _zip_errors(bytes(blob))
    assert errors[0]["member"] in ("manifest.json", "")


def test_declared_member_size_limit() -> None:
    errors = _zip_errors(_zip({"manifest.json": bytes(2000)}), ZipLimits(member_bytes=1000))
    assert errors == [{"check": "zip", "member": "manifest.json",
                       "detail": "declares 2000 bytes uncompressed, more than the member limit of 1000"}]


def test_total_uncompressed_limit() -> None:
    errors = _zip_errors(_zip({"a": bytes(600), "b": bytes(600)}), ZipLimits(total_bytes=1000))
    assert errors[0]["detail"] == "uncompressed size 1200 exceeds the limit of 1000 bytes"


def test_member_count_limit_is_checked_from_the_end_record() -> None:
    blob = _zip({f"entries/{i}.json": b"{}" for i in range(11)})
    assert _zip_errors(blob, ZipLimits(members=10))[0]["detail"] == "11 members, more than the limit of 10"


def test_compression_ratio_limit() -> None:
    blob = _zip({"manifest.json": bytes(4 * _MIB)})
    compressed = zipfile.ZipFile(io.BytesIO(blob)).getinfo("manifest.json").compress_size
    errors = _zip_errors(blob, ZipLimits(ratio=200))
    assert errors[0]["detail"] == f"compression ratio {4 * _MIB // compressed}:1 exceeds the limit of 200:1"
    # a repetitive member below the floor is fine as far as the zip step goes
    report = verify_bundle(_zip({"manifest.json": bytes(1000)}), limits=ZipLimits(ratio=2))
    assert report.passed["zip"] == 1


def test_bundle_file_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "b.zip"
    path.write_bytes(_zip({"manifest.json": b"{}"}))
    errors = _zip_errors(path, ZipLimits(bundle_bytes=50))
    assert errors[0]["detail"] == f"bundle file is {path.stat().st_size} bytes, more than the limit of 50"


@pytest.mark.parametrize("name", ["/etc/passwd", "a/../../b", "..", "dir/", "a\\b", "x" * 300])
def test_unsafe_names(name: str) -> None:
    errors = _zip_errors(_zip({name: b"1"}))
    assert "name" in errors[0]["detail"]


def test_duplicate_names() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("manifest.json", b"{}")
        with pytest.warns(UserWarning):
            zf.writestr("manifest.json", b"{}")
    assert _zip_errors(buf.getvalue())[0]["detail"] == "member name occurs more than once"


@pytest.mark.parametrize("blob", [b"", b"PK", b"not a zip at all" * 10])
def test_garbage_is_a_zip_error(blob: bytes) -> None:
    _zip_errors(blob)

