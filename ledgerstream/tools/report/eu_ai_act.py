"""Map the ledger's evidence to articles of Regulation (EU) 2024/1689 (the AI Act).

Pure functions over :class:`~ledgerstream.tools.report.evidence.Evidence`. Each article gets
a status about the *technical evidence* only: ``ok`` (nothing in the evidence contradicts
what the article asks of logs), ``attention`` (something a person should review, or no
evidence), ``problem`` (the evidence shows a defect). None of this is a legal assessment:
whether an article applies depends on the system and its role (docs/report.md).

Paraphrases were checked against the Official Journal text (OJ L, 2024/1689, 12.7.2024);
sources are listed in docs/report.md.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from ledgerstream.core.verify import Kind
from ledgerstream.tools.report.evidence import (OVERSIGHT_DECISIONS, WITNESSES_NONE, Evidence, iso, missing_ranges,
                                                quiet_periods)

FRAMEWORK = "eu-ai-act"
REGULATION = "Regulation (EU) 2024/1689 (Artificial Intelligence Act)"
SOURCE_URL = "https://eur-lex.europa.eu/eli/reg/2024/1689/oj"
OK, ATTENTION, PROBLEM = "ok", "attention", "problem"
#: "at least six months" from any start date: the longest six consecutive calendar months
#: (July to December) have 184 days, so 184 days is six months whatever the start
SIX_MONTHS_DAYS = 184
SIX_MONTHS_MS = SIX_MONTHS_DAYS * 86_400_000
DAY_US = 86_400_000_000
#: verifier finding kinds that mean records are missing or out of the chain (Article 12)
CHAIN_KINDS = frozenset({Kind.GAP.value, Kind.DUPLICATE.value, Kind.FORK.value, Kind.CHAIN_BREAK.value,
                         Kind.AGENT_CHAIN_BREAK.value})


@dataclass
class Article:
    """One article's section of the report."""

    article: str
    title: str
    paraphrase: str
    status: str
    findings: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        anchor = "article-" + "-".join(re.findall(r"[0-9a-z]+", self.article))
        return {"article": self.article, "anchor": anchor, "title": self.title, "paraphrase": self.paraphrase,
                "status": self.status, "findings": self.findings, "evidence": self.evidence}


def worst(*statuses: str) -> str:
    order = (OK, ATTENTION, PROBLEM)
    return max(statuses, key=order.index, default=OK)


def assess_retention(retention_ms: int, retention_bytes: int, cleanup_policy: str,
                     oldest: tuple[int, int] | None, now_us: int) -> tuple[str, list[str]]:
    """Status and findings for "keep the logs at least six months" (Articles 19(1), 26(6)).

    ``oldest`` is (seq, received_at µs) of the first entry still on the topic. Deleting
    entries older than six months is allowed; anything that can delete younger ones is not
    (time limit under six months, compaction) or must be reviewed (a size limit, entries
    already gone while the oldest kept one is younger than six months).
    """
    status, findings = OK, []
    policies = {p.strip() for p in cleanup_policy.split(",")}
    if "compact" in policies:
        status = PROBLEM
        findings.append(f"cleanup.policy={cleanup_policy}: compaction can delete entries at any age")
    if 0 <= retention_ms < SIX_MONTHS_MS:
        status = PROBLEM
        findings.append(f"retention.ms={retention_ms} ({retention_ms / 86_400_000:.1f} days) deletes entries "
                        f"before six months ({SIX_MONTHS_DAYS} days)")
    elif retention_ms < 0:
        findings.append("retention.ms=-1: Kafka never deletes entries for their age")
    else:
        findings.append(f"retention.ms={retention_ms} ({retention_ms / 86_400_000:.1f} days) is at least six months")
    if retention_bytes >= 0:
        status = worst(status, ATTENTION)
        findings.append(f"retention.bytes={retention_bytes}: once the topic holds more, Kafka deletes the oldest "
                        "entries whatever their age; check it against the expected volume")
    if oldest is None:
        findings.append("the entries topic holds no entry yet")
        return status, findings
    seq, at = oldest
    age_days = (now_us - at) / DAY_US
    if seq > 0:
        if age_days < SIX_MONTHS_DAYS:
            status = worst(status, ATTENTION)
            findings.append(f"entries 0..{seq - 1} are no longer on the topic although the oldest kept entry "
                            f"(seq {seq}, {iso(at)}) is only {age_days:.1f} days old")
        else:
            findings.append(f"entries 0..{seq - 1} were deleted; the oldest kept entry (seq {seq}) is "
                            f"{age_days:.1f} days old, so everything younger than six months is kept")
    elif age_days < SIX_MONTHS_DAYS:
        findings.append(f"the ledger starts at seq 0 ({iso(at)}, {age_days:.1f} days ago): nothing was deleted, "
                        "six months of history cannot be shown yet")
    else:
        findings.append(f"the ledger starts at seq 0 ({iso(at)}, {age_days:.1f} days ago): nothing was deleted")
    return status, findings


