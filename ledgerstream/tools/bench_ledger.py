"""A benchmark ledger written fast and for real: the signer's own sequencer writing straight
to the topics, one Kafka transaction per signed checkpoint (``bench index``, ``bench
recovery``). Checkpoint signing mode by default: entries carry no ML-DSA signature, so
millions of entries are affordable; every entry is one the signer itself would adopt."""
from __future__ import annotations

import os
import random
import time
import uuid
from typing import Any, Callable

from ledgerstream.core import mldsa, records
from ledgerstream.core.kafka_security import kafka_config
from ledgerstream.core.wire import codec
from ledgerstream.producers.uuid7 import uuid7

CHECKPOINT_EVERY = 1000
#: how benchmark event ids are made: ``uuid7`` as ledgerstream's producers make them (time
#: ordered), ``uuid4`` random (other producers; the worst case for the index's event-id column)
EVENT_IDS: dict[str, Callable[[], str]] = {"uuid7": uuid7, "uuid4": lambda: str(uuid.uuid4())}


def action_record(i: int, agent: str, event_id: Callable[[], str] = EVENT_IDS["uuid4"]) -> bytes:
    """An encoded ActionEvent: the i-th of the benchmark ledger, for ``agent``."""
    return codec.encode("ActionEvent", {
        "event_id": event_id(), "agent_id": agent, "session_id": f"s-{i // 100}", "action_type": "tool:search",
        "payload": None, "payload_salt": None, "payload_hash": records.sha256(str(i).encode()),
        "occurred_at": time.time_ns() // 1000, "links": [], "policy": None, "approvals": [], "trace": None,
        "producer": {"library": "ledgerstream", "version": "bench", "host": "bench", "pid": os.getpid(),
                     "adapter": None}, "offline": False})


class LedgerWriter:
    """The signer's sequencer writing straight to the topics, one transaction per checkpoint."""

    def __init__(self, key: mldsa.PrivateKey, total: int, bootstrap: str, topics: Any, signing_mode: str,
                 rare: dict[str, int] | None = None, event_ids: str = "uuid4") -> None:
        from confluent_kafka import Producer

        from ledgerstream.signer_worker.sequencer import Sequencer
        from ledgerstream.signer_worker.state import LedgerState

        self.key, self.topics, self.total = key, topics, total
        self.event_id = EVENT_IDS[event_ids]
        self.state = LedgerState()
        self.seq = Sequencer(self.state, key, signing_mode=signing_mode)
        rng = random.Random(7)  # the rare agents' entries (k of each), spread over the whole ledger
        self.rare = {i: agent for agent, k in (rare or {}).items() for i in rng.sample(range(total), k)}
        self.producer = Producer(kafka_config(bootstrap, "admin", {
            "transactional.id": f"bench-index-{uuid.uuid4().hex}", "message.max.bytes": 8 * 1024 * 1024,
            "linger.ms": 20, "batch.size": 1 << 20}))
        self.producer.init_transactions(60)

    def write_to(self, size: int, log: Callable[[str], None]) -> float:
        """Entries up to ``size``; returns the entries/s of the sequencer plus Kafka writes."""
        from ledgerstream.signer_worker.sequencer import Source

        start, first = time.perf_counter(), self.state.tree.size
        while self.state.tree.size < size:
            self.producer.begin_transaction()
            for _ in range(min(CHECKPOINT_EVERY, size - self.state.tree.size)):
                i = self.state.tree.size
                out = self.seq.process(action_record(i, self.rare.get(i, f"agent-{i % 50}"), self.event_id), Source("bench.actions", 0, i))
                self.producer.produce(self.topics.entries, codec.encode("LedgerEntry", out.entry))
                self.producer.poll(0)
            st, now = self.state, time.time_ns() // 1000
            body = records.checkpoint_body("bench", st.tree.size, st.tree.root(), st.head, now)
            self.producer.produce(self.topics.checkpoints, codec.encode("Checkpoint", {
                "spec_version": 1, "origin": "bench", "tree_size": st.tree.size, "root_hash": st.tree.root(),
                "chain_head": st.head, "created_at": now, "body": body, "key_id": self.key.public_key().key_id,
                "signature": self.key.sign(body)}))
            self.producer.commit_transaction(120)
            if st.tree.size % 100_000 == 0:
                log(f"  {st.tree.size:,} entries written")
        return (self.state.tree.size - first) / (time.perf_counter() - start)
