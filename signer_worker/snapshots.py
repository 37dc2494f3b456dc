"""Signer snapshots: restart from O(log n) state plus a short tail, not a replay of the ledger.

Every ``snapshot_every`` entries or ``snapshot_ms``, inside the transaction whose entries it
covers, the signer writes its recovery state (``SignerSnapshot``) and the part of its dedup
window sequenced since the last one (``SignerDedupChunk`` records of at most ``CHUNK_WRITE``
events, produced first: :meth:`Pending.chunk_records`) to the compacted ``signer-state``
topic. Two snapshot keys alternate, so compaction always keeps the latest two; chunks that
fall out of the dedup horizon are deleted with tombstones. The byte-exact format is
docs/spec.md section 11 (decision D35).

Nothing here is trusted because it is on the topic: a snapshot is adopted only if its
ML-DSA-65 signature verifies under the signer's own key, every chunk it lists is present with
the SHA-256 it names, and the committed entry at its ``entries_offset`` is its head (seq,
hash, key and signature checked as in a full replay). Anything else is a
``snapshot_rejected`` finding and the next candidate (the older slot, then a full replay) is
tried, so a bad snapshot costs time, never a fork.
"""
from __future__ import annotations

import hashlib
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ledgerstream.core import merkle, records
from ledgerstream.core.errors import DecodeError, InvalidSignature
from ledgerstream.core.mldsa import PrivateKey, PublicKey
from ledgerstream.core.wire import codec
from ledgerstream.signer_worker.dedup import Columns
from ledgerstream.signer_worker.state import LedgerState

#: the signing input's domain separation (docs/spec.md section 11)
SNAPSHOT_DOMAIN = b"ledgerstream/signer-snapshot/v1\n"
SLOTS = 2
#: events per dedup chunk a reader accepts: ~150 bytes each, far below the topic's 8 MiB limit
CHUNK_MAX = 20_000
#: events per dedup chunk the signer writes (about 150 KB): each chunk fits in one producer
#: batch (256 KiB), so no produce request is megabytes large; on a small-heap broker those
#: cost several times the CPU per byte (decision D46, docs/benchmarks-signer.md round 9)
CHUNK_WRITE = 1_000
#: a snapshot larger than this (very many agents) is not written; recovery then replays more
MAX_SNAPSHOT_BYTES = 7 * 1024 * 1024
_HASH = 32


