"""Liveness: a ledger that stops growing or stops being checkpointed is a finding too."""
from __future__ import annotations

from dataclasses import dataclass

from ledgerstream.core.verify.findings import Finding, Kind

@dataclass(frozen=True)
class LivenessSample:
    """What a running verifier observes about the pipeline around it (wall clock)."""

    now: float                       # seconds since the epoch
    actions_end: int                 # sum of the end offsets of the actions partitions
    signer_committed: int | None     # sum of the signer group's committed actions offsets, if known
    entries_end: int                 # end offset of the entries partition
    verified: int                    # entries verified by this verifier
    checkpoint_size: int             # tree size of the newest verified checkpoint


class StallMonitor:
    """Raises ``stalled`` when the ledger head stops while actions wait, or checkpoints are overdue.

    Signer progress is its committed offsets on ``actions`` when known (exact: duplicates and
    dead letters count as progress), else the end offset of ``entries``. Each condition
    raises one finding when it starts and re-arms once it clears.
    """

    def __init__(self, stall_seconds: float = 60.0, checkpoint_overdue_seconds: float = 120.0) -> None:
        self.stall_seconds = stall_seconds
        self.checkpoint_overdue_seconds = checkpoint_overdue_seconds
        self._progress: int | None = None
        self._progress_since = 0.0
        self._actions_at_progress = 0
        self._waiting_since: float | None = None
        self._stalled = False
        self._cp_size: int | None = None
        self._uncovered_since: float | None = None
        self._overdue = False

    def observe(self, s: LivenessSample) -> list[Finding]:
        return self._head(s) + self._checkpoints(s)

    def _head(self, s: LivenessSample) -> list[Finding]:
        progress = s.entries_end if s.signer_committed is None else s.signer_committed
        if progress != self._progress:
            self._progress, self._progress_since, self._stalled = progress, s.now, False
            self._actions_at_progress = s.actions_end
        if s.signer_committed is not None:
            waiting = s.actions_end - s.signer_committed
        else:
            waiting = s.actions_end - self._actions_at_progress
        if waiting <= 0:
            self._waiting_since = None
            return []
        if self._waiting_since is None:
            self._waiting_since = s.now
        idle = s.now - max(self._progress_since, self._waiting_since)
        if self._stalled or idle <= self.stall_seconds:
            return []
        self._stalled = True
        return [Finding.make(Kind.STALLED, f"the ledger head has not moved for {idle:.0f}s while "
                             f"{waiting} actions wait to be signed", seq=s.verified, waiting=waiting,
                             actions_end=s.actions_end, entries_end=s.entries_end)]

    def _checkpoints(self, s: LivenessSample) -> list[Finding]:
        if s.checkpoint_size != self._cp_size or s.verified <= s.checkpoint_size:
            self._cp_size, self._overdue = s.checkpoint_size, False
            self._uncovered_since = s.now if s.verified > s.checkpoint_size else None
            return []
        if self._uncovered_since is None:
            self._uncovered_since = s.now
        idle = s.now - self._uncovered_since
        if self._overdue or idle <= self.checkpoint_overdue_seconds:
            return []
        self._overdue = True
        return [Finding.make(Kind.STALLED, f"no new checkpoint for {idle:.0f}s while "
                             f"{s.verified - s.checkpoint_size} verified entries wait for one",
                             seq=s.checkpoint_size, seq_to=s.verified - 1, checkpoint_size=s.checkpoint_size)]
