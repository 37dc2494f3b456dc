"""Elastic Common Schema (ECS) 9.0 JSON, one object per line (docs/siem.md, "ECS").

ECS ``agent.*`` describes the shipper (here: this exporter), so the AI agent that acted
goes to ``gen_ai.agent.id`` (ECS 9 GenAI fields, OpenTelemetry ``gen_ai.agent.id``) and
to ``labels.agent_id`` (a plain keyword every ECS version indexes). Ledger specifics that
ECS has no field for live under the custom ``ledgerstream.*`` namespace.
"""
from __future__ import annotations

import socket
from functools import cached_property
from typing import Any

from ledgerstream.tools.siem.events import AlertEvent, EntryEvent, iso, product_version
from ledgerstream.tools.siem.formats.interface import SiemFormat, json_line

ECS_VERSION = "9.0.0"

#: entry operation -> ECS event.type value for category "api"
_EVENT_TYPE = {"create": "creation", "read": "access", "update": "change", "delete": "deletion", "other": "info"}
#: alert severity -> event.severity (the same 0-10 scale as the CEF output)
SEVERITY_SCORE = {"critical": 10, "high": 8, "medium": 5, "low": 3, "info": 1}


class EcsFormat(SiemFormat):
    name = "ecs"
    media_type = "application/x-ndjson"

    @cached_property
    def _shipper(self) -> dict[str, str]:
        return {"type": "ledgerstream-export", "name": socket.gethostname(), "version": product_version()}

    def _common(self, dataset: str) -> dict[str, Any]:
        return {
            "ecs": {"version": ECS_VERSION},
            "agent": self._shipper,
            "observer": {"vendor": "ledgerstream", "product": "ledgerstream", "type": "ledger",
                         "version": product_version()},
            "data_stream": {"type": "logs", "dataset": dataset, "namespace": "default"},
        }

    def entry(self, e: EntryEvent) -> str:
        event_types = [_EVENT_TYPE[e.operation], "denied" if e.denied else "allowed"]
        doc = {
            "@timestamp": iso(e.occurred_at),
            **self._common("ledgerstream.entries"),
            "message": f"agent {e.agent_id} {e.action_type} (ledger seq {e.seq})",
            "event": {
                "kind": "event", "category": ["api"], "type": event_types,
                "action": e.action_type, "id": e.event_id, "sequence": e.seq,
                "dataset": "ledgerstream.entries", "module": "ledgerstream", "provider": "ledgerstream-signer",
                "created": iso(e.received_at), "outcome": "failure" if e.denied else "unknown",
                "hash": e.entry_hash,
            },
            "gen_ai": {"agent": {"id": e.agent_id}},
            "labels": {"agent_id": e.agent_id, "session_id": e.session_id},
            "hash": {"sha256": e.entry_hash},
            "related": {"hash": [h for h in (e.entry_hash, e.prev_hash, e.payload_hash) if h]},
            "host": {"hostname": e.producer_host},
            "process": {"pid": e.producer_pid},
            "trace": {"id": e.trace_id},
            "span": {"id": e.span_id},
            "rule": {"name": e.policy_rule, "description": e.policy_reason},
            "ledgerstream": {
                "seq": e.seq, "entry_hash": e.entry_hash, "prev_hash": e.prev_hash,
                "agent_seq": e.agent_seq, "agent_prev_hash": e.agent_prev_hash,
                "payload_hash": e.payload_hash, "payload_erased": e.payload_erased,
                "policy_decision": e.policy_decision, "approvals": e.approvals,
                "key_id": e.key_id, "signed": e.signed, "authenticity": e.authenticity,
                "authenticity_reason": e.authenticity_reason, "offline": e.offline,
                "producer": {"library": e.producer_library, "adapter": e.producer_adapter},
                "links": [{"agent_id": l.agent_id, "event_id": l.event_id, "status": l.status, "seq": l.seq}
                          for l in e.links],
                "kafka": {"topic": e.origin.topic, "partition": e.origin.partition, "offset": e.origin.offset},
            },
        }
        return json_line(doc)

    def alert(self, a: AlertEvent) -> str:
        doc = {
            "@timestamp": iso(a.time),
            **self._common("ledgerstream.alerts"),
            "message": a.mark + a.detail,
            # not signed by a trusted verifier key: tagged, so SIEM rules can drop or escalate it
            "tags": [f"alert_{a.authenticity}"] if a.forged else None,
            "event": {
                "kind": "alert", "category": ["intrusion_detection"], "type": ["info"],
                "action": a.kind, "id": a.alert_id, "sequence": a.seq_from,
                "dataset": "ledgerstream.alerts", "module": "ledgerstream", "provider": a.verifier_id,
                "severity": SEVERITY_SCORE.get(a.severity, 5),
            },
            "rule": {"name": a.kind, "ruleset": "ledgerstream-verifier"},
            "gen_ai": {"agent": {"id": a.agent_id}},
            "labels": {"agent_id": a.agent_id, "severity": a.severity, "authenticity": a.authenticity,
                       "forged": "true" if a.forged else "false"},
            "ledgerstream": {
                "alert": {"kind": a.kind, "severity": a.severity, "seq_from": a.seq_from, "seq_to": a.seq_to,
                          "verifier_id": a.verifier_id, "evidence": dict(a.evidence),
                          "authenticity": a.authenticity, "forged": a.forged,
                          "authenticity_reason": a.authenticity_reason, "key_id": a.key_id},
                "kafka": {"topic": a.origin.topic, "partition": a.origin.partition, "offset": a.origin.offset},
            },
        }
        return json_line(doc)
