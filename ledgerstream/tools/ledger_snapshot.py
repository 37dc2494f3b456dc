"""A read-only snapshot of the ledger as committed in Kafka, for the CLI tools.

Loads ``entries`` and ``checkpoints`` once and keeps the main chain (the first record
for each seq that continues the hash chain and whose hash recomputes), the Merkle tree
over it, checkpoints and their timestamp anchors. Records that do not fit are kept
aside as ``foreign`` so tools can show them instead of hiding them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

from ledgerstream.core import codec, merkle, records
from ledgerstream.core.config import Topics
from ledgerstream.core.errors import DecodeError
from ledgerstream.core.topic_reader import read_partition
from ledgerstream.core.verify import CheckerConfig, check_checkpoint_record, check_entry


@dataclass
class LedgerSnapshot:
    entries: list[dict[str, Any]] = field(default_factory=list)   # main chain, index == seq
    raw: list[bytes] = field(default_factory=list)                 # their bytes as on the topic
    offsets: list[int] = field(default_factory=list)
    foreign: list[tuple[int, str]] = field(default_factory=list)   # (offset, why) of records not adopted
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    anchors: dict[bytes, list[dict[str, Any]]] = field(default_factory=dict)  # body hash -> anchors
    tree: merkle.MerkleTree = field(default_factory=merkle.MerkleTree)

    def entry(self, seq: int) -> dict[str, Any]:
        if not 0 <= seq < len(self.entries):
            raise LookupError(f"no entry with seq {seq} (ledger has {len(self.entries)} entries)")
        return self.entries[seq]

    def checkpoint_for(self, tree_size: int | None = None, covering: int | None = None) -> dict[str, Any]:
        """The checkpoint of exactly ``tree_size``, or the latest one covering seq ``covering``."""
        cps = [c for c in self.checkpoints if c["tree_size"] <= self.tree.size]
        if tree_size is not None:
            for c in cps:
                if c["tree_size"] == tree_size:
                    return c
            raise LookupError(f"no checkpoint with tree size {tree_size}; "
                              f"known sizes: {[c['tree_size'] for c in cps][-10:]}")
        cover = [c for c in cps if covering is None or c["tree_size"] > covering]
        if not cover:
            raise LookupError(f"no checkpoint covers seq {covering} yet (latest covers "
                              f"{cps[-1]['tree_size'] if cps else 0} entries)")
        return cover[-1]

    def anchors_for(self, checkpoint: dict[str, Any]) -> list[dict[str, Any]]:
        return self.anchors.get(hashlib.sha256(bytes(checkpoint["body"])).digest(), [])


def load_ledger(bootstrap: str, topics: Topics, config: CheckerConfig | None = None, *,
                progress: Callable[[int], None] | None = None) -> LedgerSnapshot:
    """Read both topics whole (the fallback when there is no ledger index). With ``config``
    (the trusted keys), each record first passes the core's stateless checks
    (``core.verify.check_entry`` / ``check_checkpoint_record``: decodes, hash recomputes,
    signed by a trusted key), so a record signed by another key is never adopted."""
    snap = LedgerSnapshot()
    head = records.ZERO_HASH
    for offset, raw in read_partition(bootstrap, topics.entries):
        if progress is not None:
            progress(1)
        entry, why = _checked_entry(offset, raw, config)
        if entry is None:
            snap.foreign.append((offset, why))
            continue
        if entry["seq"] != len(snap.entries) or bytes(entry["prev_hash"]) != head:
            snap.foreign.append((offset, f"seq {entry['seq']} does not continue the chain"))
            continue
        snap.entries.append(entry)
        snap.raw.append(raw)
        snap.offsets.append(offset)
        head = bytes(entry["entry_hash"])
        snap.tree.append(merkle.leaf_hash(records.merkle_leaf_input(head)))
    for offset, raw in read_partition(bootstrap, topics.checkpoints):
        if config is not None:
            checked = check_checkpoint_record((offset, raw), config)
            if checked.rejection is not None:
                snap.foreign.append((offset, f"checkpoints topic: {checked.rejection.detail}"))
                continue
            name, rec = checked.name, dict(checked.record or {})
        else:
            try:
                name, rec = codec.decode(raw, expect=("Checkpoint", "TimestampAnchor"))
            except DecodeError as exc:
                snap.foreign.append((offset, f"checkpoints topic: {exc}"))
                continue
        if name == "Checkpoint":
            rec["_raw"] = raw
            snap.checkpoints.append(rec)
        else:
            snap.anchors.setdefault(bytes(rec["body_hash"]), []).append(rec)
    snap.checkpoints.sort(key=lambda c: c["tree_size"])
    return snap


def _checked_entry(offset: int, raw: bytes, config: CheckerConfig | None) -> tuple[dict[str, Any] | None, str]:
    """The decoded entry if it passes the stateless checks, else (None, why)."""
    if config is not None:
        checked = check_entry((offset, raw), config)
        if checked.rejection is not None:
            return None, checked.rejection.detail
        return checked.entry, ""
    try:
        _, entry = codec.decode(raw, expect="LedgerEntry")
    except DecodeError as exc:
        return None, f"undecodable: {exc}"
    if records.entry_hash(entry) != bytes(entry["entry_hash"]):
        return None, f"seq {entry['seq']}: entry_hash does not recompute"
    return entry, ""


def inclusion_json(snap: LedgerSnapshot, seq: int, tree_size: int | None = None) -> dict[str, Any]:
    """RFC 9162 inclusion proof of entry ``seq`` in the tree of ``tree_size`` entries (default:
    the latest checkpoint covering it), as ``prove inclusion --json`` prints it; LookupError
    for an unknown seq or a size outside the ledger."""
    entry = snap.entry(seq)
    size = tree_size if tree_size is not None else snap.checkpoint_for(covering=seq)["tree_size"]
    if not seq < size <= snap.tree.size:
        raise LookupError(f"tree size {size} must be > {seq} and <= {snap.tree.size}")
    return {
        "leaf_index": seq,
        "tree_size": size,
        "leaf_hash": snap.tree.leaf(seq).hex(),
        "entry_hash": bytes(entry["entry_hash"]).hex(),
        "root_hash": snap.tree.root(size).hex(),
        "audit_path": [h.hex() for h in snap.tree.inclusion_proof(seq, size)],
    }


def checkpoint_json(c: dict[str, Any], anchors: list[dict[str, Any]]) -> dict[str, Any]:
    """One checkpoint (a Checkpoint record) with its TimestampAnchor records, as
    ``checkpoints list --json`` prints it."""
    return {
        "tree_size": c["tree_size"],
        "root_hash": bytes(c["root_hash"]).hex(),
        "chain_head": bytes(c["chain_head"]).hex(),
        "created_at": c["created_at"],
        "origin": c["origin"],
        "key_id": c["key_id"],
        "timestamps": [{"tsa": a["timestamp"]["tsa"], "token_bytes": len(a["timestamp"]["token"])} for a in anchors],
        "anchored": bool(anchors),
    }


def entry_json(entry: dict[str, Any]) -> dict[str, Any]:
    """A JSON-friendly rendering of a LedgerEntry (bytes as hex, payload as JSON if present)."""
    import json

    out = records.jsonable(entry)
    payload = entry["action"].get("payload")
    if payload is not None:
        try:
            out["action"]["payload"] = json.loads(bytes(payload))
        except ValueError:
            pass
    return out
