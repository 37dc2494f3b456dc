"""Configuration shared by every component: home folder, topic names, bootstrap lookup.

Resolution order for the Kafka bootstrap: an explicit ``--bootstrap`` option, then
``$LEDGERSTREAM_BOOTSTRAP``, then the running dev stack recorded under
``$LEDGERSTREAM_HOME/stack.json``.
"""
from __future__ import annotations

import ipaddress

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ledgerstream.core.errors import ConfigError

#: the dev stack's log origin: the first line of its checkpoints and their note key name
DEFAULT_ORIGIN = "ledgerstream/dev"
DEFAULT_PREFIX = "ledgerstream."
STACK_FILE = "stack.json"
#: checkpoint-topic records a reader's Checker may hold waiting for entries before the reader
#: holds that topic back (until the entries catch up). Without a bound, a reader behind by n
#: entries read every checkpoint of them first, held them and serialized them with its state
#: at every commit: O(n) memory and O(n) work per batch (docs/decisions.md D48)
CHECKPOINT_READ_AHEAD = 256
#: a reader at the end of ``entries`` judges a checkpoint-topic record still waiting for
#: entries this long after it was read: it claims entries the ledger lacks
#: (checkpoint_root_mismatch). Verifier workers and the index follower alike
CHECKPOINT_WAIT_SECONDS = 30.0


def home() -> Path:
    """``$LEDGERSTREAM_HOME`` or ``~/.ledgerstream``: where the dev stack keeps everything."""
    return Path(os.environ.get("LEDGERSTREAM_HOME") or Path.home() / ".ledgerstream").expanduser().resolve()


def cache_dir() -> Path:
    """Downloads that survive ``dev up --fresh`` (the Kafka jars): ``$LEDGERSTREAM_CACHE``."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ledgerstream"
    return Path(os.environ.get("LEDGERSTREAM_CACHE") or default).expanduser().resolve()


@dataclass(frozen=True)
class Topics:
    """Topic names, all under one prefix (DESIGN.md 'Topics')."""

    actions: str
    entries: str
    checkpoints: str
    alerts: str
    deadletter: str
    approvals: str
    #: the signer's snapshots (compacted; docs/spec.md section 11); "" in a stack file from before it
    signer_state: str = ""

    @classmethod
    def with_prefix(cls, prefix: str | None = None) -> "Topics":
        p = prefix if prefix is not None else os.environ.get("LEDGERSTREAM_TOPIC_PREFIX", DEFAULT_PREFIX)
        return cls(**{name: p + name.replace("_", "-") for name in cls.__dataclass_fields__})

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


#: partitions and configs of each topic; entries/checkpoints: one partition, kept forever
TOPIC_LAYOUT: dict[str, tuple[int, dict[str, str]]] = {
    # 1 MiB: the signer's --max-record-bytes default; the producer library's payload limit
    # (512 KiB) and librdkafka's batch limit (1,000,000 bytes) stay below it (docs/signer.md)
    "actions": (6, {"retention.ms": str(7 * 24 * 3600 * 1000), "max.message.bytes": str(1024 * 1024)}),
    "entries": (1, {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete",
                    "max.message.bytes": str(8 * 1024 * 1024)}),
    "checkpoints": (1, {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}),
    "alerts": (3, {"retention.ms": str(90 * 24 * 3600 * 1000)}),
    "deadletter": (1, {"retention.ms": "-1", "max.message.bytes": str(8 * 1024 * 1024)}),
    "approvals": (1, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
    # only the latest record per key matters (two snapshot slots, the live dedup chunks):
    # small segments and an eager cleaner keep a recovery's read of it short
    "signer_state": (1, {"cleanup.policy": "compact", "max.message.bytes": str(8 * 1024 * 1024),
                         "segment.bytes": str(16 * 1024 * 1024), "segment.ms": str(3600 * 1000),
                         "min.cleanable.dirty.ratio": "0.1", "delete.retention.ms": str(3600 * 1000)}),
}


def stack_file(home_dir: Path | None = None) -> Path:
    return (home_dir or home()) / STACK_FILE


def read_stack(home_dir: Path | None = None) -> dict[str, Any] | None:
    """The dev stack's recorded state, or None when no stack was ever started there."""
    path = stack_file(home_dir)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def resolve_bootstrap(explicit: str | None = None, home_dir: Path | None = None) -> str:
    """Where Kafka is: --bootstrap, $LEDGERSTREAM_BOOTSTRAP, or the dev stack."""
    if explicit:
        return explicit
    env = os.environ.get("LEDGERSTREAM_BOOTSTRAP")
    if env:
        return env
    stack = read_stack(home_dir)
    if stack and stack.get("kafka", {}).get("bootstrap"):
        return stack["kafka"]["bootstrap"]
    raise ConfigError(
        f"no Kafka bootstrap: pass --bootstrap HOST:PORT, set LEDGERSTREAM_BOOTSTRAP, "
        f"or start the dev stack with 'ledgerstream dev up' (home: {home_dir or home()})")


def resolve_topics(home_dir: Path | None = None) -> Topics:
    """Topic names of the dev stack if one is recorded, else from the environment."""
    stack = read_stack(home_dir)
    if stack and "topics" in stack:
        return Topics(**{k: stack["topics"][k] for k in Topics.__dataclass_fields__ if k in stack["topics"]})
    return Topics.with_prefix()


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address; any other name or address reaches beyond this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
