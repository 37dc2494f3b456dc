"""The index's alerts publisher (index/alerts.py): what it hands the Kafka producer, and that
a batch whose alerts are not all acknowledged raises (so the follower does not commit it).

The producer here is a recording double that reports per-message delivery results the way
confluent-kafka does (callbacks fired during ``flush``, ``flush`` returning what is left);
the real-broker path is tests/integration/test_index_follower.py."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ledgerstream.core import mldsa
from ledgerstream.core.wire import codec
from ledgerstream.core.alert_signature import Authenticity, VerifierKey, check_alert
from ledgerstream.core.errors import ConfigError
from ledgerstream.core.verify import Finding, Kind
from ledgerstream.index.alerts import AlertDeliveryError, AlertPublisher, findings_hook
from ledgerstream.index.core import log_findings

KEY = mldsa.PrivateKey.from_seed(bytes(range(32)))


class RecordingProducer:
    def __init__(self, errors: dict[int, str] | None = None, left: int = 0) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self._callbacks: list[Any] = []
        self.errors = errors or {}
        self.left = left

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: Any) -> None:
        self.sent.append((topic, key, value))
        self._callbacks.append(on_delivery)

    def flush(self, timeout: float) -> int:
        for i, callback in enumerate(self._callbacks):
            callback(self.errors.get(i), None)
        self._callbacks = []
        return self.left


def findings() -> list[Finding]:
    return [Finding.make(Kind.UNKNOWN_KEY, "entry 7 names an untrusted key", seq=7, topic="entries", offset=9),
            Finding.make(Kind.CHAIN_BREAK, "entry 8 does not link", seq=8, topic="entries", offset=10)]


def test_each_finding_is_signed_by_the_index_and_sent_to_the_alerts_topic() -> None:
    producer = RecordingProducer()
    AlertPublisher("unused:1", "p.alerts", KEY, producer=producer)(findings())
    assert [(topic, key) for topic, key, _ in producer.sent] == [("p.alerts", b"unknown_key"), ("p.alerts", b"chain_break")]
    trusted = {KEY.public_key().key_id: VerifierKey("index", KEY.public_key())}
    for (_, _, value), finding in zip(producer.sent, findings()):
        alert = codec.decode(value, expect="Alert")[1]
        assert (alert["verifier_id"], alert["kind"], alert["seq_from"], alert["detail"]) == (
            "index", finding.kind.value, finding.seq_from, finding.detail)
        assert check_alert(alert, trusted).verdict is Authenticity.VERIFIED


def test_no_findings_sends_nothing() -> None:
    producer = RecordingProducer()
    AlertPublisher("unused:1", "p.alerts", KEY, producer=producer)([])
    assert producer.sent == []


@pytest.mark.parametrize("producer", [RecordingProducer(errors={1: "Broker: Topic authorization failed"}),
                                      RecordingProducer(left=2)], ids=["delivery-error", "flush-timeout"])
def test_an_unacknowledged_alert_fails_the_batch(producer: RecordingProducer) -> None:
    with pytest.raises(AlertDeliveryError, match="not delivered to p.alerts"):
        AlertPublisher("unused:1", "p.alerts", KEY, producer=producer, timeout=0.1)(findings())


def test_hook_choice(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert findings_hook(tmp_path, "127.0.0.1:1", "p.alerts", None, publish=False) == (log_findings, None)
    with caplog.at_level("WARNING"):  # no key anywhere: logged, and said so
        assert findings_hook(tmp_path, "127.0.0.1:1", "p.alerts", None, publish=True) == (log_findings, None)
    assert "only logged" in caplog.text and "verifier-index.pem" in caplog.text
    with pytest.raises(ConfigError, match="does not exist"):  # an explicit key must exist
        findings_hook(tmp_path, "127.0.0.1:1", "p.alerts", tmp_path / "missing.pem", publish=True)
    (tmp_path / "keys").mkdir()
    mldsa.save_private_key(KEY, tmp_path / "keys" / "verifier-index.pem")
    hook, topic = findings_hook(tmp_path, "127.0.0.1:1", "p.alerts", None, publish=True)
    assert isinstance(hook, AlertPublisher) and topic == "p.alerts" and hook.key.public_key() == KEY.public_key()
