"""Helpers shared by the signer integration tests (this module holds no tests).

Everything here talks to the real broker: producing actions, tailing a topic with a
read_committed consumer, and checking a committed ledger from first principles
(recomputed hashes, pyca signature checks, an independent RFC 9162 tree).
"""
from __future__ import annotations

import uuid
from typing import Any, Callable, Iterable, Iterator

import pytest

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from cryptography.hazmat.primitives.asymmetric import mldsa as pyca_mldsa

from ledgerstream.core import records
from ledgerstream.core.wire import codec
from ledgerstream.core.mldsa import PublicKey
from support import rfc9162_checker as rfc9162
from support.waiting import wait_until  # noqa: F401 - re-exported to the signer tests


def produce(bootstrap: str, topic: str, items: Iterable[tuple[bytes | None, bytes | None]],
            *, timeout: float = 60.0) -> list[tuple[int, int]]:
    """Produce (key, value) pairs in order; return each one's (partition, offset)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 5, "message.max.bytes": 8 * 1024 * 1024})
    items = list(items)
    where: list[tuple[int, int] | None] = [None] * len(items)
    errors: list[str] = []

    def report(i: int) -> Callable[[Any, Any], None]:
        def cb(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                where[i] = (msg.partition(), msg.offset())
        return cb

    for i, (key, value) in enumerate(items):
        while True:
            try:
                producer.produce(topic, value, key=key, on_delivery=report(i))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(timeout)
    assert left == 0 and not errors, f"produce failed: {left} undelivered, errors {errors[:3]}"
    return [w for w in where if w is not None]


def action_items(actions: Iterable[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    return [(a["agent_id"].encode(), codec.encode("ActionEvent", a)) for a in actions]


_OPEN_TAILS: list["TopicTail"] = []


@pytest.fixture(autouse=True)
def _close_tails() -> Iterator[None]:
    """Import into a test module (it is autouse there): closes every TopicTail a test opened."""
    yield
    while _OPEN_TAILS:
        _OPEN_TAILS.pop().close()


class TopicTail:
    """A read_committed consumer of one partition from its beginning, accumulating records."""

    def __init__(self, bootstrap: str, topic: str, partition: int = 0) -> None:
        _OPEN_TAILS.append(self)
        self.topic = topic
        self.records: list[tuple[int, bytes]] = []
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"test-tail-{uuid.uuid4().hex}",
            "enable.auto.commit": False, "isolation.level": "read_committed",
            "fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 16 * 1024 * 1024,
        })
        self._consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        self._closed = False

    def poll(self, timeout: float = 0.2) -> int:
        """Take whatever is committed and delivered now; return how many records are held."""
        while True:
            msgs = self._consumer.consume(5000, timeout=timeout)
            for m in msgs:
                if m.error() is None:
                    self.records.append((m.offset(), m.value() or b""))
                elif m.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"error reading {self.topic}: {m.error()}")
            if len(msgs) < 5000:
                return len(self.records)
            timeout = 0

    def decoded(self, expect: str | tuple[str, ...] | None = None) -> list[tuple[str, dict[str, Any]]]:
        return [codec.decode(raw, expect=expect) for _, raw in self.records]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._consumer.close()


# --- checking a committed ledger ----------------------------------------------------------

def pyca_public(pub: PublicKey) -> pyca_mldsa.MLDSA65PublicKey:
    """The signer's public key as a plain pyca object: signatures are checked by pyca directly."""
    return pyca_mldsa.MLDSA65PublicKey.from_public_bytes(pub.raw)


def check_ledger(entries: list[dict[str, Any]], pub: PublicKey, *, signed: bool = True) -> None:
    """Raise AssertionError unless ``entries`` is one intact chain from seq 0.

    Gapless seq (so no fork: a fork would repeat a seq), prev_hash links, recomputed
    entry_hash, key_id, ML-DSA-65 signature (pyca) or null in checkpoint mode, per-agent
    chains, each event_id once, resolved links pointing at real earlier entries.
    """
    verifier = pyca_public(pub)
    assert [e["seq"] for e in entries] == list(range(len(entries))), "seq is not gapless from 0"
    head = records.ZERO_HASH
    agents: dict[str, tuple[int, bytes]] = {}
    seen: dict[str, int] = {}
    for e in entries:
        seq, h = e["seq"], bytes(e["entry_hash"])
        assert bytes(e["prev_hash"]) == head, f"prev_hash break at seq {seq}"
        assert records.entry_hash(e) == h, f"entry_hash does not recompute at seq {seq}"
        assert e["key_id"] == pub.key_id, f"foreign key_id at seq {seq}"
        if signed:
            verifier.verify(bytes(e["signature"]), records.entry_signing_message(h))  # raises if bad
        else:
            assert e["signature"] is None, f"checkpoint mode entry {seq} carries a signature"
        agent = e["action"]["agent_id"]
        a_seq, a_prev = agents.get(agent, (0, records.ZERO_HASH))
        assert (e["agent_seq"], bytes(e["agent_prev_hash"])) == (a_seq, a_prev), f"agent chain break at {seq}"
        agents[agent] = (a_seq + 1, h)
        event_id = e["action"]["event_id"]
        assert event_id not in seen, f"event {event_id} recorded twice (seq {seen.get(event_id)} and {seq})"
        seen[event_id] = seq
        for link in e["resolved_links"]:
            if link["status"] == "resolved":
                target = entries[link["seq"]]
                assert target["action"]["event_id"] == link["event_id"] and link["seq"] < seq
                assert bytes(link["entry_hash"]) == bytes(target["entry_hash"])
        head = h


def leaf_hashes(entries: list[dict[str, Any]]) -> list[bytes]:
    return [rfc9162.hash_leaf(records.merkle_leaf_input(bytes(e["entry_hash"]))) for e in entries]


def check_checkpoints(entries: list[dict[str, Any]], checkpoints: list[dict[str, Any]], pub: PublicKey,
                      origin: str = "ledgerstream/dev") -> None:
    """Every checkpoint is signed, its body is canonical and matches its fields, and its
    root equals the RFC 9162 root of the first tree_size entries (independent checker)."""
    verifier = pyca_public(pub)
    leaves = leaf_hashes(entries)
    last = 0
    for cp in checkpoints:
        size, body = cp["tree_size"], bytes(cp["body"])
        assert cp["key_id"] == pub.key_id
        verifier.verify(bytes(cp["signature"]), body)
        parsed = records.parse_checkpoint_body(body)
        assert parsed == {"origin": origin, "tree_size": size, "root_hash": bytes(cp["root_hash"]),
                          "chain_head": bytes(cp["chain_head"]), "created_at": cp["created_at"]}
        assert last <= size <= len(entries), f"checkpoint size {size} after {last}, ledger {len(entries)}"
        last = size
        assert bytes(cp["root_hash"]) == rfc9162.mth_from_leaf_hashes(leaves[:size]), f"root mismatch at {size}"
        head = bytes(entries[size - 1]["entry_hash"]) if size else records.ZERO_HASH
        assert bytes(cp["chain_head"]) == head, f"chain head mismatch at {size}"


def split_checkpoints(decoded: list[tuple[str, dict[str, Any]]]) -> tuple[list[dict], list[dict]]:
    cps = [r for name, r in decoded if name == "Checkpoint"]
    anchors = [r for name, r in decoded if name == "TimestampAnchor"]
    return cps, anchors
