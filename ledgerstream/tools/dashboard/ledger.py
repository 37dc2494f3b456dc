"""The dashboard's in-memory picture of the ledger, fed record by record from Kafka.

It keeps what the pages show without holding whole entries: the main chain (the records
the core Checker adopts, ``core/adoption.py``: the same rule every verifier runs, so a
record signed by another key or a fork is never shown as an entry), its Merkle tree for
inclusion proofs, the core's findings about each entry, per-agent heads, the cross-agent
call edges, checkpoints with their anchors, recent alerts, and the records that are not
entries (with the finding that kept them out). The newest entry shows once the core
confirms it (its successor or a checkpoint arrives), as on the verifiers. Thread-safe:
the Kafka threads write, the web handlers read.

Each alert's signature is checked against the trusted verifier keys
(core/alert_signature.py): its view says ``authenticity`` and ``forged``, and only verified
alerts count in the summary's ``by_kind``; forged and unsigned ones are counted apart, so a
forged record (an ``all_clear``, or any other kind) changes nothing a genuine alert shows.
"""
from __future__ import annotations

import hashlib
import threading
import time
from array import array
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping

from ledgerstream.core.wire import codec
from ledgerstream.core.adoption import Adoption, Foreign as ForeignRecord
from ledgerstream.core.alert_signature import VerifierKey, check_alert
from ledgerstream.core.errors import DecodeError
from ledgerstream.core.verify import CheckedEntry, CheckerConfig, Kind

#: the core's findings about an adopted entry, by the entry page's check name
ENTRY_CHECK_OF_KIND = {Kind.CHAIN_BREAK: "chain", Kind.AGENT_CHAIN_BREAK: "agent chain", Kind.LINK_MISMATCH: "links"}

#: raw entry bytes kept for the entry page; older entries are fetched from Kafka again
RECENT_ENTRIES = 2000
MAX_ALERTS = 1000
MAX_FOREIGN = 1000
THROUGHPUT_WINDOW_S = 300


def _hex(value: bytes | None) -> str | None:
    return bytes(value).hex() if value is not None else None


@dataclass
class AgentStats:
    agent_id: str
    count: int = 0
    head_seq: int = -1
    head_hash: str = ""
    last_action: str = ""
    first_seen: int = 0  # microseconds (signer clock)
    last_seen: int = 0
    chain_breaks: int = 0


@dataclass
class Anchor:
    tsa: str
    token: bytes
    offset: int


@dataclass
class CheckpointInfo:
    offset: int
    tree_size: int
    root_hash: bytes
    chain_head: bytes
    created_at: int
    body: bytes
    key_id: str
    signature: bytes
    signature_status: str = "unchecked"  # valid | invalid | unknown_key | unchecked
    anchors: list[Anchor] = field(default_factory=list)

    @property
    def body_hash(self) -> bytes:
        return hashlib.sha256(self.body).digest()


@dataclass(frozen=True)
class Foreign:
    """A record on the entries topic that is not part of the main chain, and why."""

    offset: int
    seq: int | None
    reason: str


