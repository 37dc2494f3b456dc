"""What the Checker remembers about every integrated entry (and checkpoint), behind one small interface.

The chain rule needs, for any earlier seq, its entry hash (links, checkpoints), the Merkle
tree over all entries (checkpoint roots and consistency), which entry holds an event id
(links) and each agent's head (the agent chain). :class:`MemoryHistory` keeps all of it in
memory (verifiers, offline readers); the ledger index supplies one backed by its files and
database (``index/history.py``), so its memory stays flat as the ledger grows and a restart
does not replay every entry. Both answer exactly the same questions the same way.
"""
from __future__ import annotations

from typing import Protocol

from ledgerstream.core import merkle, records

#: an agent's chain head: (next agent_seq, entry_hash of its newest entry, that entry's seq)
AgentHead = tuple[int, bytes, int]
#: an evaluated checkpoint, found by SHA-256 of its body (for its anchors): (tree_size, body, created_at)
CheckpointBody = tuple[int, bytes, int]


class History(Protocol):
    #: True when it outlives the process (the Checker then needs no per-entry journal to restore)
    persistent: bool
    #: how many of the newest call-graph edges the Checker keeps in memory (None: all)
    graph_edges: int | None

    @property
    def tree(self) -> merkle.MerkleTree:
        """The Merkle tree over every integrated seq (leaf: the entry hash, zeros if unknown)."""

    def append(self, entry_hash: bytes) -> None:
        """Integrate the next seq (``entry_hash``: zeros when it is unknown)."""

    def hash_at(self, seq: int) -> bytes:
        """The 32 bytes stored for integrated ``seq`` (zeros: unknown)."""

    def event(self, event_id: str) -> tuple[int, str] | None:
        """(seq, agent_id) of the newest integrated entry carrying ``event_id``."""

    def add_event(self, event_id: str, seq: int, agent_id: str) -> None: ...

    def agent(self, agent_id: str) -> AgentHead | None: ...

    def set_agent(self, agent_id: str, head: AgentHead) -> None: ...

    def checkpoint_body(self, body_hash: bytes) -> CheckpointBody | None:
        """The evaluated checkpoint whose body hashes to ``body_hash`` (its anchors name it)."""

    def add_checkpoint_body(self, body_hash: bytes, body: CheckpointBody) -> None: ...


class MemoryHistory:
    """Everything in memory: ~100 bytes per entry plus the event index."""

    persistent = False
    graph_edges: int | None = None

    def __init__(self) -> None:
        self._hashes = bytearray()
        self._tree = merkle.MerkleTree()
        self._events: dict[str, tuple[int, str]] = {}
        self._agents: dict[str, AgentHead] = {}
        self._bodies: dict[bytes, CheckpointBody] = {}

    @property
    def tree(self) -> merkle.MerkleTree:
        return self._tree

    def append(self, entry_hash: bytes) -> None:
        self._hashes += entry_hash
        self._tree.append(merkle.leaf_hash(records.merkle_leaf_input(entry_hash)))

    def hash_at(self, seq: int) -> bytes:
        return bytes(self._hashes[seq * 32:(seq + 1) * 32])

    def event(self, event_id: str) -> tuple[int, str] | None:
        return self._events.get(event_id)

    def add_event(self, event_id: str, seq: int, agent_id: str) -> None:
        self._events[event_id] = (seq, agent_id)

    def agent(self, agent_id: str) -> AgentHead | None:
        return self._agents.get(agent_id)

    def set_agent(self, agent_id: str, head: AgentHead) -> None:
        self._agents[agent_id] = head

    def checkpoint_body(self, body_hash: bytes) -> CheckpointBody | None:
        return self._bodies.get(body_hash)

    def add_checkpoint_body(self, body_hash: bytes, body: CheckpointBody) -> None:
        self._bodies[body_hash] = body

    def copy_into(self, other: History) -> None:
        """Everything remembered, into the empty ``other``: how a state kept in memory (an
        earlier verifier's journal) becomes a persistent one."""
        for seq in range(self._tree.size):
            other.append(self.hash_at(seq))
        for event_id, (seq, agent_id) in self._events.items():
            other.add_event(event_id, seq, agent_id)
        for agent_id, head in self._agents.items():
            other.set_agent(agent_id, head)
        for body_hash, body in self._bodies.items():
            other.add_checkpoint_body(body_hash, body)

