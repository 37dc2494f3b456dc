"""Signer settings, with defaults that suit the dev stack."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ledgerstream.core.config import DEFAULT_ORIGIN, Topics


#: records per transaction by signing mode when none is given: a checkpoint-mode transaction
#: pays its fixed costs (offsets, commit, their round trips) over more entries
#: (docs/benchmarks-signer.md round 10); entry mode is bound by its signatures
DEFAULT_BATCH_SIZE = {"entry": 2000, "checkpoint": 10_000}
#: entries per recovery snapshot by signing mode when none is given. Each snapshot waits for
#: its transaction's entries to be delivered (it names the head's offset); checkpoint mode
#: pays that less often, and its unsigned tail replays at ~120,000 entries/s on a restart
#: (decision D53)
DEFAULT_SNAPSHOT_EVERY = {"entry": 10_000, "checkpoint": 50_000}


@dataclass(frozen=True)
class SignerSettings:
    bootstrap: str
    topics: Topics
    key_path: Path
    #: Ed25519 key for the checkpoint's standard signed-note line (docs/spec.md 6.1); None: no such line
    note_key_path: Path | None = None
    #: RFC 3161 TSAs; tried in order ("first") or every one as a witness ("all")
    tsa_urls: tuple[str, ...] = ()
    tsa_policy: str = "first"
    #: "entry": every entry carries an ML-DSA-65 signature; "checkpoint": only checkpoints do
    signing_mode: str = "entry"
    #: "checkpoint": one token per checkpoint; "entry": also a token per entry (low volume)
    timestamp_mode: str = "checkpoint"
    #: records per transaction; a backlog is drained this many at a time (docs/signer.md);
    #: 0: the signing mode's DEFAULT_BATCH_SIZE
    batch_size: int = 0
    batch_ms: int = 50
    checkpoint_every: int = 1000
    checkpoint_ms: int = 5000
    max_record_bytes: int = 1024 * 1024
    #: how many recent event_ids are remembered for dedup and link resolution
    dedup_horizon: int = 1_000_000
    #: write a recovery snapshot to signer-state every this many entries or milliseconds
    #: (whichever comes first; snapshots.py); 0 entries: never (every start replays everything);
    #: None: the signing mode's DEFAULT_SNAPSHOT_EVERY
    snapshot_every: int | None = None
    snapshot_ms: int = 30_000
    origin: str = DEFAULT_ORIGIN
    transactional_id: str = ""
    group_id: str = ""
    status_file: Path | None = None
    #: wait for the leadership lease before writing (hot standby)
    leader_election: bool = True
    #: the leadership lease's consumer-group session (leadership.py): a takeover costs this
    #: plus at most a second; the broker bounds it (group.min/max.session.timeout.ms)
    session_timeout_ms: int = 6000
    extra_producer: dict[str, str] = field(default_factory=dict)
    #: seconds without progress of the loop (e.g. a Kafka call that never returns) after
    #: which the process exits with status 4 for its supervisor to restart it; 0: never
    watchdog_seconds: float = 120.0
    #: nice value of the entry-signing thread (signing.py); None leaves it at the process's
    signing_nice: int | None = -10

    def __post_init__(self) -> None:
        if self.signing_mode not in ("entry", "checkpoint"):
            raise ValueError(f"signing_mode must be 'entry' or 'checkpoint', not {self.signing_mode!r}")
        if self.timestamp_mode not in ("checkpoint", "entry"):
            raise ValueError(f"timestamp_mode must be 'checkpoint' or 'entry', not {self.timestamp_mode!r}")
        if self.tsa_policy not in ("first", "all"):
            raise ValueError("tsa_policy must be 'first' or 'all'")
        if self.batch_size == 0:
            object.__setattr__(self, "batch_size", DEFAULT_BATCH_SIZE[self.signing_mode])
        if self.snapshot_every is None:
            object.__setattr__(self, "snapshot_every", DEFAULT_SNAPSHOT_EVERY[self.signing_mode])
        if self.signing_nice is not None and not -20 <= self.signing_nice <= 19:
            raise ValueError("signing_nice must be between -20 and 19")
        if self.snapshot_every < 0 or self.snapshot_ms < 1:  # type: ignore[operator]  # resolved above
            raise ValueError("snapshot_every must be >= 0 and snapshot_ms positive")
        if self.session_timeout_ms < 1:  # its bounds are the broker's (LeaderLease.poll says so)
            raise ValueError(f"session_timeout_ms must be positive, not {self.session_timeout_ms}")
        if self.checkpoint_every < 1 or self.batch_size < 1:
            raise ValueError("checkpoint_every and batch_size must be positive")

    @property
    def txn_id(self) -> str:
        return self.transactional_id or f"{self.topics.entries}.signer"

    @property
    def group(self) -> str:
        return self.group_id or f"{self.topics.entries}.signer"
