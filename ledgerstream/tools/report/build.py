"""Gather a report's evidence from Kafka and turn it into the JSON document.

One pass over Kafka (:func:`source.read_snapshot`), then the project's own code over that
snapshot: ``verify_records`` (what ``ledgerstream verify`` runs), ``agents.summarize``
(what ``ledgerstream agents`` runs), the replay index and the bundle exporter; the alerts
topic and the entries topic's retention settings come from Kafka too.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ledgerstream.core import mldsa
from ledgerstream.core.config import Topics
from ledgerstream.core.adoption import adopt
from ledgerstream.core.verify import CheckerConfig
from ledgerstream.tools.agents import summarize
from ledgerstream.core.verify import TrustedKeys
from ledgerstream.tools.report import bundle as bundles
from ledgerstream.tools.report import eu_ai_act, source
from ledgerstream.tools.report.evidence import Evidence, Period, fold, iso, summarize_alerts, timeline
from ledgerstream.verifier_worker.oneshot import verify_records

Step = Callable[[str], None]          # announces a phase (stderr)
Advance = Callable[[int], None]       # records read so far (progress bar)


@dataclass(frozen=True)
class Request:
    """Where to read, what to trust, which period, where the bundle goes."""

    bootstrap: str
    topics: Topics
    checker: CheckerConfig
    keys: TrustedKeys
    tsa_ca: bytes | None
    period: Period
    bundle_out: Path
    quiet_threshold_us: int


def gather(req: Request, step: Step, advance: Advance | None = None) -> Evidence:
    """Read the ledger once and compute every figure of the report."""
    step("reading the ledger (checkpoints, entries)")
    snap = source.read_snapshot(req.bootstrap, req.topics, advance)
    step(f"verifying {len(snap.entries)} entries and {len(snap.checkpoints)} checkpoint records")
    verification = verify_records(req.checker, snap.checkpoints, snap.entries).to_json()
    decoded = _ledger_entries(snap, req.checker)
    in_period = [e for e in decoded if req.period.contains(e)]
    step("reading the alerts and the entries topic's retention")
    alerts = summarize_alerts(source.read_alerts(req.bootstrap, req.topics.alerts, req.period.start_us),
                              req.period.end_us)
    retention = source.topic_retention(req.bootstrap, req.topics.entries)
    ledger = bundles.index(snap, req.period, req.keys)
    covering = bundles.covering_checkpoint(ledger, req.tsa_ca)
    step(f"exporting the evidence bundle to {req.bundle_out}")
    bundle = bundles.export_period(ledger, req.period, covering, req.keys, req.tsa_ca, req.bundle_out,
                                   approvers=req.checker.approvers)
    activity = fold(decoded, req.period)
    first = decoded[0] if decoded else None
    return Evidence(
        period=req.period, generated_us=_now_us(), verification=verification,
        agents=[row.as_dict() for row in summarize(in_period)], activity=activity, alerts=alerts,
        retention=retention, oldest=None if first is None else (first["seq"], first["received_at"]),
        covering=covering, keys=_keys(req.keys, activity.key_ids, activity.unsigned),
        tsa=_tsa(req.tsa_ca, sorted({tsa for cp in ledger.checkpoints for tsa, _ in cp.tokens}), verification),
        approvers=_approvers(req.checker), bundle=bundle, quiet_threshold_us=req.quiet_threshold_us)


def document(ev: Evidence) -> dict[str, Any]:
    """The report as JSON (shape: docs/report.md); the HTML and PDF render this same document."""
    v, act = ev.verification, ev.activity
    width, buckets = timeline(act.times)
    articles = [a.to_json() for a in eu_ai_act.articles(ev)]
    return {
        "framework": eu_ai_act.FRAMEWORK,
        "regulation": eu_ai_act.REGULATION,
        "source": eu_ai_act.SOURCE_URL,
        "disclaimer": "Technical evidence from the ledger, mapped to articles of the regulation; "
                      "not a legal assessment of compliance.",
        "generated_at": iso(ev.generated_us),
        "period": {**ev.period.to_json(), "first_entry": iso(act.first_us), "last_entry": iso(act.last_us)},
        "ok": v["ok"],
        "status": eu_ai_act.worst(*(a["status"] for a in articles)),
        "ledger": {"ok": v["ok"], "entries": v["entries"], "checkpoints": v["checkpoints"],
                   "timestamps": v["timestamps"], "errors": len(v["errors"]), "warnings": len(v["warnings"]),
                   "head": v["head"], "last_checkpoint": v["last_checkpoint"], "covering_checkpoint": ev.covering},
        "verification": v,
        "activity": {"entries": act.entries, "agents": ev.agents,
                     "decisions": {d: act.decisions.get(d, 0) for d in sorted(act.decisions)},
                     "timeline": {"bucket_seconds": width, "buckets": [[iso(t), n] for t, n in buckets]}},
        "alerts": ev.alerts.to_json(),
        "articles": articles,
        "bundle": ev.bundle,
    }


def _ledger_entries(snap: source.Snapshot, checker: CheckerConfig) -> list[dict[str, Any]]:
    """The ledger's entries, in seq order: the records the core Checker adopts (forged,
    forked or replayed records are not the ledger's activity; ``verification`` reports them)."""
    out: list[dict[str, Any]] = []
    adopt(snap.entries, snap.checkpoints, checker, lambda c: out.append(c.entry))
    return out


def _keys(keys: TrustedKeys, used: Counter, unsigned: int) -> dict[str, Any]:
    return {"algorithm": mldsa.ALGORITHM,
            "trusted": [{"key_id": k, "source": keys.sources.get(k)} for k in sorted(keys.by_id)],
            "used_by_entries": dict(sorted(used.items())), "unsigned_entries": unsigned}


def _tsa(ca_pem: bytes | None, tsas: list[str], verification: dict[str, Any]) -> dict[str, Any]:
    subjects: list[str] = []
    if ca_pem is not None:
        from cryptography import x509

        subjects = [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(ca_pem)]
    return {"ca_sha256": hashlib.sha256(ca_pem).hexdigest() if ca_pem else None, "ca_subjects": subjects,
            "tsas": tsas, "timestamps_verified": verification["timestamps"],
            "timestamps_unverified": verification["stats"].get("timestamps_unverified", 0)}


def _approvers(cfg: CheckerConfig) -> dict[str, Any] | None:
    aset = cfg.approvers
    if aset is None:
        return None
    return {"m": aset.m, "n": len(aset.approvers),
            "approvers": {a: key.key_id for a, key in sorted(aset.approvers.items())}}


def _now_us() -> int:
    return int(dt.datetime.now(dt.timezone.utc).timestamp() * 1_000_000)
