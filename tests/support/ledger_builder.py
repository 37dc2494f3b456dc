"""Build ledgers the way the signer does, and the faults the tamper tests inject.

``LedgerBuilder`` produces valid ``LedgerEntry`` / ``Checkpoint`` / ``TimestampAnchor``
records with the project's own records, merkle and mldsa code (no shortcuts), keeping
the same state the signer keeps (seq, head, per-agent heads, event index, Merkle tree).
Faults are built from valid records by the helpers below. ``LedgerWriter`` writes to the
real topics in Kafka transactions like the signer; ``RogueProducer`` writes around them.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from confluent_kafka import Producer

from ledgerstream.core import merkle, records
from ledgerstream.core.wire import codec
from ledgerstream.core.config import Topics
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.core.timestamp import request_timestamp
from support.actions import make_action

START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z: ledger time starts here
STEP_US = 1_000                    # each entry is received 1 ms after the previous one


@dataclass
class LedgerBuilder:
    """A signer without Kafka: every record it returns is valid and continues its chain."""

    key: PrivateKey
    origin: str = "ledgerstream/test"
    signing_mode: str = "entry"
    seq: int = 0
    head: bytes = records.ZERO_HASH
    now_us: int = START_US
    agents: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    events: dict[str, tuple[str, int, bytes]] = field(default_factory=dict)  # event_id -> (agent, seq, hash)
    tree: merkle.MerkleTree = field(default_factory=merkle.MerkleTree)
    entries: list[dict[str, Any]] = field(default_factory=list)   # published entries
    hashes: list[bytes] = field(default_factory=list)             # entry_hash by seq (skipped ones too)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)

    # --- entries ------------------------------------------------------------------------------
    def entry(self, agent_id: str = "agent-a", *, links: Iterable[tuple[str, str]] = (),
              mutate: Callable[[dict[str, Any]], None] | None = None, key: PrivateKey | None = None,
              advance_ms: int = 1, **action_kw: Any) -> dict[str, Any]:
        """The next entry (state advances). ``mutate`` edits it before hashing and signing,
        so a faulty entry is still internally valid (hash and signature recompute)."""
        action = make_action(agent_id=agent_id, links=[{"agent_id": a, "event_id": e, "relation": "caused_by"}
                                                        for a, e in links], **action_kw)
        agent_seq, agent_prev = self.agents.get(agent_id, (0, records.ZERO_HASH))
        self.now_us += advance_ms * STEP_US
        entry = {
            "spec_version": records.SPEC_VERSION, "seq": self.seq, "prev_hash": self.head,
            "entry_hash": records.ZERO_HASH, "action": action, "received_at": self.now_us,
            "source": {"topic": "t.actions", "partition": 0, "offset": self.seq},
            "agent_seq": agent_seq, "agent_prev_hash": agent_prev,
            "resolved_links": [self._resolve(a, e) for a, e in links],
            "key_id": (key or self.key).public_key().key_id, "signature": None, "timestamp_token": None,
        }
        if mutate is not None:
            mutate(entry)
        seal(entry, key or self.key, signed=self.signing_mode == "entry")
        self.apply(entry)
        return entry

    def _resolve(self, agent_id: str, event_id: str) -> dict[str, Any]:
        known = self.events.get(event_id)
        if known is not None and known[0] == agent_id:
            return {"agent_id": agent_id, "event_id": event_id, "status": "resolved", "seq": known[1],
                    "entry_hash": known[2]}
        return {"agent_id": agent_id, "event_id": event_id, "status": "pending", "seq": None, "entry_hash": None}

    def apply(self, entry: dict[str, Any]) -> None:
        """Integrate ``entry`` as the signer would (also used to build on a rogue entry)."""
        h = bytes(entry["entry_hash"])
        agent = entry["action"]["agent_id"]
        self.seq = entry["seq"] + 1
        self.head = h
        self.agents[agent] = (entry["agent_seq"] + 1, h)
        self.events[entry["action"]["event_id"]] = (agent, entry["seq"], h)
        self.tree.append(merkle.leaf_hash(records.merkle_leaf_input(h)))
        self.hashes.append(h)
        self.entries.append(entry)

    def copy(self) -> "LedgerBuilder":
        """An independent builder with the same state (e.g. the honest signer beside a rogue)."""
        return dataclasses.replace(self, agents=dict(self.agents), events=dict(self.events),
                                   tree=copy.deepcopy(self.tree), entries=list(self.entries), hashes=list(self.hashes),
                                   checkpoints=list(self.checkpoints))

    def skip(self) -> dict[str, Any]:
        """Sequence an entry but never publish it: the next entry leaves a one-entry gap."""
        entry = self.entry("agent-skipped")
        self.entries.pop()
        return entry

    def many(self, n: int, agents: tuple[str, ...] = ("agent-a", "agent-b", "agent-c")) -> list[dict[str, Any]]:
        return [self.entry(agents[i % len(agents)], payload={"i": self.seq}) for i in range(n)]

    # --- checkpoints and anchors ----------------------------------------------------------------
    def checkpoint(self, *, size: int | None = None, key: PrivateKey | None = None,
                   root: bytes | None = None) -> dict[str, Any]:
        """A signed checkpoint over the first ``size`` entries (default: all)."""
        size = self.tree.size if size is None else size
        root = self.tree.root(size) if root is None else root
        head = self.hashes[size - 1] if size else records.ZERO_HASH
        created = self.now_us
        body = records.checkpoint_body(self.origin, size, root, head, created)
        signer = key or self.key
        cp = {"spec_version": records.SPEC_VERSION, "origin": self.origin, "tree_size": size, "root_hash": root,
              "chain_head": head, "created_at": created, "body": body,
              "key_id": signer.public_key().key_id, "signature": signer.sign(body)}
        self.checkpoints.append(cp)
        return cp

    @staticmethod
    def anchor(checkpoint: dict[str, Any], token: bytes, tsa: str = "dev-tsa") -> dict[str, Any]:
        """The TimestampAnchor of ``checkpoint`` carrying ``token`` (normally over its body)."""
        return {"tree_size": checkpoint["tree_size"], "body_hash": hashlib.sha256(checkpoint["body"]).digest(),
                "timestamp": {"tsa": tsa, "token": token}, "created_at": checkpoint["created_at"]}


def seal(entry: dict[str, Any], key: PrivateKey, *, signed: bool = True) -> dict[str, Any]:
    """Recompute entry_hash and (re)sign: what a holder of ``key`` can do to any entry."""
    entry["key_id"] = key.public_key().key_id
    h = records.entry_hash(entry)
    entry["entry_hash"] = h
    entry["signature"] = key.sign(records.entry_signing_message(h)) if signed else None
    return entry


def enc(name: str, record: dict[str, Any]) -> bytes:
    return codec.encode(name, record)


def entry_bytes(entry: dict[str, Any]) -> bytes:
    return codec.encode("LedgerEntry", entry)


def flip_bit(raw: bytes, bit: int) -> bytes:
    data = bytearray(raw)
    data[bit // 8] ^= 1 << (bit % 8)
    return bytes(data)


def flip_inside(raw: bytes, needle: bytes) -> bytes:
    """Flip one bit in the middle of ``needle`` where it occurs in ``raw``."""
    at = raw.index(needle) + len(needle) // 2
    return flip_bit(raw, at * 8)


def random_bytes(n: int = 300, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(n)


def other_entry(entry: dict[str, Any], key: PrivateKey) -> dict[str, Any]:
    """A different entry for the same seq, validly sealed with ``key`` (a fork when trusted)."""
    forked = {**entry, "action": {**entry["action"], "action_type": "data:delete:users"}}
    return seal(forked, key, signed=entry.get("signature") is not None)


def timestamp_token(tsa_url: str, data: bytes) -> bytes:
    return request_timestamp(tsa_url, data)


# --- Kafka --------------------------------------------------------------------------------------

class LedgerWriter:
    """Writes records like the signer: one Kafka transaction per call, read_committed-visible.

    ``commit`` returns where each record landed: ``[(topic, offset), ...]`` in write order.
    """

    def __init__(self, bootstrap: str, topics: Topics, txn_id: str | None = None) -> None:
        self.topics = topics
        self.producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id or f"builder-{os.urandom(4).hex()}",
                                  "enable.idempotence": True, "message.max.bytes": 8 * 1024 * 1024,
                                  "linger.ms": 5})
        self.producer.init_transactions(60)
        self._landed: list[tuple[str, int]] = []

    def commit(self, entries: Iterable[bytes] = (), checkpoints: Iterable[bytes] = ()) -> list[tuple[str, int]]:
        self._txn(entries, checkpoints)
        self.producer.commit_transaction(60)
        landed, self._landed = self._landed, []
        return landed

    def abort(self, entries: Iterable[bytes] = (), checkpoints: Iterable[bytes] = ()) -> None:
        """Write records in a transaction and abort it: read_committed readers never see them."""
        self._txn(entries, checkpoints)
        self.producer.flush(30)
        self.producer.abort_transaction(60)
        self._landed = []

    def _txn(self, entries: Iterable[bytes], checkpoints: Iterable[bytes]) -> None:
        self.producer.begin_transaction()
        for topic, raws in ((self.topics.entries, entries), (self.topics.checkpoints, checkpoints)):
            for raw in raws:
                self.producer.produce(topic, raw, on_delivery=self._delivered)
                self.producer.poll(0)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            self._landed.append((msg.topic(), msg.offset()))


class RogueProducer:
    """Someone with write access to the topics who is not the signer (plain producer)."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 8 * 1024 * 1024})

    def send(self, topic: str, raw: bytes) -> tuple[str, int]:
        """Write one record and return (topic, offset) once it is stored."""
        landed: list[tuple[str, int]] = []
        self.producer.produce(topic, raw, on_delivery=lambda err, msg: landed.append((msg.topic(), msg.offset())))
        self.producer.flush(30)
        return landed[0]