class SnapshotError(Exception):
    """A snapshot or chunk that must not be adopted; ``reason`` is a short machine-readable word."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def snapshot_key(slot: int) -> bytes:
    return f"snapshot/{slot}".encode()


def chunk_key(first_seq: int) -> str:
    return f"dedup/{first_seq:020d}"


def signing_message(record: dict[str, Any]) -> bytes:
    """What the signer signs: the domain line, then the record encoded with an empty signature."""
    return SNAPSHOT_DOMAIN + codec.encode("SignerSnapshot", {**record, "signature": b""})


# --- dedup chunks ------------------------------------------------------------------------------
def pack_chunk(events: Columns) -> bytes:
    """A ``SignerDedupChunk`` record (single-object encoded) of a run of consecutive events."""
    n = len(events)
    return codec.encode("SignerDedupChunk", {
        "first_seq": events.first_seq if n else 0,
        "seqs": struct.pack(f">{n}Q", *range(events.first_seq, events.first_seq + n)),
        "event_ids": events.ids_text.encode() if n else b"",
        "agent_ids": "\n".join(events.agents).encode(),
        "action_types": "\n".join(events.actions).encode(),
        "entry_hashes": events.entry_hashes,
        "payload_hashes": events.payload_hashes,
    })


def unpack_chunk(raw: bytes, count: int) -> Columns:
    """The events of a chunk whose hash a verified snapshot named, as columns; the columns
    must agree and the seqs must be consecutive (every capture writes a run of entries)."""
    if count < 0 or count > CHUNK_MAX:
        raise SnapshotError("chunk_invalid", f"a dedup chunk of {count} events (limit {CHUNK_MAX})")
    try:
        _, rec = codec.decode(raw, expect="SignerDedupChunk")
    except DecodeError as exc:
        raise SnapshotError("chunk_invalid", f"undecodable dedup chunk: {exc}") from exc
    seqs, eh, ph = rec["seqs"], rec["entry_hashes"], rec["payload_hashes"]
    try:
        ids, agents, types = (rec[name].decode() if count else "" for name in ("event_ids", "agent_ids", "action_types"))
    except UnicodeDecodeError as exc:
        raise SnapshotError("chunk_invalid", f"dedup chunk is not UTF-8: {exc}") from exc
    lines = [text.count("\n") + 1 if count else 0 for text in (ids, agents, types)]
    if (len(seqs), len(eh), len(ph)) != (8 * count, _HASH * count, _HASH * count) or any(n != count for n in lines):
        raise SnapshotError("chunk_invalid", f"dedup chunk columns do not hold {count} events each")
    first = struct.unpack_from(">Q", seqs)[0] if count else 0
    if seqs != struct.pack(f">{count}Q", *range(first, first + count)):
        raise SnapshotError("chunk_invalid", f"dedup chunk seqs are not consecutive from {first}")
    intern = sys.intern  # agent ids and action types repeat
    return Columns(first, ids, [intern(a) for a in agents.split("\n")] if count else [],
                   [intern(t) for t in types.split("\n")] if count else [], bytes(eh), bytes(ph))


# --- reading the topic ---------------------------------------------------------------------------
@dataclass
class Candidate:
    """A snapshot record found on the topic, decoded if it could be."""

    key: str
    offset: int
    raw: bytes
    record: dict[str, Any] | None = None
    error: str | None = None

    @property
    def next_seq(self) -> int:
        return self.record["next_seq"] if self.record is not None else -1


@dataclass
class Store:
    """The live records of ``signer-state`` (the latest value per key, as compaction keeps)."""

    #: undecodable ones first (each is refused with a finding), then the newest (largest next_seq) first
    candidates: list[Candidate] = field(default_factory=list)
    chunks: dict[str, bytes] = field(default_factory=dict)


def read_store(stream: Iterable[tuple[int, bytes | None, bytes | None]]) -> Store:
    """The latest value per key of ``(offset, key, value)`` records; a null value deletes."""
    latest: dict[str, tuple[int, bytes]] = {}
    for offset, key, value in stream:
        name = (key or b"").decode("utf-8", "replace")
        if value is None:
            latest.pop(name, None)
        else:
            latest[name] = (offset, value)
    store = Store()
    for name, (offset, value) in latest.items():
        if name.startswith("dedup/"):
            store.chunks[name] = value
        elif name.startswith("snapshot/"):
            cand = Candidate(name, offset, value)
            try:
                _, cand.record = codec.decode(value, expect="SignerSnapshot")
            except DecodeError as exc:
                cand.error = str(exc)
            store.candidates.append(cand)
    store.candidates.sort(key=lambda c: (c.record is None, c.next_seq, c.offset), reverse=True)
    return store


def check(cand: Candidate, chunks: dict[str, bytes], key: PublicKey, origin: str,
          entry_at: Callable[[int], bytes | None]) -> list[Columns]:
    """The dedup window of a snapshot fit to adopt, chunk by chunk; SnapshotError says why it is not."""
    if cand.record is None:
        raise SnapshotError("undecodable", f"snapshot {cand.key} at offset {cand.offset} is not a record: {cand.error}")
    rec = cand.record
    if rec["key_id"] != key.key_id:
        raise SnapshotError("unknown_key", f"snapshot {cand.key} names key {rec['key_id'][:16]}, not ours")
    try:
        key.verify(bytes(rec["signature"]), signing_message(rec))
    except InvalidSignature as exc:
        raise SnapshotError("bad_signature", f"snapshot {cand.key}: {exc}") from exc
    if rec["origin"] != origin:
        raise SnapshotError("other_origin", f"snapshot {cand.key} is of origin {rec['origin']!r}")
    if rec["next_seq"] < 1 or not 0 <= rec["checkpoint_size"] <= rec["next_seq"]:
        raise SnapshotError("invalid", f"snapshot {cand.key}: next_seq {rec['next_seq']}, checkpoint {rec['checkpoint_size']}")
    try:
        merkle.CompactRange(rec["next_seq"], rec["tree_hashes"])
    except ValueError as exc:
        raise SnapshotError("invalid", f"snapshot {cand.key}: {exc}") from exc
    _check_head(cand, key, entry_at)
    window: list[Columns] = []
    for ref in rec["dedup_chunks"]:
        raw = chunks.get(ref["key"])
        if raw is None:
            raise SnapshotError("chunk_missing", f"snapshot {cand.key} needs dedup chunk {ref['key']}, which is gone")
        if hashlib.sha256(raw).digest() != bytes(ref["sha256"]):
            raise SnapshotError("chunk_altered", f"dedup chunk {ref['key']} does not have the hash snapshot {cand.key} names")
        window.append(unpack_chunk(raw, ref["count"]))
    return window


def _check_head(cand: Candidate, key: PublicKey, entry_at: Callable[[int], bytes | None]) -> None:
    """The committed entry at ``entries_offset`` must be the snapshot's head, ours and intact."""
    rec = cand.record
    assert rec is not None
    raw = entry_at(rec["entries_offset"])
    if raw is None:
        raise SnapshotError("head_missing", f"no committed entry at offset {rec['entries_offset']} (snapshot {cand.key})")
    try:
        _, entry = codec.decode(raw, expect="LedgerEntry")
    except DecodeError as exc:
        raise SnapshotError("head_mismatch", f"the record at offset {rec['entries_offset']} is not an entry: {exc}") from exc
    h = bytes(entry["entry_hash"])
    if (entry["seq"] != rec["next_seq"] - 1 or h != bytes(rec["head"]) or entry["key_id"] != key.key_id
            or records.entry_hash(entry) != h):
        raise SnapshotError("head_mismatch", f"the entry at offset {rec['entries_offset']} (seq {entry['seq']}) "
                                             f"is not snapshot {cand.key}'s head (seq {rec['next_seq'] - 1})")
    if entry.get("signature") is not None:
        try:
            key.verify(bytes(entry["signature"]), records.entry_signing_message(h))
        except InvalidSignature as exc:
            raise SnapshotError("head_mismatch", f"the head entry's signature does not verify: {exc}") from exc
    agent = next((a for a in rec["agents"] if a["agent_id"] == entry["action"]["agent_id"]), None)
    if agent is None or (agent["next_agent_seq"], bytes(agent["head"])) != (entry["agent_seq"] + 1, h):
        raise SnapshotError("head_mismatch", f"snapshot {cand.key}'s agent chain of {entry['action']['agent_id']!r} "
                                             "does not end at its head entry")


