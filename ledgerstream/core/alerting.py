"""Findings as Avro ``Alert`` records for the ``alerts`` topic, each signed with the
verifier's own ML-DSA-65 key (core/alert_signature.py, docs/spec.md section 10)."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from ledgerstream.core.wire import codec
from ledgerstream.core.alert_signature import sign_alert
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.core.verify import Finding


def alert_id(finding: Finding, verifier_id: str) -> str:
    """Stable across re-publication: the same finding by the same verifier keeps its id."""
    place = [verifier_id, finding.kind.value, finding.seq_from, finding.seq_to, finding.agent_id,
             finding.evidence.get("topic"), finding.evidence.get("offset"), finding.detail]
    return hashlib.sha256(json.dumps(place).encode()).hexdigest()[:32]


def alert_record(finding: Finding, verifier_id: str, now_us: int) -> dict[str, Any]:
    return {"alert_id": alert_id(finding, verifier_id), "kind": finding.kind.value,
            "severity": finding.severity.value, "seq_from": finding.seq_from, "seq_to": finding.seq_to,
            "agent_id": finding.agent_id, "detail": finding.detail, "evidence": dict(finding.evidence),
            "verifier_id": verifier_id, "time": now_us}


def encode_alert(finding: Finding, verifier_id: str, now_us: int, key: PrivateKey) -> tuple[bytes, bytes]:
    """(key, value) for the alerts topic, signed with ``key``; keyed by kind so one kind stays in order."""
    record = sign_alert(alert_record(finding, verifier_id, now_us), key)
    return finding.kind.value.encode(), codec.encode("Alert", record)
