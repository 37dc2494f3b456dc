"""``ledgerstream keys``: generate, show, refusal to overwrite, and exit status 2 on bad input."""
from __future__ import annotations

import base64
import hashlib
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledgerstream.cli.main import cli
from ledgerstream.core import mldsa

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _no_backend_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mldsa.BACKEND_ENV, raising=False)


def run(*args: str):
    return CliRunner().invoke(cli, ["keys", *args])


def test_generate_writes_both_files(tmp_path: Path) -> None:
    out = tmp_path / "signer.pem"
    result = run("generate", "--out", str(out))
    assert result.exit_code == 0, result.output
    key = mldsa.load_private_key(out)
    public = mldsa.load_public_key((tmp_path / "signer.pem.pub").read_bytes())
    assert public == key.public_key()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert f"key_id: {public.key_id}" in result.output
    assert f"public key: {out}.pub" in result.output


def test_generate_with_each_backend(tmp_path: Path) -> None:
    for backend in mldsa.available_backends():
        result = run("generate", "--out", str(tmp_path / f"{backend}.pem"), "--backend", backend)
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("which", ["private", "public"])
def test_show_json(tmp_path: Path, which: str) -> None:
    out = tmp_path / "signer.pem"
    assert run("generate", "--out", str(out)).exit_code == 0
    path = out if which == "private" else tmp_path / "signer.pem.pub"
    result = run("show", str(path), "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    public = mldsa.load_private_key(out).public_key()
    ed = serialization.load_pem_private_key((tmp_path / "signer-ed25519.pem").read_bytes(), None)
    assert isinstance(ed, Ed25519PrivateKey)
    assert stat.S_IMODE((tmp_path / "signer-ed25519.pem").stat().st_mode) == 0o600
    ed_raw = ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert shown == {
        "algorithm": "ML-DSA-65",
        "key_id": public.key_id,
        "public_key_hex": public.raw.hex(),
        "backend": mldsa.default_backend(),
        "checkpoint_vkey": spec_vkey("ledgerstream/dev", b"\x01", ed_raw),
        "checkpoint_mldsa_vkey": spec_vkey("ledgerstream/dev", b"\xffledgerstream/ml-dsa-65", public.raw),
    }
    assert (tmp_path / "signer.vkey").read_text().splitlines() == [shown["checkpoint_vkey"],
                                                                  shown["checkpoint_mldsa_vkey"]]


def spec_vkey(name: str, type_bytes: bytes, public: bytes) -> str:
    """c2sp.org/signed-note: name+hex(SHA-256(name || 0x0A || type || key)[:4])+base64(type || key)."""
    key_id = hashlib.sha256(name.encode() + b"\n" + type_bytes + public).digest()[:4]
    return f"{name}+{key_id.hex()}+{base64.b64encode(type_bytes + public).decode()}"


def test_show_origin_names_the_vkeys(tmp_path: Path) -> None:
    out = tmp_path / "signer.pem"
    assert run("generate", "--out", str(out), "--origin", "example.com/log").exit_code == 0
    shown = json.loads(run("show", str(out), "--json", "--origin", "example.com/log").output)
    assert shown["checkpoint_vkey"].startswith("example.com/log+")
    assert (tmp_path / "signer.vkey").read_text().splitlines()[0] == shown["checkpoint_vkey"]
    bad = run("generate", "--out", str(tmp_path / "x.pem"), "--origin", "has space")
    assert bad.exit_code == 2 and "--origin" in bad.output


def test_show_text(tmp_path: Path) -> None:
    out = tmp_path / "signer.pem"
    run("generate", "--out", str(out))
    result = run("show", str(out))
    assert result.exit_code == 0, result.output
    assert "ML-DSA-65 private key" in result.output
    assert f"key_id: {mldsa.load_private_key(out).public_key().key_id}" in result.output


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "signer.pem"
    run("generate", "--out", str(out))
    before = out.read_bytes()
    result = run("generate", "--out", str(out))
    assert result.exit_code == 2
    assert "already exist" in result.output and "--force" in result.output
    assert out.read_bytes() == before
    out.unlink()  # only the .pub is left: still refused, it would be replaced
    assert run("generate", "--out", str(out)).exit_code == 2
    result = run("generate", "--out", str(out), "--force")
    assert result.exit_code == 0, result.output
    assert mldsa.load_public_key((tmp_path / "signer.pem.pub").read_bytes()) == mldsa.load_private_key(out).public_key()


def test_generate_with_absent_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mldsa, "_probe_liboqs", lambda: mldsa._Probe(None, "no library (test)"))
    result = run("generate", "--out", str(tmp_path / "k.pem"), "--backend", "liboqs")
    assert result.exit_code == 2
    assert "'liboqs' is not available" in result.output
    assert not (tmp_path / "k.pem").exists()


@pytest.mark.parametrize(
    "content",
    [
        b"garbage\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    ],
    ids=["garbage", "bad private PEM", "bad public PEM", "ed25519 key"],
)
def test_show_bad_file_exits_2(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pem"
    path.write_bytes(content)
    result = run("show", str(path), "--json")
    assert result.exit_code == 2
    assert f"Error: {path}" in result.output


def test_show_missing_file_exits_2(tmp_path: Path) -> None:
    result = run("show", str(tmp_path / "absent.pem"))
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_entry_point_exit_status(tmp_path: Path) -> None:
    """Through the real ``ledgerstream`` main(), not click's test runner."""
    bad = tmp_path / "bad.pem"
    bad.write_text("garbage\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ledgerstream.cli.main", "keys", "show", str(bad)],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "neither a PEM public key" in proc.stderr


def test_help_explains() -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert "key_id" in result.output and "FIPS 204" in result.output
    assert "--force" in run("generate", "--help").output
