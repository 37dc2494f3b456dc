"""torchwood's litewitness (filippo.io/torchwood, a witness nobody here wrote) on loopback.

``build()`` installs ``litewitness`` and ``witnessctl`` with ``go install`` into the cache
(once per Go version). ``python -m ledgerstream.stack.litewitness --dir D --name N --listen
H:P --log-vkey V`` is one supervisable process: it keeps an Ed25519 key in D (OpenSSH
format, 0600), starts a dedicated ``ssh-agent`` holding it (litewitness signs through the
agent, see its README), registers the log's origin and vkey with ``witnessctl`` (idempotent),
runs litewitness in the foreground and stops the agent when litewitness exits or on SIGTERM.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledgerstream.core import note
from ledgerstream.core.config import cache_dir

MODULE = "filippo.io/torchwood"
VERSION = "v0.6.1"
KEY_FILE = "litewitness.key"


def build(timeout: float = 900.0) -> tuple[Path, Path] | None:
    """(litewitness, witnessctl) built with Go into the cache; None without ``go``.
    Raises RuntimeError with go's output if the build fails."""
    go = shutil.which("go")
    if go is None:
        return None
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout.strip()
    out = cache_dir() / "go-bin" / f"torchwood-{VERSION}-{hashlib.sha256(version.encode()).hexdigest()[:12]}"
    tools = (out / "litewitness", out / "witnessctl")
    if all(t.is_file() for t in tools):
        return tools
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(out), "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    done = subprocess.run([go, "install", f"{MODULE}/cmd/litewitness@{VERSION}", f"{MODULE}/cmd/witnessctl@{VERSION}"],
                          env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not all(t.is_file() for t in tools):
        raise RuntimeError(f"go install {MODULE}@{VERSION} failed:\n{done.stdout}{done.stderr}")
    return tools


def load_or_create_key(directory: Path) -> Ed25519PrivateKey:
    path = directory / KEY_FILE
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        data = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                          serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    key = serialization.load_ssh_private_key(path.read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def vkey(name: str, key: Ed25519PrivateKey) -> str:
    """litewitness's cosigner vkey: a tlog-cosignature/v1 (type 0x04) key under ``name``."""
    return note.Verifier(name, note.COSIGNATURE_V1, _raw(key)).vkey


def ssh_fingerprint(key: Ed25519PrivateKey) -> str:
    """``SHA256:`` + unpadded base64 of SHA-256 of the OpenSSH public key blob (what -key wants)."""
    blob = base64.b64decode(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                          serialization.PublicFormat.OpenSSH).split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _witnessctl(ctl: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ctl), *args], capture_output=True, text=True, timeout=60)


def register_log(ctl: Path, db: Path, origin: str, log_vkeys: list[str]) -> None:
    """Add the log and its keys to the litewitness database unless they are there already."""
    listed = _witnessctl(ctl, "list-logs", "-db", str(db))
    known = listed.stdout if listed.returncode == 0 else ""
    if f'"origin":"{origin}"' not in known:
        done = _witnessctl(ctl, "add-log", "-db", str(db), "-origin", origin)
        if done.returncode != 0:
            raise RuntimeError(f"witnessctl add-log: {done.stderr.strip()}")
    for key in log_vkeys:
        if key not in known:
            done = _witnessctl(ctl, "add-key", "-db", str(db), "-origin", origin, "-key", key)
            if done.returncode != 0:
                raise RuntimeError(f"witnessctl add-key: {done.stderr.strip()}")


def run(directory: Path, name: str, listen: str, log_vkeys: list[str]) -> int:
    tools = build()
    if tools is None:
        print("go is not on PATH: cannot run litewitness", file=sys.stderr)
        return 2
    litewitness, ctl = tools
    key = load_or_create_key(directory)
    origins = {note.parse_vkey(v).name for v in log_vkeys}
    db = directory / "litewitness.db"
    for origin in sorted(origins):
        register_log(ctl, db, origin, [v for v in log_vkeys if note.parse_vkey(v).name == origin])
    (directory / "witness.vkey").write_text(vkey(name, key) + "\n")
    # a unix socket path must stay short (108 bytes): the agent's lives in a private temp folder
    sock_dir = Path(tempfile.mkdtemp(prefix="lw-agent-"))
    sock = sock_dir / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    child: subprocess.Popen | None = None

    def stop(*_: object) -> None:
        if child is not None and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ssh-agent did not start: {agent.stderr.read().decode() if agent.stderr else ''}")
            time.sleep(0.05)
        added = subprocess.run(["ssh-add", str(directory / KEY_FILE)], env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
                               capture_output=True, text=True, timeout=30)
        if added.returncode != 0:
            raise RuntimeError(f"ssh-add: {added.stderr.strip()}")
        child = subprocess.Popen([str(litewitness), "-db", str(db), "-name", name, "-key", ssh_fingerprint(key),
                                  "-ssh-agent", str(sock), "-listen", listen])
        print(f"litewitness {name} on http://{listen} vkey {vkey(name, key)}", flush=True)
        return child.wait()
    finally:
        stop()
        agent.terminate()
        agent.wait(10)
        shutil.rmtree(sock_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ledgerstream.stack.litewitness", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", type=Path, required=True, help="key, database and vkey folder")
    p.add_argument("--name", required=True, help="the witness's key name")
    p.add_argument("--listen", required=True, help="host:port (loopback)")
    p.add_argument("--log-vkey", action="append", required=True, help="a log's Ed25519 vkey (repeatable)")
    a = p.parse_args(argv)
    try:
        return run(a.dir, a.name, a.listen, a.log_vkey)
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"litewitness: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