def article_12(ev: Evidence) -> Article:
    v, act = ev.verification, ev.activity
    status, findings = (OK, []) if v["ok"] else (PROBLEM, [f"verification found {len(v['errors'])} problem(s)"])
    chain = [f for f in v["errors"] if f["kind"] in CHAIN_KINDS]
    if chain:
        status = PROBLEM
        findings.append(f"{len(chain)} finding(s) of missing or out-of-chain records: "
                        + ", ".join(sorted({f['kind'] for f in chain})))
    holes = missing_ranges(act.seqs) if not ev.period.agents else []  # one agent's seqs are not contiguous
    if holes:
        status = PROBLEM
        findings.append("sequence numbers missing in the period: "
                        + ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in holes[:10]))
    quiet = quiet_periods(act.times, ev.quiet_threshold_us)
    if quiet:
        findings.append(f"{len(quiet)} interval(s) longer than {ev.quiet_threshold_us / 3.6e9:g} h without any "
                        "recorded event (idle agents or a stopped recorder: review)")
    if act.entries == 0:
        status = worst(status, ATTENTION)
        findings.append("no entry was recorded in the period")
    cp = ev.covering
    covered = sum(1 for s in act.seqs if cp is not None and s < cp["tree_size"])
    if act.entries and covered < act.entries:
        findings.append(f"{act.entries - covered} of the period's entries are not yet in a timestamped "
                        "checkpoint (the signer publishes and anchors one every few seconds)")
    if cp is None and act.entries:
        status = worst(status, ATTENTION)
        findings.append("no checkpoint with a verified RFC 3161 timestamp yet")
    return Article(
        "12", "Record-keeping",
        "High-risk AI systems shall technically allow for the automatic recording of events (logs) over "
        "the lifetime of the system (12(1)); the logs shall make it possible to record events relevant for "
        "identifying risk situations or substantial modifications, for post-market monitoring and for "
        "monitoring the system's operation (12(2)).",
        status, findings,
        {"entries_in_period": act.entries, "agents_in_period": len(act.per_agent),
         "first_entry": iso(act.first_us), "last_entry": iso(act.last_us),
         "seq_range": [min(act.seqs), max(act.seqs)] if act.seqs else None,
         "missing_seq_ranges": [list(h) for h in holes],
         "quiet_periods": [{"from": iso(a), "to": iso(b), "hours": round((b - a) / 3.6e9, 2)} for a, b in quiet],
         "verification": {"ok": v["ok"], "entries": v["entries"], "checkpoints": v["checkpoints"],
                          "timestamps": v["timestamps"], "errors": len(v["errors"]), "warnings": len(v["warnings"]),
                          "head": v["head"], "last_checkpoint": v["last_checkpoint"]},
         "covering_checkpoint": cp, "entries_in_covering_checkpoint": covered,
         "witness_cosignatures": WITNESSES_NONE})


def article_19_26(ev: Evidence) -> Article:
    r = ev.retention
    status, findings = assess_retention(r.retention_ms, r.retention_bytes, r.cleanup_policy, ev.oldest,
                                        ev.generated_us)
    oldest = None if ev.oldest is None else {"seq": ev.oldest[0], "received_at": iso(ev.oldest[1]),
                                             "age_days": round((ev.generated_us - ev.oldest[1]) / DAY_US, 2)}
    return Article(
        "19, 26(6)", "Automatically generated logs: keeping them",
        "Providers (19(1)) and deployers (26(6)) of high-risk AI systems shall keep the logs the system "
        "automatically generates, to the extent the logs are under their control, for at least six months "
        "(19(1): for a period appropriate to the intended purpose, of at least six months), unless applicable "
        "Union or national law provides otherwise (19(1) names in particular the law on personal data).",
        status, findings,
        {**r.to_json(), "six_months_days": SIX_MONTHS_DAYS, "oldest_entry": oldest})


def article_14(ev: Evidence) -> Article:
    act, v = ev.activity, ev.verification
    decisions = {d: act.decisions.get(d, 0) for d in ("allow", "deny", *OVERSIGHT_DECISIONS, "none")}
    invalid = [f for f in v["errors"] if f["kind"] == Kind.APPROVAL_INVALID.value]
    human = sum(decisions[d] for d in OVERSIGHT_DECISIONS)
    status, findings = OK, []
    if invalid:
        status = PROBLEM
        findings.append(f"{len(invalid)} approval(s) do not verify against the configured approvers")
    if human and ev.approvers is None:
        status = worst(status, ATTENTION)
        findings.append("approvals were recorded but no approver configuration was given (--policy or "
                        "HOME/policy.yaml): their signatures were not checked")
    if decisions["approval_timeout"]:
        findings.append(f"{decisions['approval_timeout']} action(s) were refused because no approver answered in time")
    if not human and not decisions["deny"]:
        status = worst(status, ATTENTION)
        findings.append("no policy denial or human approval was recorded in the period")
    approvers = {a: {"approve": c.get("approve", 0), "reject": c.get("reject", 0)}
                 for a, c in sorted(ev.activity.approvers.items())}
    return Article(
        "14", "Human oversight",
        "High-risk AI systems shall be designed and developed so that natural persons can effectively oversee "
        "them while they are in use (14(1)), with the aim of preventing or minimising risks to health, safety "
        "or fundamental rights (14(2)); the persons overseeing must be able to disregard, override or reverse "
        "the output (14(4)(d)) and to intervene or interrupt the system (14(4)(e)).",
        status, findings,
        {"decisions": decisions, "human_decisions": human, "approvers": approvers,
         "approver_configuration": ev.approvers, "approvals_checked": v["stats"].get("approvals_checked", 0),
         "approval_invalid_findings": len(invalid),
         "events": [e.to_json() for e in act.oversight[-50:]], "events_total": len(act.oversight)})


