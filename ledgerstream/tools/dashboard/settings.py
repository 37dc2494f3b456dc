"""Dashboard settings and how they are found (options, environment, the dev stack's home)."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ledgerstream.core import config
from ledgerstream.core.verify.trust import TrustedKeys
from ledgerstream.core.alert_signature import VerifierKey, trusted_verifier_keys
from ledgerstream.core.config import Topics, is_loopback
from ledgerstream.core.errors import ConfigError
from ledgerstream.index.paths import IndexPaths

TOKEN_ENV = "LEDGERSTREAM_DASHBOARD_TOKEN"
DEFAULT_PORT = 8765


@dataclass(frozen=True)
class DashboardSettings:
    home: Path
    bootstrap: str
    topics: Topics
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    #: signer public keys (PEM) that entry and checkpoint signatures must verify under
    public_keys: tuple[Path, ...] = ()
    #: PEM CA bundle of the TSAs, to verify RFC 3161 tokens
    tsa_ca: Path | None = None
    #: extra ``Host`` header names accepted besides the loopback names and the bound host
    allowed_hosts: tuple[str, ...] = ()
    #: verifier keys whose alert signatures are trusted, by key_id (core/alert_signature.py)
    trusted_verifiers: Mapping[str, VerifierKey] = field(default_factory=dict)
    #: the index's C2SP tiles, served under ``/tlog/`` (docs/index.md); None serves nothing
    tiles_dir: Path | None = None


def token_file(home: Path) -> Path:
    """Where the dev stack's dashboard token lives (read by ``dev status``)."""
    return home / "dashboard" / "token"


def load_or_create_token(path: Path) -> str:
    """Read the token file, creating it (0600, in a 0700 folder) with a fresh random token if absent."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
    else:
        token = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
    path.chmod(0o600)
    return token


def resolve(*, home: Path | None, host: str, port: int, token: str | None, bootstrap: str | None,
            topic_prefix: str | None, public_keys: tuple[Path, ...], tsa_ca: Path | None,
            token_path: Path | None = None, no_token: bool = False,
            allowed_hosts: tuple[str, ...] = (), verifier_keys: tuple[str, ...] = (),
            tiles_dir: Path | None = None) -> DashboardSettings:
    """Fill the gaps: keys and TSA CA from the dev stack's home, and a token from
    ``token_path`` (default HOME/dashboard/token, generated on first start) unless one is given.
    ``no_token`` is only allowed on a loopback address: anyone reaching the port could read the ledger.
    Trusted verifier keys: ``verifier_keys`` ([ID=]PEM), else $LEDGERSTREAM_VERIFIER_KEYS, else
    HOME/keys/verifier-*.pub.pem (``alert_signature.trusted_verifier_keys``). Tiles: ``tiles_dir``
    else the index's HOME/tiles (served once the index has written them)."""
    home_dir = Path(home).expanduser().resolve() if home else config.home()
    topics = Topics.with_prefix(topic_prefix) if topic_prefix is not None else config.resolve_topics(home_dir)
    keys = public_keys or tuple(TrustedKeys.home_paths(home_dir))  # the same default as every verifier
    ca = tsa_ca or next((p for p in [home_dir / "tsa" / "ca.pem"] if p.exists()), None)
    for path in (*keys, *([ca] if ca else [])):
        if not path.is_file():
            raise ConfigError(f"{path} does not exist")
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    if no_token:
        if token is not None:
            raise ConfigError("--no-token and a token (--token or $" + TOKEN_ENV + ") exclude each other")
        if not is_loopback(host):
            raise ConfigError(f"refusing to serve on {host} without a token: --no-token is only allowed "
                              "on a loopback address (127.0.0.1, ::1, localhost)")
    elif token is None:
        token = load_or_create_token(token_path or token_file(home_dir))
    if token is not None and len(token) < 16:
        raise ConfigError("the dashboard token must be at least 16 characters")
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is out of range")
    return DashboardSettings(home=home_dir, bootstrap=config.resolve_bootstrap(bootstrap, home_dir), topics=topics,
                             host=host, port=port, token=token, public_keys=keys, tsa_ca=ca,
                             allowed_hosts=tuple(allowed_hosts),
                             trusted_verifiers=trusted_verifier_keys(home_dir, verifier_keys),
                             tiles_dir=IndexPaths.of(home_dir, tiles_dir=tiles_dir).tiles_dir)
