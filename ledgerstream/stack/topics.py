"""Create the ledger's topics with the layout DESIGN.md fixes (idempotent)."""
from __future__ import annotations

from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka import KafkaError, KafkaException

from ledgerstream.core.config import TOPIC_LAYOUT, Topics
from ledgerstream.core.errors import ConfigError
from ledgerstream.core.kafka_security import kafka_config


def ensure_topics(bootstrap: str, topics: Topics, timeout: float = 30.0) -> list[str]:
    """Create any missing topic; returns the names created. Existing topics are left alone."""
    admin = AdminClient(kafka_config(bootstrap, "admin"))
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = []
    for role, name in topics.as_dict().items():
        partitions, config = TOPIC_LAYOUT[role]
        if name and name not in existing:
            wanted.append(NewTopic(name, num_partitions=partitions, replication_factor=1, config=config))
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ConfigError(f"cannot create topic {name}: {exc}") from exc
    return created


def delete_topics(bootstrap: str, topics: Topics, timeout: float = 30.0) -> None:
    """Best-effort removal of a set of topics (benchmarks clean up their private topics).
    The client is held until every future settles: a temporary one is destroyed first and
    the deletions fail with "Broker handle destroyed" (the topics stayed)."""
    admin = AdminClient(kafka_config(bootstrap, "admin"))
    for future in admin.delete_topics([n for n in topics.as_dict().values() if n]).values():
        try:
            future.result(timeout)
        except Exception:  # cleanup only: a leftover topic is harmless
            pass
