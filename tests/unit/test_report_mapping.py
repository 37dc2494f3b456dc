"""The EU AI Act report's mapping logic, with expectations computed by hand.

Retention against "at least six months" (Articles 19(1) and 26(6)): six months from any
start date is at most 184 days (July..December = 31+31+30+31+30+31), so 184 days passes and
183 or the naive 180 fail. Gap detection (Article 12): missing seq ranges and silences.
"""
from __future__ import annotations

from collections import Counter

import pytest

from ledgerstream.tools.report import eu_ai_act as eu
from ledgerstream.tools.report.evidence import (AlertSummary, Evidence, Period, bucket_seconds, fold,
                                                missing_ranges, quiet_periods, summarize_alerts, timeline)
from ledgerstream.tools.report.source import Retention

pytestmark = pytest.mark.unit

DAY_MS = 86_400_000
DAY_US = 86_400_000_000
NOW_US = 1_800_000_000_000_000  # 2027-01-15T08:00:00Z
S = 1_000_000


# --- retention: Articles 19(1), 26(6) ------------------------------------------------------------

@pytest.mark.parametrize("retention_ms,want", [
    (-1, eu.OK),                      # no time limit
    (184 * DAY_MS, eu.OK),            # 15_897_600_000 ms: six months from any start date
    (365 * DAY_MS, eu.OK),
    (183 * DAY_MS, eu.PROBLEM),       # 15_811_200_000 ms: one day short after a July start
    (180 * DAY_MS, eu.PROBLEM),       # "180 days" is not six months
    (7 * DAY_MS, eu.PROBLEM),         # Kafka's default retention.ms (604_800_000)
    (0, eu.PROBLEM),
])
def test_retention_time_limit_against_six_months(retention_ms: int, want: str) -> None:
    status, findings = eu.assess_retention(retention_ms, -1, "delete", (0, NOW_US - 10 * DAY_US), NOW_US)
    assert status == want, findings


def test_retention_findings_name_the_days() -> None:
    _, findings = eu.assess_retention(7 * DAY_MS, -1, "delete", (0, NOW_US), NOW_US)
    assert any("604800000" in f and "7.0 days" in f for f in findings)


def test_compaction_is_a_problem_even_without_time_limit() -> None:
    status, findings = eu.assess_retention(-1, -1, "compact,delete", (0, NOW_US), NOW_US)
    assert status == eu.PROBLEM and any("compact" in f for f in findings)


def test_size_limit_needs_review() -> None:
    status, findings = eu.assess_retention(-1, 1 << 30, "delete", (0, NOW_US), NOW_US)
    assert status == eu.ATTENTION and any("retention.bytes=1073741824" in f for f in findings)


@pytest.mark.parametrize("age_days,want", [(30, eu.ATTENTION), (183.9, eu.ATTENTION), (184.1, eu.OK), (400, eu.OK)])
def test_entries_already_deleted_against_the_oldest_kept_entry(age_days: float, want: str) -> None:
    """Entries 0..499 are gone: fine only if even the oldest *kept* one is past six months."""
    oldest = (500, NOW_US - int(age_days * DAY_US))
    status, findings = eu.assess_retention(-1, -1, "delete", oldest, NOW_US)
    assert status == want
    assert any("entries 0..499" in f for f in findings)


def test_young_ledger_starting_at_zero_is_ok_but_says_so() -> None:
    status, findings = eu.assess_retention(-1, -1, "delete", (0, NOW_US - 3 * DAY_US), NOW_US)
    assert status == eu.OK
    assert any("3.0 days ago" in f and "cannot be shown yet" in f for f in findings)


def test_empty_topic() -> None:
    status, findings = eu.assess_retention(-1, -1, "delete", None, NOW_US)
    assert status == eu.OK and any("no entry" in f for f in findings)


# --- gaps: Article 12 ---------------------------------------------------------------------------

@pytest.mark.parametrize("seqs,want", [
    ([0, 1, 2, 5, 6, 9], [(3, 4), (7, 8)]),
    ([7], []),
    ([], []),
    ([3, 1, 1, 5], [(2, 2), (4, 4)]),   # order and duplicates do not matter
    (range(100), []),
])
def test_missing_ranges(seqs, want) -> None:
    assert missing_ranges(seqs) == want


