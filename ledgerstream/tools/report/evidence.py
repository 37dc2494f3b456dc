"""The numbers a report is made of, folded from decoded ledger records (pure: no Kafka, no I/O).

Why separate: every figure in the HTML, the PDF and the JSON comes from here or from the
project's own verifier/agents code, so the three renderings cannot disagree, and the
folding can be tested with hand-made entries.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ledgerstream.core.verify import Kind, Severity
from ledgerstream.tools.report.source import Retention

#: policy decisions as recorded in ActionEvent.policy.decision (schemas/ActionEvent.avsc); "none":
#: the event carries no policy decision
DECISIONS = ("allow", "deny", "approved", "approval_denied", "approval_timeout", "none")
#: decisions a person took part in (docs/approvals.md section 4)
OVERSIGHT_DECISIONS = ("approved", "approval_denied", "approval_timeout")
#: alert kinds that mean the ledger or its evidence was altered or forged (docs/alerts.md);
#: ``stalled`` (liveness) and ``link_dangling`` (a late link) are not
TAMPER_KINDS = frozenset(k.value for k in Kind) - {Kind.STALLED.value, Kind.LINK_DANGLING.value}
#: bucket widths for the activity chart, smallest first
BUCKETS_SECONDS = (1, 10, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)
MAX_BUCKETS = 60
#: witness cosignatures (C2SP tlog-witness) are not part of ledgerstream yet
WITNESSES_NONE = "none configured"


@dataclass(frozen=True)
class Period:
    """Which entries a report is about: received_at in [start_us, end_us) and these agents.

    ``received_at`` is the signer's clock, covered by the entry hash (the same basis as
    ``replay --since/--until``); agents' own clocks can be skewed.
    """

    start_us: int | None = None
    end_us: int | None = None
    agents: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.start_us is not None and self.end_us is not None and self.end_us <= self.start_us:
            raise ValueError("the period is empty: --to must be after --from")

    def contains(self, entry: Mapping[str, Any]) -> bool:
        if self.agents and entry["action"]["agent_id"] not in self.agents:
            return False
        at = entry["received_at"]
        return (self.start_us is None or at >= self.start_us) and (self.end_us is None or at < self.end_us)

    @property
    def narrowed(self) -> bool:
        return self.start_us is not None or self.end_us is not None or bool(self.agents)

    def to_json(self) -> dict[str, Any]:
        return {"from": iso(self.start_us), "to": iso(self.end_us), "agents": list(self.agents),
                "time_basis": "received_at"}


def iso(micros: int | None) -> str | None:
    """Microseconds since the epoch as ISO 8601 UTC (Z), or None."""
    if micros is None:
        return None
    when = dt.datetime.fromtimestamp(micros / 1e6, tz=dt.timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class OversightEvent:
    """One entry in which a policy or a person decided (deny or an approval outcome)."""

    seq: int
    agent_id: str
    action_type: str
    decision: str
    rule: str | None
    received_at: int
    approvals: list[dict[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "agent_id": self.agent_id, "action_type": self.action_type,
                "decision": self.decision, "rule": self.rule, "received_at": iso(self.received_at),
                "approvals": self.approvals}


@dataclass
class Activity:
    """What the entries of a period show: who did what, when, under which decision."""

    entries: int = 0
    seqs: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)              # received_at, in ledger order
    per_agent: Counter = field(default_factory=Counter)
    decisions: Counter = field(default_factory=Counter)
    approvers: dict[str, Counter] = field(default_factory=dict)  # approver_id -> {"approve": n, "reject": m}
    oversight: list[OversightEvent] = field(default_factory=list)
    key_ids: Counter = field(default_factory=Counter)
    unsigned: int = 0

    @property
    def first_us(self) -> int | None:
        return min(self.times) if self.times else None

    @property
    def last_us(self) -> int | None:
        return max(self.times) if self.times else None


def fold(entries: Iterable[Mapping[str, Any]], period: Period) -> Activity:
    """Fold decoded LedgerEntry records (ledger order) that fall in ``period``."""
    act = Activity()
    for entry in entries:
        if not period.contains(entry):
            continue
        action = entry["action"]
        act.entries += 1
        act.seqs.append(entry["seq"])
        act.times.append(entry["received_at"])
        act.per_agent[action["agent_id"]] += 1
        act.key_ids[entry["key_id"]] += 1
        act.unsigned += entry.get("signature") is None
        policy = action.get("policy") or {}
        decision = policy.get("decision") or "none"
        act.decisions[decision] += 1
        approvals = [{"approver_id": a["approver_id"], "decision": a["decision"], "key_id": a["key_id"],
                      "approved_at": iso(a["approved_at"])} for a in action.get("approvals") or ()]
        for a in approvals:
            act.approvers.setdefault(a["approver_id"], Counter())[a["decision"]] += 1
        if decision == "deny" or decision in OVERSIGHT_DECISIONS:
            act.oversight.append(OversightEvent(entry["seq"], action["agent_id"], action["action_type"], decision,
                                                policy.get("rule"), entry["received_at"], approvals))
    return act


def missing_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Inclusive ranges of sequence numbers absent between the smallest and largest of ``seqs``.

    The entries of a period are a contiguous run of the ledger's seq numbers; a hole means
    records that are not (or no longer) on the entries topic. Duplicates are ignored.
    """
    ordered = sorted(set(seqs))
    return [(a + 1, b - 1) for a, b in zip(ordered, ordered[1:]) if b - a > 1]