def article_15(ev: Evidence) -> Article:
    v, alerts = ev.verification, ev.alerts
    status, findings = OK, []
    if not v["ok"]:
        status = PROBLEM
        findings.append(f"the verifier reports {len(v['errors'])} finding(s): "
                        + ", ".join(sorted({f['kind'] for f in v['errors']})))
    if alerts.tamper:
        status = PROBLEM
        findings.append(f"{alerts.tamper} tamper-evidence alert(s) raised by the verifiers in the period")
    elif alerts.total:
        status = worst(status, ATTENTION)
        findings.append(f"{alerts.total} operational alert(s) (liveness, late links) in the period")
    if not ev.tsa.get("ca_sha256"):
        status = worst(status, ATTENTION)
        findings.append("no TSA CA configured: RFC 3161 timestamps were not checked")
    unknown = sorted(set(ev.activity.key_ids) - {k["key_id"] for k in ev.keys["trusted"]})
    if unknown:
        status = PROBLEM
        findings.append(f"entries signed by key(s) not trusted here: {', '.join(k[:16] for k in unknown)}")
    by_kind: dict[str, int] = {}
    for f in v["errors"] + v["warnings"]:
        by_kind[f["kind"]] = by_kind.get(f["kind"], 0) + 1
    return Article(
        "15", "Accuracy, robustness and cybersecurity",
        "High-risk AI systems shall achieve an appropriate level of accuracy, robustness and cybersecurity "
        "and perform consistently in those respects throughout their lifecycle (15(1)); they shall be as "
        "resilient as possible to errors, faults and inconsistencies (15(4)) and resilient against attempts "
        "by unauthorised third parties to alter their use, outputs or performance by exploiting "
        "vulnerabilities (15(5)).",
        status, findings,
        {"verifier_findings": by_kind, "signatures_verified": v["stats"].get("signatures_verified", 0),
         "alerts": alerts.to_json(), "signer": ev.keys, "tsa": ev.tsa})


def article_73(ev: Evidence) -> Article:
    b, v, act = ev.bundle, ev.verification, ev.activity
    status, findings = OK, []
    if b.get("path") is None:
        status = PROBLEM if b.get("refused") else ATTENTION
        findings.append(f"no evidence bundle: {b.get('reason')}")
    candidates = [{"seq": f["seq_from"], "kind": f["kind"], "detail": f["detail"],
                   "replay": f"ledgerstream replay --seq {f['seq_from']} --follow-links"}
                  for f in v["errors"] if f.get("seq_from") is not None][:20]
    candidates += [{"seq": e.seq, "kind": f"policy:{e.decision}", "detail": f"{e.agent_id} {e.action_type}",
                    "replay": f"ledgerstream replay --seq {e.seq} --follow-links"}
                   for e in act.oversight if e.decision in ("deny", "approval_denied")][-20:]
    return Article(
        "73", "Reporting of serious incidents",
        "Providers shall report any serious incident to the market surveillance authorities of the Member "
        "States where it occurred (73(1)), immediately after establishing a causal link or its reasonable "
        "likelihood and not later than 15 days after becoming aware of it (73(2)); they shall then investigate "
        "without delay, including a risk assessment and corrective action, and shall not alter the system in "
        "a way that may affect the later evaluation of the incident's causes before informing the "
        "authorities (73(6)).",
        status, findings,
        {"bundle": b, "replay_command": replay_command(ev), "incident_candidates": candidates,
         "alerts_critical_or_high": ev.alerts.by_severity.get("critical", 0) + ev.alerts.by_severity.get("high", 0)})


def replay_command(ev: Evidence) -> str:
    """The ``ledgerstream replay`` that shows exactly the period's entries, re-verified."""
    parts = ["ledgerstream", "replay"]
    if ev.period.start_us is not None:
        parts += ["--since", str(iso(ev.period.start_us))]
    if ev.period.end_us is not None:
        parts += ["--until", str(iso(ev.period.end_us))]
    for agent in ev.period.agents:
        parts += ["--agent", agent]
    return shlex.join(parts + ["--follow-links"])


def articles(ev: Evidence) -> list[Article]:
    """Every article the EU AI Act report covers, in the regulation's order."""
    return [article_12(ev), article_14(ev), article_15(ev), article_19_26(ev), article_73(ev)]
