"""What a report reads from Kafka: the ledger's records once, the entries topic's retention
settings (AdminClient), and the verifiers' alerts.

The records are read once, checkpoints first (as ``ledgerstream verify`` does, so every
checkpoint read is covered by the entries read after it), and every figure of the report
is computed from that one snapshot: verification, agents, activity and the bundle agree.
Memory grows with the ledger like ``ledgerstream agents``; reports are meant for periods
and ledgers an auditor reads, not for a full scan of a very large cluster.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable

from ledgerstream.core.config import Topics
from ledgerstream.core.errors import ConfigError
from ledgerstream.tools import ledger_reader
from ledgerstream.core.kafka_security import kafka_config

Records = list[tuple[int, bytes]]


@dataclass(frozen=True)
class Snapshot:
    """The committed records of ``checkpoints`` and ``entries`` at the time of reading."""

    checkpoints: Records
    entries: Records


def read_snapshot(bootstrap: str, topics: Topics, progress: Callable[[int], None] | None = None) -> Snapshot:
    """Every committed record of both ledger topics; ``progress`` gets records read."""
    out: dict[str, Records] = {"checkpoints": [], "entries": []}
    readers = (("checkpoints", ledger_reader.read_checkpoints), ("entries", ledger_reader.read_entries))
    for role, read in readers:
        for record in read(bootstrap, topics):
            out[role].append(record)
            if progress is not None:
                progress(1)
    return Snapshot(out["checkpoints"], out["entries"])


@dataclass(frozen=True)
class Retention:
    """How long Kafka keeps a topic's records (broker-side topic configuration)."""

    topic: str
    retention_ms: int       # -1: no time limit
    retention_bytes: int    # -1: no size limit
    cleanup_policy: str     # "delete", "compact" or both

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "retention.ms": self.retention_ms, "retention.bytes": self.retention_bytes,
                "cleanup.policy": self.cleanup_policy}


def topic_retention(bootstrap: str, topic: str, timeout: float = 15.0) -> Retention:
    """``retention.ms``, ``retention.bytes`` and ``cleanup.policy`` as the broker applies them."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    resource = ConfigResource(ResourceType.TOPIC, topic)
    admin = AdminClient(kafka_config(bootstrap, "reader", {"log_level": 5}))  # no info chatter on stderr
    try:
        configs = admin.describe_configs([resource], request_timeout=timeout)[resource].result(timeout)
    except KafkaException as exc:
        raise ConfigError(f"cannot read the configuration of topic {topic}: {exc}") from exc
    try:
        return Retention(topic, int(configs["retention.ms"].value), int(configs["retention.bytes"].value),
                         configs["cleanup.policy"].value)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"topic {topic} reports no usable retention settings: {exc}") from exc


def read_alerts(bootstrap: str, topic: str, since_us: int | None) -> list[dict[str, Any]]:
    """The alerts raised at or after ``since_us`` (all of them when None), as ``alerts --json``."""
    from ledgerstream.cli.alerts import alert_rows

    since = None if since_us is None else dt.datetime.fromtimestamp(since_us / 1e6, tz=dt.timezone.utc)
    return list(alert_rows(bootstrap, topic, since=since, kinds=(), follow=False))