def quiet_periods(times_us: Iterable[int], threshold_us: int) -> list[tuple[int, int]]:
    """(last event before, first event after) for every silence longer than ``threshold_us``.

    Not a defect by itself (agents may be idle), but the intervals a reader should know
    no event was recorded in.
    """
    if threshold_us <= 0:
        raise ValueError("the quiet-period threshold must be positive")
    ordered = sorted(times_us)
    return [(a, b) for a, b in zip(ordered, ordered[1:]) if b - a > threshold_us]


def bucket_seconds(first_us: int, last_us: int) -> int:
    """The smallest bucket width that shows ``[first, last]`` in at most MAX_BUCKETS bars."""
    span = max(0, last_us - first_us) / 1e6
    return next((b for b in BUCKETS_SECONDS if span / b < MAX_BUCKETS), BUCKETS_SECONDS[-1])


def timeline(times_us: Sequence[int]) -> tuple[int, list[tuple[int, int]]]:
    """(bucket width in seconds, [(bucket start µs, events)]) with empty buckets included."""
    if not times_us:
        return BUCKETS_SECONDS[0], []
    first, last = min(times_us), max(times_us)
    width = bucket_seconds(first, last)
    step = width * 1_000_000
    origin = first - first % step
    counts = Counter((t - origin) // step for t in times_us)
    return width, [(origin + i * step, counts.get(i, 0)) for i in range((last - origin) // step + 1)]


@dataclass
class AlertSummary:
    """The verifiers' alerts (alerts topic) of the period, counted."""

    total: int = 0
    by_kind: Counter = field(default_factory=Counter)
    by_severity: Counter = field(default_factory=Counter)
    by_verifier: Counter = field(default_factory=Counter)
    latest: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tamper(self) -> int:
        return sum(n for kind, n in self.by_kind.items() if kind in TAMPER_KINDS)

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "tamper": self.tamper, "by_kind": dict(sorted(self.by_kind.items())),
                "by_severity": {s.value: self.by_severity.get(s.value, 0) for s in Severity},
                "by_verifier": dict(sorted(self.by_verifier.items())), "latest": self.latest}


def summarize_alerts(alerts: Iterable[Mapping[str, Any]], end_us: int | None, keep: int = 20) -> AlertSummary:
    """Count decoded alerts (already from the period's start) that were raised before ``end_us``."""
    out = AlertSummary()
    rows = sorted((a for a in alerts if end_us is None or a["time"] < end_us), key=lambda a: a["time"])
    for a in rows:
        out.total += 1
        out.by_kind[a["kind"]] += 1
        out.by_severity[a["severity"]] += 1
        out.by_verifier[a["verifier_id"]] += 1
    out.latest = [{"time": iso(a["time"]), "kind": a["kind"], "severity": a["severity"],
                   "verifier_id": a["verifier_id"], "seq_from": a.get("seq_from"), "seq_to": a.get("seq_to"),
                   "agent_id": a.get("agent_id"), "detail": a["detail"]} for a in rows[-keep:]]
    return out


@dataclass
class Evidence:
    """Everything one report presents, gathered by :mod:`ledgerstream.tools.report.build`.

    ``verification`` is exactly ``ledgerstream verify --json`` and ``agents`` exactly
    ``ledgerstream agents --json`` over the period's entries (all entries when the period
    is not narrowed); the rest is documented field by field in docs/report.md.
    """

    period: Period
    generated_us: int
    verification: dict[str, Any]
    agents: list[dict[str, Any]]
    activity: Activity
    alerts: AlertSummary
    retention: Retention
    oldest: tuple[int, int] | None      # (seq, received_at) of the first entry on the topic
    covering: dict[str, Any] | None     # the newest signed checkpoint whose RFC 3161 tokens verify
    keys: dict[str, Any]
    tsa: dict[str, Any]
    approvers: dict[str, Any] | None
    bundle: dict[str, Any]
    quiet_threshold_us: int
