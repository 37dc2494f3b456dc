"""Open Cybersecurity Schema Framework (OCSF) 1.3.0 JSON, one event per line (docs/siem.md, "OCSF").

Entries are *API Activity* (class 6003, category 6 Application Activity): an agent's
action is a call it made; the agent is ``actor.app_uid``. Alerts are *Detection Finding*
(class 2004, category 2 Findings). ``type_uid`` is ``class_uid * 100 + activity_id`` and
times are epoch milliseconds, as OCSF requires; ledger fields go to ``unmapped``.
"""
from __future__ import annotations

import re
from typing import Any

from ledgerstream.tools.siem.events import AlertEvent, EntryEvent, millis, product_version
from ledgerstream.tools.siem.formats.interface import SiemFormat, json_line

OCSF_VERSION = "1.3.0"
_HOSTNAME = re.compile(r"^(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])\.)*([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])$")

API_ACTIVITY = 6003
DETECTION_FINDING = 2004
#: entry operation -> (activity_id, activity_name) of API Activity
_ACTIVITY = {"create": (1, "Create"), "read": (2, "Read"), "update": (3, "Update"), "delete": (4, "Delete"),
             "other": (99, "Other")}
#: alert severity -> (severity_id, severity)
_SEVERITY = {"critical": (5, "Critical"), "high": (4, "High"), "medium": (3, "Medium"), "low": (2, "Low"),
             "info": (1, "Informational")}
#: alert authenticity -> (confidence_id, confidence) of the finding: only a signature by a
#: trusted verifier key makes it a finding one can rely on
_CONFIDENCE = {"verified": (3, "High"), "unsigned": (1, "Low"), "forged": (1, "Low")}


def _endpoint(host: str) -> dict[str, str]:
    """The agent's host: ``hostname`` when it is a valid host name (OCSF hostname_t), else ``name``."""
    return {"hostname": host} if _HOSTNAME.match(host) else {"name": host}


def _metadata(uid: str, log_name: str, provider: str, **extra: Any) -> dict[str, Any]:
    return {"version": OCSF_VERSION, "uid": uid, "log_name": log_name, "log_provider": provider,
            "product": {"name": "ledgerstream", "vendor_name": "ledgerstream", "version": product_version()},
            **extra}


class OcsfFormat(SiemFormat):
    name = "ocsf"
    media_type = "application/x-ndjson"

    def entry(self, e: EntryEvent) -> str:
        activity_id, activity_name = _ACTIVITY[e.operation]
        severity_id, severity = (3, "Medium") if e.denied else (1, "Informational")
        status_id, status = (2, "Failure") if e.denied else (0, "Unknown")
        doc = {
            "class_uid": API_ACTIVITY, "class_name": "API Activity",
            "category_uid": 6, "category_name": "Application Activity",
            "activity_id": activity_id, "activity_name": activity_name,
            "type_uid": API_ACTIVITY * 100 + activity_id, "type_name": f"API Activity: {activity_name}",
            "severity_id": severity_id, "severity": severity, "status_id": status_id, "status": status,
            "status_detail": e.policy_reason,
            "time": millis(e.occurred_at),
            "message": f"agent {e.agent_id} {e.action_type} (ledger seq {e.seq})",
            "metadata": _metadata(e.event_id, e.origin.topic, "ledgerstream-signer", sequence=e.seq,
                                  logged_time=millis(e.received_at), correlation_uid=e.session_id),
            "actor": {"app_uid": e.agent_id, "app_name": e.agent_id,
                      "session": {"uid": e.session_id} if e.session_id else None},
            "api": {"operation": e.action_type, "service": {"name": e.action_type.split(":", 1)[0]},
                    "request": {"uid": e.event_id}},
            "src_endpoint": _endpoint(e.producer_host),
            "unmapped": {"ledgerstream": {
                "seq": e.seq, "entry_hash": e.entry_hash, "prev_hash": e.prev_hash, "agent_seq": e.agent_seq,
                "agent_prev_hash": e.agent_prev_hash, "payload_hash": e.payload_hash,
                "payload_erased": e.payload_erased, "policy_decision": e.policy_decision,
                "policy_rule": e.policy_rule, "approvals": e.approvals, "key_id": e.key_id, "signed": e.signed,
                "authenticity": e.authenticity, "authenticity_reason": e.authenticity_reason,
                "offline": e.offline, "trace_id": e.trace_id, "span_id": e.span_id,
                "producer_pid": e.producer_pid,
                "links": [{"agent_id": l.agent_id, "event_id": l.event_id, "status": l.status, "seq": l.seq}
                          for l in e.links],
                "kafka": {"partition": e.origin.partition, "offset": e.origin.offset},
            }},
        }
        return json_line(doc)

    def alert(self, a: AlertEvent) -> str:
        severity_id, severity = _SEVERITY.get(a.severity, (99, "Other"))
        seq_range = None if a.seq_from is None else f"{a.seq_from}-{a.seq_to if a.seq_to is not None else a.seq_from}"
        confidence_id, confidence = _CONFIDENCE.get(a.authenticity, (1, "Low"))
        doc = {
            "class_uid": DETECTION_FINDING, "class_name": "Detection Finding",
            "category_uid": 2, "category_name": "Findings",
            "activity_id": 1, "activity_name": "Create",
            "type_uid": DETECTION_FINDING * 100 + 1, "type_name": "Detection Finding: Create",
            "severity_id": severity_id, "severity": severity, "status_id": 1, "status": "New",
            "confidence_id": confidence_id, "confidence": confidence,
            "time": millis(a.time),
            "message": a.mark + a.detail,
            "metadata": _metadata(a.alert_id, a.origin.topic, a.verifier_id or "ledgerstream-verifier",
                                  labels=[f"authenticity:{a.authenticity}"] + (["forged"] if a.forged else [])),
            "finding_info": {
                "uid": a.alert_id, "title": a.kind, "desc": a.detail, "types": [a.kind],
                "created_time": millis(a.time),
                "analytic": {"type_id": 1, "type": "Rule", "name": a.kind},
            },
            "resources": [{"type": "ledger_entries", "uid": f"seq:{seq_range}"}] if seq_range else None,
            "unmapped": {"ledgerstream": {
                "kind": a.kind, "severity": a.severity, "seq_from": a.seq_from, "seq_to": a.seq_to,
                "agent_id": a.agent_id, "verifier_id": a.verifier_id, "evidence": dict(a.evidence),
                "authenticity": a.authenticity, "forged": a.forged, "authenticity_reason": a.authenticity_reason,
                "key_id": a.key_id,
                "kafka": {"partition": a.origin.partition, "offset": a.origin.offset},
            }},
        }
        return json_line(doc)
