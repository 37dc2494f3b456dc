"""The index's findings hook: where its findings leave the process.

:func:`on_findings` is called with the findings of each batch (foreign records, chain breaks,
bad checkpoints, ...) **before** the batch's commit point, so a crash re-delivers them (at
least once, with the same ``alert_id(finding, "index")``); if it raises, the batch is not
committed and the follower exits with status 70 to be restarted. It must not block for long
(the follower's watchdog, 120 s by default, covers it).

For now it logs them. The signed alerts publisher is to be wired here (issue 17): sign each
finding as an ``Alert`` with the index's own key (``verifier_worker.alerting.encode_alert``,
verifier id ``index``) and deliver it with ``acks=all`` before returning. Writing ``alerts``
needs the Kafka ``verifier`` role (the index reads as ``reader``, which may not write).
"""
from __future__ import annotations

from ledgerstream.core.verify import Finding
from ledgerstream.index.core import log_findings


def on_findings(findings: list[Finding]) -> None:
    log_findings(findings)