def test_quiet_periods_strictly_longer_than_threshold() -> None:
    times = [0, 10, 100, 105, 155, 300]
    # gaps: 10, 90, 5, 50, 145 -> longer than 50: (10, 100) and (155, 300); exactly 50 is not
    assert quiet_periods(times, 50) == [(10, 100), (155, 300)]
    assert quiet_periods([], 50) == [] and quiet_periods([5], 50) == []
    with pytest.raises(ValueError):
        quiet_periods(times, 0)


def test_bucket_width_and_timeline() -> None:
    assert bucket_seconds(0, 59 * 1_000_000) == 1          # 59 one-second bars
    assert bucket_seconds(0, 60 * 1_000_000) == 10         # 60 would be one too many
    assert bucket_seconds(0, 3 * 3600 * 1_000_000) == 300  # 3 h / 60 = 180 s -> 5 min buckets (36 bars)
    s = 1_000_000
    width, buckets = timeline([12 * s, 13 * s, 15 * s])   # span 3 s -> 1 s buckets starting at 12 s
    assert width == 1 and buckets == [(12 * s, 1), (13 * s, 1), (14 * s, 0), (15 * s, 1)]


# --- folding entries -----------------------------------------------------------------------------

def entry(seq: int, agent: str, at: int, decision: str | None = "allow", approvals: list | None = None,
          action_type: str = "tool:x") -> dict:
    return {"seq": seq, "received_at": at, "key_id": "k1", "signature": b"s",
            "action": {"agent_id": agent, "action_type": action_type,
                       "policy": None if decision is None else {"decision": decision, "rule": "r", "reason": None},
                       "approvals": approvals or []}}


def approval(who: str, decision: str) -> dict:
    return {"request_id": "q", "approver_id": who, "key_id": "a" * 64, "decision": decision,
            "approved_at": 1_700_000_000_000_000, "signature": b"x"}


LEDGER = [
    entry(0, "a", 100), entry(1, "b", 200, "deny"), entry(2, "a", 300, None),
    entry(3, "b", 400, "approved", [approval("alice", "approve"), approval("bob", "approve")]),
    entry(4, "c", 500, "approval_denied", [approval("alice", "reject"), approval("carol", "reject")]),
    entry(5, "a", 600, "approval_timeout"),
]


def test_period_bounds_are_half_open_and_agents_filter() -> None:
    assert [e["seq"] for e in LEDGER if Period(200, 500).contains(e)] == [1, 2, 3]
    assert [e["seq"] for e in LEDGER if Period(agents=("a",)).contains(e)] == [0, 2, 5]
    assert not Period().narrowed and Period(agents=("a",)).narrowed
    with pytest.raises(ValueError):
        Period(500, 500)


def test_fold_counts_decisions_and_approvers() -> None:
    act = fold(LEDGER, Period())
    assert act.entries == 6 and act.per_agent == Counter(a=3, b=2, c=1)
    assert act.decisions == Counter(allow=1, deny=1, none=1, approved=1, approval_denied=1, approval_timeout=1)
    assert act.approvers == {"alice": Counter(approve=1, reject=1), "bob": Counter(approve=1),
                             "carol": Counter(reject=1)}
    assert [(o.seq, o.decision) for o in act.oversight] == [(1, "deny"), (3, "approved"), (4, "approval_denied"),
                                                            (5, "approval_timeout")]
    assert (act.first_us, act.last_us) == (100, 600)


def test_alert_summary_counts_tamper_kinds_only() -> None:
    alerts = [{"time": t, "kind": k, "severity": s, "verifier_id": "v1", "detail": "d"}
              for t, k, s in [(1, "gap", "critical"), (2, "stalled", "medium"), (3, "bad_signature", "high"),
                              (9, "fork", "critical")]]
    summary = summarize_alerts(alerts, end_us=9)  # the fork at t=9 is outside [.., 9)
    assert summary.total == 3 and summary.tamper == 2
    assert summary.to_json()["by_severity"] == {"critical": 1, "high": 1, "medium": 1, "low": 0, "info": 0}


# --- articles from evidence ------------------------------------------------------------------------

