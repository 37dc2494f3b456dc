"""The signer's in-memory ledger state, rebuilt on start from what is committed.

The committed ``entries`` and ``checkpoints`` topics are the source of truth. A start
adopts the latest verified snapshot (snapshots.py: written in the same transactions as the
entries, so never ahead of them) and replays only the tail after it; with no usable
snapshot it replays everything. A crash at any point leaves nothing to repair.
The Merkle state is a compact range (O(log n) hashes): the signer needs only the current
root; past roots and proofs are the read side's (the index and its tiles).
"""
from __future__ import annotations

import hashlib
import logging
from typing import Any, Callable, Iterable

from ledgerstream.core import merkle, records
from ledgerstream.core.wire import avro_fast, codec
from ledgerstream.core.errors import DecodeError, InvalidSignature
from ledgerstream.core.mldsa import PublicKey
from ledgerstream.signer_worker.dedup import Columns, DedupWindow, Known

log = logging.getLogger("ledgerstream.signer")

#: an agent's position before its first entry: agent_seq 0, agent_prev_hash zero
NEW_AGENT = (0, records.ZERO_HASH)


class LedgerState:
    """seq, chain head, per-agent heads, Merkle compact range and a bounded event index."""

    def __init__(self, dedup_horizon: int = 1_000_000, *, keep_ids: bool = True) -> None:
        """``keep_ids``: keep the event ids a snapshot has not written yet (off without snapshots)."""
        self.next_seq = 0
        self.head = records.ZERO_HASH
        self.agents: dict[str, tuple[int, bytes]] = {}
        self.tree = merkle.CompactRange()
        self.events = DedupWindow(dedup_horizon, keep_ids=keep_ids)
        self.horizon = dedup_horizon
        self.checkpoint_size = 0
        self.unanchored: dict[int, bytes] = {}  # tree_size -> checkpoint body awaiting a token
        self.skipped_on_recovery = 0
        #: our signed checkpoints by size, (root, body or None once anchored), not yet passed
        self.claims: dict[int, list[tuple[bytes, bytes | None]]] = {}
        #: offset of the head entry on the entries topic when known (after recovery or a
        #: snapshot); None once entries were produced without learning where they landed
        self.head_offset: int | None = None

    # --- updates ---------------------------------------------------------------------------
    def apply(self, entry: dict[str, Any]) -> None:
        """Integrate an entry that is (about to be) committed."""
        action = entry["action"]
        self.apply_fields(entry["seq"], bytes(entry["entry_hash"]), action["agent_id"], entry["agent_seq"],
                          action["event_id"], bytes(action["payload_hash"]), action["action_type"])

    def apply_fields(self, seq: int, h: bytes, agent_id: str, agent_seq: int, event_id: str, payload_hash: bytes,
                     action_type: str, leaf: bytes | None = None) -> None:
        """:meth:`apply` from the fields it reads (Sequencer.seal has no entry dict, and its
        compiled writer gives the Merkle ``leaf`` hash of ``h`` too)."""
        self.next_seq = seq + 1
        self.head = h
        self.agents[agent_id] = (agent_seq + 1, h)
        self.tree.append(leaf or merkle.leaf_hash(records.merkle_leaf_input(h)))
        self.events.add_fields(event_id, agent_id, seq, h, payload_hash, action_type)

    def agent_position(self, agent_id: str) -> tuple[int, bytes]:
        return self.agents.get(agent_id, NEW_AGENT)

    # --- recovery ----------------------------------------------------------------------------
    def adopt(self, snapshot: dict[str, Any], window: Iterable[Columns]) -> None:
        """Start from a verified ``SignerSnapshot`` record and its dedup window (snapshots.check)."""
        self.next_seq = snapshot["next_seq"]
        self.head = bytes(snapshot["head"])
        self.agents = {a["agent_id"]: (a["next_agent_seq"], bytes(a["head"])) for a in snapshot["agents"]}
        self.tree = merkle.CompactRange(snapshot["next_seq"], [bytes(h) for h in snapshot["tree_hashes"]])
        self.checkpoint_size = snapshot["checkpoint_size"]
        self.unanchored = {u["tree_size"]: bytes(u["body"]) for u in snapshot["unanchored"]}
        self.events.load(window)
        self.head_offset = snapshot["entries_offset"]

    def recover(self, entries: Iterable[tuple[int, bytes]], checkpoints: Iterable[tuple[int, bytes]],
                key: PublicKey) -> None:
        """Rebuild from the committed topics (all of them, the tail after an adopted
        snapshot, or, for a standby that follows the leader, what was committed since the
        last call): ``checkpoints`` first (our validly signed checkpoints by size), then
        ``entries``, comparing each checkpoint's root with the compact range's as it passes
        that size (it cannot answer a past root later). The last matching checkpoint sets
        ``checkpoint_size``; those with no TimestampAnchor are the anchor backlog. A claim
        beyond the entries read so far waits for the next call (a transaction's markers
        can become visible on ``checkpoints`` before ``entries``)."""
        claimed, anchored = self._read_checkpoints(checkpoints, key)
        for size, found in claimed.items():
            self.claims.setdefault(size, []).extend(found)
        for size, body in list(self.unanchored.items()):  # anchored since (a snapshot's backlog)
            if hashlib.sha256(body).digest() in anchored:
                del self.unanchored[size]
        for size, found in self.claims.items():
            self.claims[size] = [(root, None if body is None or hashlib.sha256(body).digest() in anchored else body)
                                 for root, body in found]
        roots: dict[int, bytes] = {}

        def note_root() -> None:
            if self.tree.size in self.claims:
                roots[self.tree.size] = self.tree.root()

        note_root()  # a checkpoint of the empty tree, or of the size reached by the last call
        self._recover_entries(entries, key, after_each=note_root)
        for size, root in roots.items():
            for claimed_root, body in self.claims.pop(size):
                if claimed_root == root:
                    self.checkpoint_size = max(self.checkpoint_size, size)
                    if body is not None:
                        self.unanchored[size] = body
        for size in [s for s in self.claims if s < self.tree.size]:  # passed before they were read
            del self.claims[size]

    def _recover_entries(self, stream: Iterable[tuple[int, bytes]], key: PublicKey,
                         after_each: Callable[[], None]) -> None:
        """Adopt the committed entries, skipping anything we did not write.

        Foreign records (replays, corrupt bytes, forgeries by a rogue producer) are not
        adopted: an entry is taken only if it continues our chain, its hash recomputes,
        it names our key and, when signed, its signature verifies. Verifiers alert on
        the rest; the signer must simply never build on it.
        """
        for offset, raw in stream:
            fast = avro_fast.read_entry(raw)  # compiled: the entry and its hash preimage, or None
            if fast is None:
                try:
                    _, entry = codec.decode(raw, expect="LedgerEntry")
                except DecodeError:
                    self.skipped_on_recovery += 1
                    continue
                computed = None
            else:
                entry, computed = fast[0], hashlib.sha256(fast[1]).digest()
            if not self._continues_chain(entry, key, computed):
                self.skipped_on_recovery += 1
                continue
            self.apply(entry)
            self.head_offset = offset
            after_each()

    @staticmethod
    def _read_checkpoints(stream: Iterable[tuple[int, bytes]], key: PublicKey
                          ) -> tuple[dict[int, list[tuple[bytes, bytes | None]]], set[bytes]]:
        """Our validly signed checkpoints: (root, body) by tree size, the body None when a
        TimestampAnchor covers it (only unanchored bodies are kept); and the body hashes
        the TimestampAnchors cover."""
        claimed: dict[int, list[tuple[bytes, bytes]]] = {}
        anchored: set[bytes] = set()
        for offset, raw in stream:
            try:
                name, rec = codec.decode(raw, expect=("Checkpoint", "TimestampAnchor", "NoteSignature"))
            except DecodeError:
                continue
            if name == "NoteSignature":
                continue
            if name == "TimestampAnchor":
                anchored.add(bytes(rec["body_hash"]))
                continue
            if rec["key_id"] != key.key_id:
                continue
            try:
                key.verify(bytes(rec["signature"]), bytes(rec["body"]))
            except InvalidSignature:
                continue
            claimed.setdefault(rec["tree_size"], []).append((bytes(rec["root_hash"]), bytes(rec["body"])))
        return {size: [(root, None if hashlib.sha256(body).digest() in anchored else body) for root, body in found]
                for size, found in claimed.items()}, anchored

    def _continues_chain(self, entry: dict[str, Any], key: PublicKey, computed: bytes | None = None) -> bool:
        """``computed``: the entry hash from the compiled reader's preimage, if it read the record."""
        if entry["seq"] != self.next_seq or bytes(entry["prev_hash"]) != self.head:
            return False
        if entry["key_id"] != key.key_id:
            return False
        h = computed or records.entry_hash(entry)
        if h != bytes(entry["entry_hash"]):
            return False
        agent_seq, agent_prev = self.agent_position(entry["action"]["agent_id"])
        if entry["agent_seq"] != agent_seq or bytes(entry["agent_prev_hash"]) != agent_prev:
            return False
        if entry.get("signature") is not None:
            try:
                key.verify(bytes(entry["signature"]), records.entry_signing_message(h))
            except InvalidSignature:
                return False
        return True
