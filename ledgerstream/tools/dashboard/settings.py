"""Dashboard settings and how they are found (options, environment, the dev stack's home)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ledgerstream.core import config
from ledgerstream.core.config import Topics
from ledgerstream.core.errors import ConfigError

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


def resolve(*, home: Path | None, host: str, port: int, token: str | None, bootstrap: str | None,
            topic_prefix: str | None, public_keys: tuple[Path, ...], tsa_ca: Path | None) -> DashboardSettings:
    """Fill the gaps: keys and TSA CA from the dev stack's home when not given."""
    home_dir = Path(home).expanduser().resolve() if home else config.home()
    topics = Topics.with_prefix(topic_prefix) if topic_prefix is not None else config.resolve_topics(home_dir)
    keys = public_keys or tuple(p for p in [home_dir / "keys" / "signer.pub.pem"] if p.exists())
    ca = tsa_ca or next((p for p in [home_dir / "tsa" / "ca.pem"] if p.exists()), None)
    for path in (*keys, *([ca] if ca else [])):
        if not path.is_file():
            raise ConfigError(f"{path} does not exist")
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) < 16:
        raise ConfigError("the dashboard token must be at least 16 characters")
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is out of range")
    return DashboardSettings(home=home_dir, bootstrap=config.resolve_bootstrap(bootstrap, home_dir), topics=topics,
                             host=host, port=port, token=token, public_keys=keys, tsa_ca=ca)