# --- writing ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChunkRef:
    key: str
    first_seq: int
    count: int
    sha256: bytes

    @property
    def end(self) -> int:
        return self.first_seq + self.count

    def as_record(self) -> dict[str, Any]:
        return {"key": self.key, "first_seq": self.first_seq, "count": self.count, "sha256": self.sha256}


@dataclass
class Pending:
    """A snapshot captured at the end of a transaction's entries, finished once their offsets are known."""

    record: dict[str, Any]
    chunks: list[tuple[ChunkRef, bytes]]
    live: list[ChunkRef]
    dropped: list[ChunkRef]

    def chunk_records(self) -> list[tuple[bytes, bytes]]:
        """The new dedup chunks, keys and values, to produce at once: Kafka takes them while
        the transaction's entries are still being delivered (the loop waits for those before
        :meth:`SnapshotWriter.finish`, which needs the head's offset). Safe before the snapshot
        is finished, or if it never is: their keys start at the live chunks' end
        (``SnapshotWriter.covered``), so they overwrite no chunk a written snapshot names, and
        the next capture rewrites the same keys."""
        return [(ref.key.encode(), raw) for ref, raw in self.chunks]


class SnapshotWriter:
    """When to write a snapshot, and the live dedup chunks it builds on."""

    def __init__(self, every: int, interval_s: float, horizon: int) -> None:
        self.every = every
        self.interval_s = interval_s
        self.horizon = horizon
        self.live: list[ChunkRef] = []
        self.last_seq = 0
        self.last_time = time.monotonic()
        self.slot = 0
        self.written = 0
        self.skipped_too_large = 0

    def restart_from(self, rec: dict[str, Any] | None, slot_of: str | None = None) -> None:
        """After recovery: build on the adopted snapshot's chunks, or write one at once after a replay."""
        if rec is None:
            self.live, self.last_seq, self.last_time = [], 0, float("-inf")
            return
        self.live = [ChunkRef(c["key"], c["first_seq"], c["count"], bytes(c["sha256"])) for c in rec["dedup_chunks"]]
        self.last_seq = rec["next_seq"]
        self.last_time = time.monotonic()
        self.slot = 0 if slot_of == snapshot_key(1).decode() else 1  # the other slot next

    @property
    def covered(self) -> int:
        """The seq the live chunks reach: the next snapshot writes the events from here on."""
        return self.live[-1].end if self.live else 0

    def due(self, next_seq: int) -> bool:
        if self.every <= 0 or next_seq <= self.last_seq:
            return False
        return next_seq - self.last_seq >= self.every or time.monotonic() - self.last_time >= self.interval_s

    def capture(self, state: LedgerState, origin: str, key_id: str, unanchored: dict[int, bytes]) -> Pending:
        """Everything but the offsets, as of now (the end of this transaction's entries)."""
        fresh = state.events.columns_since(self.covered)
        chunks = []
        for part in fresh.split(CHUNK_WRITE):
            raw = pack_chunk(part)
            chunks.append((ChunkRef(chunk_key(part.first_seq), part.first_seq, len(part),
                                    hashlib.sha256(raw).digest()), raw))
        floor = state.next_seq - self.horizon
        kept = [c for c in self.live if c.end > floor]
        dropped = [c for c in self.live if c.end <= floor]
        live = kept + [ref for ref, _ in chunks]
        record = {
            "origin": origin, "key_id": key_id, "next_seq": state.next_seq, "head": state.head,
            "agents": [{"agent_id": a, "next_agent_seq": s, "head": h} for a, (s, h) in state.agents.items()],
            "tree_hashes": list(state.tree.hashes), "checkpoint_size": state.checkpoint_size,
            "unanchored": [{"tree_size": s, "body": b} for s, b in sorted(unanchored.items())],
            "entries_offset": -1, "checkpoints_offset": -1, "dedup_horizon": self.horizon,
            "dedup_chunks": [c.as_record() for c in live], "created_at": 0, "signature": b"",
        }
        return Pending(record, chunks, live, dropped)

    def finish(self, pending: Pending, entries_offset: int, checkpoints_offset: int, key: PrivateKey,
               now_us: int) -> list[tuple[bytes, bytes | None]] | None:
        """The records to produce after :meth:`Pending.chunk_records`, keys and values: the
        tombstones of chunks that left the horizon (None) and the snapshot; None if too large
        to write. Tombstones go with the snapshot: the one before it still names those chunks."""
        rec = pending.record
        rec.update(entries_offset=entries_offset, checkpoints_offset=checkpoints_offset, created_at=now_us)
        rec["signature"] = key.sign(signing_message(rec))
        value = codec.encode("SignerSnapshot", rec)
        if len(value) > MAX_SNAPSHOT_BYTES:
            self.skipped_too_large += 1
            self.postpone(pending)
            return None
        out: list[tuple[bytes, bytes | None]] = [(ref.key.encode(), None) for ref in pending.dropped]
        out.append((snapshot_key(self.slot), value))
        return out

    def postpone(self, pending: Pending) -> None:
        """Not written: try again after the next interval, on the same chunks."""
        self.last_seq = pending.record["next_seq"]
        self.last_time = time.monotonic()

    def committed(self, pending: Pending) -> None:
        self.live = pending.live
        self.last_seq = pending.record["next_seq"]
        self.last_time = time.monotonic()
        self.slot ^= 1
        self.written += 1
