"""Kafka client credentials: which principal a client authenticates as (issue 19, D26).

Every Kafka client in ledgerstream is built with :func:`kafka_config`, naming its *role*.
The role picks the credentials, never the code path: a process that is given one
properties file (``$LEDGERSTREAM_KAFKA_CONFIG``, librdkafka ``key=value`` lines such as
``security.protocol``, ``sasl.mechanism``, ``sasl.username``, ``sasl.password``) uses it for
every client; otherwise, when the bootstrap is the dev stack's, the stack's generated file
for that role is used (``dev status --json`` → ``kafka.security.client_configs``); otherwise
the client connects without credentials (a broker with ACLs then refuses it).

Roles and what their principals may do are listed in :data:`ROLES` and in docs/security.md.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from ledgerstream.core.config import home, read_stack
from ledgerstream.core.errors import ConfigError

#: role -> what it is for (the ACLs themselves: ledgerstream/stack/acls.py)
ROLES: dict[str, str] = {
    "admin": "creates topics and ACLs (dev up, benchmarks); a super user",
    "producer": "agents and approvers: writes actions and approvals",
    "signer": "the signer: reads actions, writes entries, checkpoints and dead letters in its transactions",
    "verifier": "verifier workers: read the ledger, write alerts",
    "witness": "the witness client: writes witness cosignatures (NoteSignature records) to checkpoints, nothing else",
    "reader": "read-only tools: replay, show, prove, dashboard, SIEM export, verify",
}
ENV_CONFIG = "LEDGERSTREAM_KAFKA_CONFIG"
#: properties a credentials file may set; anything else is refused so that a typo or a
#: file meant for another tool fails loudly instead of being half applied
ALLOWED_KEYS = frozenset({
    "security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password",
    "ssl.ca.location", "ssl.certificate.location", "ssl.key.location", "ssl.key.password",
    "ssl.endpoint.identification.algorithm", "bootstrap.servers",
})
MAX_FILE_BYTES = 64 * 1024


def read_properties(path: Path) -> dict[str, str]:
    """A librdkafka properties file: ``key=value`` lines, ``#`` comments, blank lines."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"Kafka client config {path} is larger than {MAX_FILE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read Kafka client config {path}: {exc}") from exc
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or key not in ALLOWED_KEYS:
            raise ConfigError(f"{path}:{number}: expected one of {', '.join(sorted(ALLOWED_KEYS))} as "
                              f"key=value, got {key!r}")
        out[key] = value.strip()
    return out


def write_properties(path: Path, props: Mapping[str, str]) -> None:
    """Write a credentials file readable by its owner only (0600), atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(f"{k}={v}\n" for k, v in props.items()))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def credentials_file(bootstrap: str, role: str, home_dir: Path | None = None) -> Path | None:
    """The properties file a client of ``role`` uses for ``bootstrap``, or None (no credentials)."""
    if role not in ROLES:
        raise ValueError(f"unknown Kafka client role {role!r} (roles: {', '.join(ROLES)})")
    explicit = os.environ.get(ENV_CONFIG)
    if explicit:
        return Path(explicit).expanduser()
    stack = read_stack(home_dir or home()) or {}
    kafka = stack.get("kafka") or {}
    configs = (kafka.get("security") or {}).get("client_configs") or {}
    if kafka.get("bootstrap") == bootstrap and configs.get(role):
        return Path(configs[role])
    return None


def security_settings(bootstrap: str, role: str, home_dir: Path | None = None) -> dict[str, str]:
    """The security part of a client's configuration (empty for an open broker)."""
    path = credentials_file(bootstrap, role, home_dir)
    if path is None:
        return {}
    props = read_properties(path)
    props.pop("bootstrap.servers", None)  # the caller's bootstrap wins
    return props


def kafka_config(bootstrap: str, role: str, settings: Mapping[str, Any] | None = None,
                 home_dir: Path | None = None) -> dict[str, Any]:
    """A confluent-kafka configuration dict: bootstrap, the role's credentials, then ``settings``."""
    return {"bootstrap.servers": bootstrap, **security_settings(bootstrap, role, home_dir), **(settings or {})}


def role_env(bootstrap: str, role: str, home_dir: Path | None = None) -> dict[str, str]:
    """Environment making a child process use ``role``'s credentials for all its clients
    (benchmarks run their signer and verifier on private topics as the admin)."""
    path = credentials_file(bootstrap, role, home_dir)
    return {ENV_CONFIG: str(path)} if path is not None else {}