class LedgerView:
    def __init__(self, config: CheckerConfig, verify_checkpoint: Callable[[CheckpointInfo], str] | None = None,
                 trusted_verifiers: Mapping[str, VerifierKey] | None = None) -> None:
        """``config``: the signer keys the core trusts (no key: no record is an entry)."""
        self._lock = threading.RLock()
        self._verify_checkpoint = verify_checkpoint or (lambda cp: "unchecked")
        self._trusted_verifiers = dict(trusted_verifiers or {})
        self._core = Adoption(config, self._adopt, on_foreign=self._foreign, keep=False)
        self.tree = self._core.checker.tree
        self._hashes = bytearray()  # entry hashes of the main chain, 32 bytes each (zeros: missing)
        self._offsets = array("q")  # -1: missing (a gap the core reported)
        self._issues: dict[int, dict[str, str]] = {}  # seq -> entry check -> the core's finding
        self._agent_of: list[str] = []
        self._agent_prev = array("q")  # seq of the same agent's previous entry, -1 for its first
        self._recent: OrderedDict[int, bytes] = OrderedDict()
        self._per_second: deque[list[int]] = deque()  # [second of received_at, entries], oldest first
        self.records_seen = 0
        self.last_received_at = 0
        self.agents: dict[str, AgentStats] = {}
        self.edges: dict[tuple[str, str], int] = {}
        self.recent_edges: deque[dict[str, Any]] = deque(maxlen=200)
        self.foreign: deque[Foreign] = deque(maxlen=MAX_FOREIGN)
        self.foreign_total = 0
        self.checkpoints: list[CheckpointInfo] = []
        self._orphan_anchors: dict[bytes, list[Anchor]] = {}
        self.alerts: deque[dict[str, Any]] = deque(maxlen=MAX_ALERTS)
        self.alert_total = 0
        self.alert_counts: dict[str, int] = {}  # verified alerts only
        self.forged_total = 0  # alerts that are not verified (forged or unsigned)
        self.forged_counts: dict[str, int] = {}
        self.version = 0  # bumps on every change, so pushers can tell
        #: per ledger topic ("entries" / "checkpoints"), the offset after the last record taken:
        #: where a follow that stopped (an index answered) resumes
        self.resume_at = {"entries": 0, "checkpoints": 0}

    # --- writers (Kafka threads) -------------------------------------------------------------
    def add_entry_record(self, offset: int, raw: bytes) -> None:
        with self._lock:
            self.records_seen += 1
            self.version += 1
            self.resume_at["entries"] = offset + 1
            self._note(self._core.feed_entries([(offset, raw)]))

    def _note(self, findings: list) -> None:
        """Keep the core's findings about adopted entries for their entry pages."""
        for f in findings:
            check = ENTRY_CHECK_OF_KIND.get(f.kind)
            if check is not None and f.seq_from is not None:
                self._issues.setdefault(f.seq_from, {}).setdefault(check, f.detail)
                if f.kind == Kind.AGENT_CHAIN_BREAK and f.agent_id in self.agents:
                    self.agents[f.agent_id].chain_breaks += 1

    def _adopt(self, c: CheckedEntry) -> None:
        """The core's ``on_entry`` hook: ``c`` is entry ``c.seq`` (after any gap it reported)."""
        offset, raw, entry = c.offset, c.raw, c.entry
        seq, h = entry["seq"], bytes(entry["entry_hash"])
        while len(self._offsets) < seq:  # the missing entries of a gap
            self._hashes += bytes(32)
            self._offsets.append(-1)
            self._agent_of.append("")
            self._agent_prev.append(-1)
        action = entry["action"]
        agent_id = action["agent_id"]
        self._hashes += h
        self._offsets.append(offset)
        self._agent_of.append(agent_id)
        stats = self.agents.get(agent_id) or self.agents.setdefault(agent_id, AgentStats(agent_id, first_seen=entry["received_at"]))
        self._agent_prev.append(stats.head_seq)
        stats.count += 1
        stats.head_seq, stats.head_hash = seq, h.hex()
        stats.last_action, stats.last_seen = action["action_type"], entry["received_at"]
        for link in entry.get("resolved_links") or []:
            if link.get("status") == "resolved" and link.get("seq") is not None and link["seq"] < seq:
                self._add_edge(link["seq"], self._agent_of[link["seq"]], seq, agent_id)
        self._recent[seq] = raw
        if len(self._recent) > RECENT_ENTRIES:
            self._recent.popitem(last=False)
        self.last_received_at = entry["received_at"]
        second = entry["received_at"] // 1_000_000
        if self._per_second and self._per_second[-1][0] == second:
            self._per_second[-1][1] += 1
        else:
            self._per_second.append([second, 1])
        while self._per_second[0][0] < second - THROUGHPUT_WINDOW_S:
            self._per_second.popleft()

    def _add_edge(self, caller_seq: int, caller: str, callee_seq: int, callee: str) -> None:
        self.edges[(caller, callee)] = self.edges.get((caller, callee), 0) + 1
        self.recent_edges.append({"caller_seq": caller_seq, "caller": caller, "callee_seq": callee_seq, "callee": callee})

    def _foreign(self, f: ForeignRecord) -> None:
        """The core's ``on_foreign`` hook: a record that is not an entry, and why."""
        self.foreign.append(Foreign(f.offset, f.seq, f"{f.kind}: {f.detail}"))
        self.foreign_total += 1

    def add_checkpoint_record(self, offset: int, raw: bytes) -> None:
        with self._lock:  # the core confirms the newest entry once a checkpoint covers it
            self.version += 1
            self.resume_at["checkpoints"] = offset + 1
            self._note(self._core.feed_checkpoints([(offset, raw)]))
        try:
            name, rec = codec.decode(raw, expect=("Checkpoint", "TimestampAnchor"))
        except DecodeError:
            return
        with self._lock:
            if name == "TimestampAnchor":
                anchor = Anchor(rec["timestamp"]["tsa"], bytes(rec["timestamp"]["token"]), offset)
                body_hash = bytes(rec["body_hash"])
                for cp in self.checkpoints:
                    if cp.body_hash == body_hash:
                        cp.anchors.append(anchor)
                        return
                self._orphan_anchors.setdefault(body_hash, []).append(anchor)
                return
            cp = CheckpointInfo(offset, rec["tree_size"], bytes(rec["root_hash"]), bytes(rec["chain_head"]),
                                rec["created_at"], bytes(rec["body"]), rec["key_id"], bytes(rec["signature"]))
            cp.anchors.extend(self._orphan_anchors.pop(cp.body_hash, []))
            self.checkpoints.append(cp)
        status = self._verify_checkpoint(cp)  # outside the lock: a signature check takes a while
        with self._lock:
            cp.signature_status = status

    def add_alert_record(self, partition: int, offset: int, raw: bytes) -> dict[str, Any] | None:
        """Record an alert; returns its JSON view (for pushing), or None if undecodable."""
        try:
            _, rec = codec.decode(raw, expect="Alert")
        except DecodeError:
            return None
        authenticity = check_alert(rec, self._trusted_verifiers)  # outside the lock: a signature check
        rec.pop("signature", None)  # 3309 bytes the page does not need; key_id stays
        with self._lock:
            self.alert_total += 1
            self.version += 1
            view = {"index": self.alert_total, "partition": partition, "offset": offset, **rec,
                    "evidence": dict(rec.get("evidence") or {}), **authenticity.fields()}
            self.alerts.append(view)
            counts = self.forged_counts if authenticity.forged else self.alert_counts
            counts[rec["kind"]] = counts.get(rec["kind"], 0) + 1
            self.forged_total += authenticity.forged
            return view

    # --- readers (web handlers) ------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self._offsets)

    def _hash_at(self, seq: int) -> bytes:
        return bytes(self._hashes[seq * 32:(seq + 1) * 32])

    def hash_at(self, seq: int) -> bytes:
        with self._lock:
            return self._hash_at(seq)

    def locate(self, seq: int) -> tuple[int, bytes | None, int]:
        """(offset, raw bytes if still cached, previous seq of the same agent) of an adopted entry."""
        with self._lock:
            if not 0 <= seq < self.size:
                raise LookupError(f"no entry with seq {seq} (the ledger has {self.size} entries)")
            if self._offsets[seq] < 0:
                raise LookupError(f"entry {seq} is missing from the entries topic (a gap)")
            return self._offsets[seq], self._recent.get(seq), self._agent_prev[seq]

    def issues(self, seq: int) -> dict[str, str]:
        """The core's findings about adopted entry ``seq``, by entry check name."""
        with self._lock:
            return dict(self._issues.get(seq, {}))

    def other_records(self, seq: int) -> list[Foreign]:
        with self._lock:
            return [f for f in self.foreign if f.seq == seq]

    def head(self, now_us: int | None = None) -> dict[str, Any]:
        now_us = now_us or time.time_ns() // 1000
        with self._lock:
            size = self.size
            now_s = now_us // 1_000_000
            last_1m = sum(n for second, n in self._per_second if second > now_s - 60)
            last_10s = sum(n for second, n in self._per_second if second > now_s - 10)
            return {
                "size": size, "seq": size - 1 if size else None,
                "entry_hash": _hex(self._hash_at(size - 1)) if size else None,
                "root": self.tree.root(size).hex(), "root_size": size, "last_received_at": self.last_received_at or None,
                "records_on_topic": self.records_seen, "foreign_records": self.foreign_total,
                "throughput": {"per_second_10s": round(last_10s / 10, 2), "per_second_1m": round(last_1m / 60, 2)},
                "source": "live",
            }

    def checkpoint_views(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            return [self._checkpoint_view(cp) for cp in reversed(self.checkpoints[-limit:])]

    def latest_checkpoint(self) -> CheckpointInfo | None:
        with self._lock:
            valid = [cp for cp in self.checkpoints if cp.signature_status in ("valid", "unchecked")
                     and cp.tree_size <= self.size]
            return valid[-1] if valid else None

    def _checkpoint_view(self, cp: CheckpointInfo) -> dict[str, Any]:
        if cp.tree_size > self.size:
            root_status = "pending"  # the entries it covers are not all read yet
        else:
            root_status = "match" if self.tree.root(cp.tree_size) == cp.root_hash else "mismatch"
        return {"tree_size": cp.tree_size, "root_hash": cp.root_hash.hex(), "chain_head": cp.chain_head.hex(),
                "created_at": cp.created_at, "key_id": cp.key_id, "signature": cp.signature_status,
                "root": root_status, "offset": cp.offset,
                "anchors": [{"tsa": a.tsa, "offset": a.offset} for a in cp.anchors],
                "witnessed": 0 < cp.tree_size <= self._core.checker.witnessed_size}

    @property
    def witnessed_size(self) -> int:
        """The largest tree size the configured quorum of witnesses has cosigned (docs/witnesses.md)."""
        with self._lock:
            return self._core.checker.witnessed_size

    def anchors_of(self, tree_size: int) -> list[tuple[CheckpointInfo, Anchor]]:
        with self._lock:
            return [(cp, a) for cp in self.checkpoints if cp.tree_size == tree_size for a in cp.anchors]

    def agent_views(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(a) for a in sorted(self.agents.values(), key=lambda a: -a.count)]

    def graph(self, verifier_edges: list[dict[str, Any]] = ()) -> dict[str, Any]:
        """The call graph (:func:`call_graph`) of the resolved links read here."""
        with self._lock:
            edges, recent, nodes = dict(self.edges), list(self.recent_edges), set(self.agents)
        return call_graph(edges, recent, nodes, verifier_edges)

    def alert_views(self, after: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        with self._lock:
            return [a for a in self.alerts if a["index"] > after][-limit:]

    def alert_summary(self) -> dict[str, Any]:
        """``total``: every alert record read; ``verified`` and ``by_kind``: the verified ones;
        ``forged`` and ``forged_by_kind``: those that are not (forged or unsigned)."""
        with self._lock:
            return {"total": self.alert_total, "verified": self.alert_total - self.forged_total,
                    "by_kind": dict(self.alert_counts), "forged": self.forged_total,
                    "forged_by_kind": dict(self.forged_counts)}

    def foreign_views(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in list(self.foreign)[-limit:]]



def call_graph(edges: dict[tuple[str, str], int], recent: list[dict[str, Any]], nodes: set[str],
               verifier_edges: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """Agents as nodes, caller -> callee edges with call counts: the ledger's resolved links
    (``edges`` counts, ``recent`` calls), plus the edges the verifiers found (``from`` names
    ``to`` as its cause, so the caller is their ``to``), each call counted once."""
    edges, recent, nodes = dict(edges), list(recent), set(nodes)
    seen = {(e["caller_seq"], e["callee_seq"]) for e in recent}
    for e in verifier_edges:
        call = {"caller_seq": e.get("to_seq"), "caller": e.get("to_agent"),
                "callee_seq": e.get("from_seq"), "callee": e.get("from_agent")}
        key = (call["caller_seq"], call["callee_seq"])
        if key in seen or not call["caller"] or not call["callee"]:
            continue
        seen.add(key)
        edges[(call["caller"], call["callee"])] = edges.get((call["caller"], call["callee"]), 0) + 1
        recent.append(call)
    for a, b in edges:
        nodes |= {a, b}
    return {"nodes": sorted(nodes),
            "edges": [{"caller": a, "callee": b, "calls": n} for (a, b), n in sorted(edges.items())],
            "recent": recent[-50:]}
