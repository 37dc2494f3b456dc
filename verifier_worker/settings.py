"""Settings of one verifier worker, with defaults that suit the dev stack."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ledgerstream.core.config import CHECKPOINT_READ_AHEAD, CHECKPOINT_WAIT_SECONDS, Topics
from ledgerstream.core.errors import ConfigError
from ledgerstream.core.verify import CheckerConfig

ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class VerifierSettings:
    id: str
    home: Path
    bootstrap: str
    topics: Topics
    checker: CheckerConfig
    reverify: bool = False
    #: records per batch handed to the checker, and how long to wait for the first
    batch_size: int = 1000
    batch_seconds: float = 0.2
    threads: int = 1  # signature-check threads (core/verify/ SignaturePool)
    metrics_port: int = 0  # 0: any free port (the URL is in status.json)
    status_seconds: float = 2.0
    #: seconds without progress (reading records, or an observation + status round trip
    #: through the checker process) after which the process exits with status 4; 0: never
    watchdog_seconds: float = 120.0
    stall_seconds: float = 60.0
    checkpoint_overdue_seconds: float = 120.0
    #: a caught-up verifier waits this long before reporting checkpoints beyond the ledger
    checkpoint_wait_seconds: float = CHECKPOINT_WAIT_SECONDS
    #: checkpoint-topic records the checker may hold waiting for entries before the reader
    #: holds that topic back (core/read_ahead.py, D48)
    checkpoint_read_ahead: int = CHECKPOINT_READ_AHEAD
    signer_group: str = ""
    #: the verifier's own ML-DSA-65 private key, that signs its alerts (core/alert_signature.py)
    alert_key_path: Path | None = None
    #: topic prefix of another copy of this ledger whose checkpoints are compared (split_view)
    peer_prefix: str | None = None

    def __post_init__(self) -> None:
        if not ID_RE.match(self.id):
            raise ConfigError(f"verifier id {self.id!r} must be 1-64 characters of letters, digits, '_', '.', '-'")
        if self.checkpoint_read_ahead < 1:
            raise ConfigError(f"--checkpoint-read-ahead must be at least 1, not {self.checkpoint_read_ahead}")

    @property
    def prefix(self) -> str:
        entries = self.topics.entries
        return entries[: -len("entries")] if entries.endswith("entries") else ""

    @property
    def group(self) -> str:
        """The verifier's own consumer group (and faust app id)."""
        return f"{self.prefix}verifier-{self.id}"

    @property
    def peer_checkpoints(self) -> str | None:
        return Topics.with_prefix(self.peer_prefix).checkpoints if self.peer_prefix is not None else None

    @property
    def state_dir(self) -> Path:
        return self.home / "verifiers" / self.id

    @property
    def signer_group_id(self) -> str:
        """The signer's consumer group on ``actions`` (its default, see signer_worker.settings)."""
        return self.signer_group or f"{self.topics.entries}.signer"