def evidence(entries: list[dict], *, errors: list[dict] | None = None, period: Period = Period(),
             approvers: dict | None = None) -> Evidence:
    errors = errors or []
    verification = {"ok": not errors, "entries": len(entries), "checkpoints": 1, "timestamps": 1, "errors": errors,
                    "warnings": [], "head": {}, "last_checkpoint": None, "stats": {}}
    return Evidence(period=period, generated_us=NOW_US, verification=verification, agents=[],
                    activity=fold(entries, period), alerts=AlertSummary(),
                    retention=Retention("t", -1, -1, "delete"), oldest=(0, 100),
                    covering={"tree_size": 4}, keys={"trusted": [{"key_id": "k1"}]},
                    tsa={"ca_sha256": "c"}, approvers=approvers, bundle={"path": "b.zip"},
                    quiet_threshold_us=150 * S)


def by_article(ev: Evidence) -> dict[str, eu.Article]:
    return {a.article: a for a in eu.articles(ev)}


def test_article_12_reports_missing_seqs_silences_and_coverage() -> None:
    ledger = [entry(0, "a", 100 * S), entry(1, "a", 200 * S), entry(4, "a", 300 * S), entry(5, "a", 600 * S)]
    art = by_article(evidence(ledger))["12"]
    assert art.status == eu.PROBLEM
    assert art.evidence["missing_seq_ranges"] == [[2, 3]]
    # silences longer than 150 s: 300 s -> 600 s only
    assert art.evidence["quiet_periods"] == [
        {"from": "1970-01-01T00:05:00.000Z", "to": "1970-01-01T00:10:00.000Z", "hours": 0.08}]
    # covering checkpoint has tree size 4: seqs 0, 1 are in it, 4 and 5 are not yet
    assert art.evidence["entries_in_covering_checkpoint"] == 2
    assert art.evidence["witness_cosignatures"] == "none configured"


def test_article_12_one_agents_seqs_are_not_gaps() -> None:
    ledger = [entry(0, "a", 100), entry(2, "a", 200)]
    art = by_article(evidence(ledger + [entry(1, "b", 150)], period=Period(agents=("a",))))["12"]
    assert art.evidence["missing_seq_ranges"] == [] and art.status == eu.OK


def test_article_14_statuses() -> None:
    assert by_article(evidence(LEDGER, approvers={"m": 2}))["14"].status == eu.OK
    # approvals recorded but nobody told the verifier who the approvers are
    assert by_article(evidence(LEDGER))["14"].status == eu.ATTENTION
    # nothing but allowed actions: no evidence of oversight
    assert by_article(evidence([entry(0, "a", 1)]))["14"].status == eu.ATTENTION
    invalid = [{"kind": "approval_invalid", "seq_from": 3, "detail": "bad"}]
    assert by_article(evidence(LEDGER, errors=invalid, approvers={"m": 2}))["14"].status == eu.PROBLEM
    assert by_article(evidence(LEDGER, approvers={"m": 2}))["14"].evidence["decisions"] == {
        "allow": 1, "deny": 1, "approved": 1, "approval_denied": 1, "approval_timeout": 1, "none": 1}


def test_article_15_and_73_follow_verification() -> None:
    bad = [{"kind": "bad_signature", "seq_from": 2, "detail": "x"}]
    arts = by_article(evidence(LEDGER, errors=bad, approvers={"m": 2}))
    assert arts["15"].status == eu.PROBLEM and arts["15"].evidence["verifier_findings"] == {"bad_signature": 1}
    assert arts["12"].status == eu.PROBLEM
    candidates = arts["73"].evidence["incident_candidates"]
    assert candidates[0] == {"seq": 2, "kind": "bad_signature", "detail": "x",
                             "replay": "ledgerstream replay --seq 2 --follow-links"}
    assert {c["seq"] for c in candidates[1:]} == {1, 4}  # the denial and the refused approval


def test_replay_command_quotes_untrusted_agent_ids() -> None:
    ev = evidence(LEDGER, period=Period(agents=("x; rm -rf /",)))
    assert eu.replay_command(ev) == "ledgerstream replay --agent 'x; rm -rf /' --follow-links"
