"""A read-only snapshot of the ledger as committed in Kafka, for the CLI tools without a
ledger index.

Loads ``entries`` and ``checkpoints`` once through the core's rule (``core/adoption.py``):
the entries are the records the core adopts, the checkpoints those it verifies; every other
record is kept aside as ``foreign`` (with why) so tools can show it instead of hiding it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ledgerstream.core import merkle, note, records
from ledgerstream.core.adoption import adopt
from ledgerstream.core.config import Topics
from ledgerstream.core.topic_reader import read_partition
from ledgerstream.core.verify import CheckedEntry, CheckerConfig
from ledgerstream.core.verify.checkpoints import NoteLine


@dataclass
class LedgerSnapshot:
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)  # seq -> entry (gaps: absent)
    raw: dict[int, bytes] = field(default_factory=dict)                # seq -> its bytes as on the topic
    offsets: dict[int, int] = field(default_factory=dict)              # seq -> its offset
    foreign: list[tuple[int, str]] = field(default_factory=list)       # (offset, why) of records not adopted
    checkpoints: list[dict[str, Any]] = field(default_factory=list)    # verified Checkpoint records
    anchors: dict[bytes, list[dict[str, Any]]] = field(default_factory=dict)  # body hash -> anchors
    #: body hash -> the NoteSignature records of configured keys, each with its key and verdict
    note_lines: dict[bytes, list[NoteLine]] = field(default_factory=dict)
    witnessed_size: int = 0  # the largest size the configured quorum of witnesses cosigned
    tree: merkle.MerkleTree = field(default_factory=merkle.MerkleTree)

    def entry(self, seq: int) -> dict[str, Any]:
        if seq not in self.entries:
            missing = " and this one is missing from the topic" if 0 <= seq < self.tree.size else ""
            raise LookupError(f"no entry with seq {seq} (ledger has {self.tree.size} entries{missing})")
        return self.entries[seq]

    def checkpoint_for(self, tree_size: int | None = None, covering: int | None = None) -> dict[str, Any]:
        """The checkpoint of exactly ``tree_size``, or the latest one covering seq ``covering``."""
        cps = self.checkpoints
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

    def note_lines_for(self, checkpoint: dict[str, Any]) -> list[NoteLine]:
        return self.note_lines.get(hashlib.sha256(bytes(checkpoint["body"])).digest(), [])


def load_ledger(bootstrap: str, topics: Topics, config: CheckerConfig, *,
                progress: Callable[[int], None] | None = None) -> LedgerSnapshot:
    """Read both topics whole (the fallback when there is no ledger index) under ``config``'s
    trusted keys: a record signed by another key, a fork or a tampered record is never
    adopted, and a checkpoint is kept only if it verifies against the adopted entries."""
    snap = LedgerSnapshot()

    def adopted(c: CheckedEntry) -> None:
        snap.entries[c.seq], snap.raw[c.seq], snap.offsets[c.seq] = c.entry, c.raw, c.offset

    checkpoints = list(read_partition(bootstrap, topics.checkpoints))  # first: see replay.build_ledger
    run = adopt(read_partition(bootstrap, topics.entries), checkpoints, config, adopted, progress=progress)
    snap.tree = run.checker.tree
    snap.foreign = [(f.offset, f"{f.kind}: {f.detail}") for f in run.foreign]
    problems = run.checkpoint_findings()
    snap.foreign += [(offset, f"checkpoints topic: {fs[0].kind.value}: {fs[0].detail}")
                     for offset, fs in sorted(problems.items())]
    for c in run.checkpoints:
        if c.offset not in problems and c.record["tree_size"] <= snap.tree.size:
            snap.checkpoints.append(dict(c.record, _raw=c.raw))
    for a in run.anchors:
        if a.offset not in problems:
            snap.anchors.setdefault(bytes(a.record["body_hash"]), []).append(dict(a.record))
    snap.note_lines = run.note_lines()
    snap.witnessed_size = run.checker.witnessed_size
    snap.checkpoints.sort(key=lambda c: c["tree_size"])
    return snap


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


def checkpoint_json(c: dict[str, Any], anchors: list[dict[str, Any]], lines: Sequence[NoteLine] = (),
                    witnessed_size: int = 0) -> dict[str, Any]:
    """One checkpoint (a Checkpoint record) with its TimestampAnchor records and the
    cosignatures of configured witnesses, as ``checkpoints list --json`` prints it."""
    return {
        "tree_size": c["tree_size"],
        "root_hash": bytes(c["root_hash"]).hex(),
        "chain_head": bytes(c["chain_head"]).hex(),
        "created_at": c["created_at"],
        "origin": c["origin"],
        "key_id": c["key_id"],
        "timestamps": [{"tsa": a["timestamp"]["tsa"], "token_bytes": len(a["timestamp"]["token"])} for a in anchors],
        "anchored": bool(anchors),
        "cosignatures": [{"witness": n.key.name, "key_type": note.KEY_TYPES[n.key.kind], "verified": n.verified}
                         for n in lines if n.role == "witness"],
        "witnessed": 0 < c["tree_size"] <= witnessed_size,
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
