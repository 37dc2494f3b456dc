"""The index's findings leave the process as signed alerts, like a verifier's.

The index runs the core Checker, so what it finds (foreign records, chain breaks, bad
checkpoints, ...) is a finding like any verifier's: signed with the index's own ML-DSA-65 key
as an ``Alert`` (verifier id ``index``, docs/spec.md section 10) and written to ``alerts`` as
the Kafka ``verifier`` role (the follower itself reads as ``reader``, which may not write).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from ledgerstream.core.alert_signature import load_alert_key, verifier_key_path
from ledgerstream.core.kafka_security import kafka_config
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.core.verify import Finding
from ledgerstream.index.core import INDEX_ID, FindingsHook, log_findings
from ledgerstream.core.alerting import encode_alert

log = logging.getLogger("ledgerstream.index")


class AlertDeliveryError(RuntimeError):
    """Some alerts of a batch were not acknowledged: the batch must not be committed."""


class AlertPublisher:
    """A findings hook: each finding is logged, signed and delivered (``acks=all``) before the
    call returns. It raises :class:`AlertDeliveryError` otherwise, so the follower does not
    commit the batch and exits 70 to be restarted: at least once, with the same ``alert_id``."""

    def __init__(self, bootstrap: str, topic: str, key: PrivateKey, *, timeout: float = 30.0,
                 producer: Any = None) -> None:
        self.topic = topic
        self.key = key
        self.timeout = timeout
        self._producer = producer or Producer(kafka_config(bootstrap, "verifier", {
            "acks": "all", "enable.idempotence": True, "linger.ms": 5}))

    def __call__(self, findings: list[Finding]) -> None:
        log_findings(findings)
        if not findings:
            return
        failed: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(str(err))

        now_us = time.time_ns() // 1000
        for finding in findings:
            key, value = encode_alert(finding, INDEX_ID, now_us, self.key)
            self._producer.produce(self.topic, value=value, key=key, on_delivery=delivered)
        left = self._producer.flush(self.timeout)
        if left or failed:
            raise AlertDeliveryError(f"{left or len(failed)} of {len(findings)} alerts not delivered to "
                                     f"{self.topic}: {failed[:3] or 'timed out after %.0fs' % self.timeout}")


def findings_hook(home: Path, bootstrap: str, alerts_topic: str, alert_key: Path | None,
                  publish: bool) -> tuple[FindingsHook, str | None]:
    """The hook for ``index run`` and the topic it publishes to (None: only logged).

    An explicit ``alert_key`` must load (ConfigError otherwise); without one, the dev stack's
    HOME/keys/verifier-index.pem is used if it exists, else findings are only logged, with a
    warning at start (a read-only index must not need a signing key)."""
    if not publish:
        return log_findings, None
    path = alert_key or verifier_key_path(home, INDEX_ID)
    if alert_key is None and not path.exists():
        log.warning("index findings are only logged, not published to %s: no alert key at %s "
                    "(create one with 'ledgerstream keys generate --out %s' or pass --alert-key)",
                    alerts_topic, path, path)
        return log_findings, None
    key = load_alert_key(path, INDEX_ID)
    log.info("index publishes its findings to %s, signed with key %s (%s)", alerts_topic,
             key.public_key().key_id, path)
    return AlertPublisher(bootstrap, alerts_topic, key), alerts_topic
