"""Where a benchmark writes: private topics on the configured Kafka, or on a private embedded
broker started for the run; both removed afterwards, whatever happens."""
from __future__ import annotations

import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ledgerstream.core.config import Topics


@dataclass(frozen=True)
class BenchKafka:
    bootstrap: str
    topics: Topics
    scratch: Path          # a temporary folder for the run (homes, files), removed afterwards
    broker_pid: int | None  # the private broker's, when the run started one
    embedded: bool


@contextmanager
def private_kafka(bootstrap: str | None, tag: str, log: Callable[[str], None]) -> Iterator[BenchKafka]:
    """Topics named ``<tag>-<random>.*`` on ``bootstrap`` (None: a private embedded broker)."""
    from ledgerstream.stack.kafka import KafkaBroker
    from ledgerstream.stack.topics import delete_topics, ensure_topics

    broker = None
    tmp = tempfile.TemporaryDirectory(prefix=f"ledgerstream-{tag}-")
    try:
        if bootstrap is None:
            log("no Kafka configured: starting a private embedded broker ...")
            broker = KafkaBroker(Path(tmp.name) / "kafka")
            broker.start()
            bootstrap = broker.bootstrap
        topics = Topics.with_prefix(f"{tag}-{uuid.uuid4().hex[:8]}.")
        ensure_topics(bootstrap, topics)
        try:
            yield BenchKafka(bootstrap, topics, Path(tmp.name), broker.pid if broker else None, broker is not None)
        finally:
            delete_topics(bootstrap, topics)
    finally:
        if broker is not None:
            broker.stop()
        tmp.cleanup()
