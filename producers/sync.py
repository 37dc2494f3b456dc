"""``ledgerstream sync``: push every spool under a root into Kafka (all agents, in order).

Spools held by a live process (an agent that sends its own, or another sync) are skipped
and counted as ``busy``: the lock file makes two senders of one spool impossible. Running
it again is harmless: delivered records are behind each spool's cursor, and the few that
may be sent twice after a crash are dropped by the signer's event_id dedup.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ledgerstream.core.errors import LedgerstreamError
from ledgerstream.producers.delivery import Delivery, Pump
from ledgerstream.producers.spool import SEGMENT_SUFFIX, Spool, SpoolBusy, find_spools, scan_segment

log = logging.getLogger("ledgerstream.producer.sync")

BATCH = 1000


@dataclass
class SyncReport:
    agents: int
    sent: int
    remaining: int
    quarantined: int
    busy: int
    spools: list[dict[str, Any]]
    #: spools that cannot be opened (e.g. a damaged spool.json): path, error, events inside
    unreadable: list[dict[str, Any]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Everything was delivered and nothing was damaged or left behind."""
        return not (self.remaining or self.quarantined or self.unreadable)


def pending_in(path: Path) -> int:
    """Valid records in the segments of a spool folder that cannot be opened (read-only)."""
    return sum(len(scan_segment(seg)[0]) for seg in sorted(path.glob("*" + SEGMENT_SUFFIX)))


def sync_spools(root: Path, bootstrap: str, topic: str, *, timeout: float = 60.0,
                producer_config: dict[str, Any] | None = None,
                progress: Callable[[int, int], None] | None = None) -> SyncReport:
    """Deliver every spool under ``root``; returns counts (``remaining`` 0 means all delivered)."""
    spools: list[Spool] = []
    unreadable: list[dict[str, Any]] = []
    busy = 0
    for path in find_spools(root):
        try:
            spools.append(Spool(path))
        except SpoolBusy:
            busy += 1
            log.info("spool %s is in use by a live process; skipped", path)
        except LedgerstreamError as exc:
            unreadable.append({"path": str(path), "error": str(exc), "events": pending_in(path)})
            log.error("spool %s cannot be opened (%s): its events were not sent", path, exc)
    pumps = [Pump(spool) for spool in spools]
    total = sum(spool.pending_records for spool in spools)
    delivery = Delivery(bootstrap, topic, producer_config) if total else None
    deadline = time.monotonic() + timeout
    try:
        while delivery is not None and any(s.pending_records for s in spools) and time.monotonic() < deadline:
            for pump in pumps:
                pump.pump(delivery, BATCH)
            delivery.poll(0.05)
            if sum(pump.settle(delivery) for pump in pumps) and progress is not None:
                progress(sum(p.sent for p in pumps), total)
            if delivery.fatal:
                delivery.abandon()
                for pump in pumps:
                    pump.rewind()
                delivery = Delivery(bootstrap, topic, producer_config)
    finally:
        if delivery is not None:
            delivery.abandon()
        for spool in spools:
            spool.close()
    return SyncReport(
        agents=len({s.agent_id for s in spools}), sent=sum(p.sent for p in pumps),
        remaining=sum(s.pending_records for s in spools), quarantined=sum(len(s.quarantined) for s in spools),
        busy=busy,
        spools=[{"agent_id": s.agent_id, "path": str(s.path), "sent": p.sent, "remaining": s.pending_records,
                 "quarantined": [str(q) for q in s.quarantined]} for s, p in zip(spools, pumps)],
        unreadable=unreadable,
    )
