"""The incremental Checker: chain and agent-chain continuation (steps [4], [5]), links
[8], checkpoints and anchors ([6], [7]) over records fed in topic order."""
from __future__ import annotations

import base64
import hashlib
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from ledgerstream.core import merkle, records
from ledgerstream.core.errors import ProofError, TimestampError, VerificationError
from ledgerstream.core.timestamp import verify_timestamp
from ledgerstream.core.verify.checkpoints import (CheckedCheckpoint, check_checkpoint_record, note_signature_key,
                                                  note_signature_line)
from ledgerstream.core.verify.entries import CheckedEntry, check_entry, entry_located
from ledgerstream.core.verify.findings import CHECKPOINTS, ENTRIES, PEERS, Finding, Kind, Stats, at_offset
from ledgerstream.core.verify.history import History, MemoryHistory
from ledgerstream.core.verify.links import (CallGraph, Edge, PendingLink, links_answer_problem, names_earlier_entry,
                                            resolved_link_problem)
from ledgerstream.core.verify.signatures import SignaturePool, check_entries
from ledgerstream.core.verify.trust import CheckerConfig

STATE_VERSION = 1


#: peer checkpoints a live verifier holds until its ledger reaches their size
MAX_PEER_PENDING = 10_000
#: rejected checkpoints whose anchors and note signatures raise nothing more (the newest ones;
#: rogue checkpoints are attacker input, so the memory of them is bounded)
MAX_REJECTED_BODIES = 1000


@dataclass(frozen=True)
class _PeerClaim:
    """A checkpoint our signer signed, seen on another copy of the topics."""

    offset: int
    size: int
    root: bytes
    origin: str
    key_id: str
    source: str


@dataclass
class _Tentative:
    """The newest entry: verified, waiting for the next entry to confirm its place."""

    checked: CheckedEntry
    edges: list[tuple[int, str, str]]          # (to_seq, to_agent, relation) of its resolved links
    pending: list[tuple[str, str, str]]        # (to_agent, to_event, relation) still unresolved


@dataclass
class _CheckpointHead:
    tree_size: int
    root: bytes
    chain_head: bytes
    created_at: int




class Checker:
    """Holds the chain state of one replay and turns records into findings.

    Feed each topic in its own order (``feed_entries`` / ``feed_checkpoints``, any
    interleaving); call :meth:`finish` at the end of a finite replay. Records at offsets
    already processed are skipped, so redelivery after a restart is harmless.
    """

    def __init__(self, config: CheckerConfig, on_adopt: Callable[[CheckedEntry], None] | None = None,
                 history: History | None = None) -> None:
        """``on_adopt``: called with each record as it becomes entry ``seq`` of the ledger
        (in seq order), for readers that need to know which record that is (``core/adoption.py``).
        ``history``: where per-entry state lives (default: memory); it also says how many of the
        call graph's newest edges stay in memory (the counts by agent pair always do)."""
        self.config = config
        self.on_adopt = on_adopt
        self.stats = Stats()
        self._history: History = history or MemoryHistory()
        self.graph = CallGraph(max_edges=self._history.graph_edges)
        self.next_offset = {ENTRIES: 0, CHECKPOINTS: 0}
        self._gaps: list[tuple[int, int]] = []         # missing seq ranges [first, last]; last's hash is known
        self._tree = self._history.tree
        self._tentative: _Tentative | None = None
        self._candidate: CheckedEntry | None = None
        self._pending: deque[PendingLink] = deque()
        self._pending_by_target: dict[tuple[str, str], list[PendingLink]] = {}
        self._ledger_time: int | None = None  # received_at of the newest entry (None before the first)
        self._queue: deque[CheckedCheckpoint] = deque()        # checkpoint-topic records in arrival order
        self._last_cp: _CheckpointHead | None = None
        self._origin: str | None = None  # the origin of the verified checkpoints (split-view checks)
        self._peers: deque[_PeerClaim] = deque()  # peer checkpoints beyond this ledger, waiting
        self._rejected_bodies: dict[bytes, None] = {}  # insertion-ordered, newest last
        self._last_gen: dict[str, float] = {}                   # TSA subject -> newest genTime (epoch s)
        self._last_rejection: dict[str, Kind | None] = {ENTRIES: None, CHECKPOINTS: None}
        self._journal: list[dict[str, Any]] = []

    # --- public views -------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """Next seq expected: entries [0, position) are verified (the newest still tentative)."""
        return self._tree.size + (1 if self._tentative else 0)

    @property
    def last_checkpoint(self) -> dict[str, Any] | None:
        cp = self._last_cp
        return None if cp is None else {"tree_size": cp.tree_size, "root_hash": cp.root.hex(),
                                        "chain_head": cp.chain_head.hex(), "created_at": cp.created_at}

    @property
    def head_hash(self) -> bytes:
        """entry_hash of the newest verified entry (zeros before the first)."""
        if self._tentative:
            return self._tentative.checked.entry_hash
        return self._hash_at(self._tree.size - 1) or records.ZERO_HASH

    @property
    def held_offsets(self) -> set[int]:
        """Offsets of the entries records held whole and not integrated yet (the tentative
        head and a fork candidate): any other record fed and not integrated never will be."""
        held = {self._tentative.checked.offset} if self._tentative else set()
        if self._candidate is not None:
            held.add(self._candidate.offset)
        return held

    @property
    def queued_checkpoints(self) -> int:
        """Checkpoint-topic records waiting for entries not fed yet (kept whole, and in the
        exported state): a reader far ahead on ``checkpoints`` holds that topic back (D48)."""
        return len(self._queue)

    @property
    def pending_links(self) -> int:
        return sum(1 for p in self._pending if not p.done)

    @property
    def tree(self) -> merkle.MerkleTree:
        """The Merkle tree over integrated entries (for proofs; do not append to it)."""
        return self._tree

    # --- feeding ------------------------------------------------------------------------------
    def feed_entries(self, batch: Sequence[tuple[int, bytes]], signatures: SignaturePool | None = None,
                     verdicts: Mapping[int, bool] | None = None) -> list[Finding]:
        """Verify a run of consecutive ``entries`` records; with ``signatures``, step [3]'s
        signature checks run in the background, and ``verdicts`` may bring some already
        made (see :func:`check_entries`)."""
        fresh = [r for r in batch if r[0] >= self.next_offset[ENTRIES]]
        return self.feed_checked(check_entries(fresh, self.config, signatures, verdicts, self.stats)) if fresh else []

    def feed_checked(self, checked: Iterable[CheckedEntry]) -> list[Finding]:
        """Integrate consecutive ``entries`` records that :func:`check_entries` checked
        with this checker's config (the stateless steps may run anywhere, e.g. on other
        threads or in another process); records at offsets already processed are skipped."""
        out: list[Finding] = []
        fed = False
        for c in checked:
            if c.offset < self.next_offset[ENTRIES]:
                continue
            fed = True
            self.next_offset[ENTRIES] = c.offset + 1
            out += self._integrate(c)
        if not fed:
            return []
        out += self._drain_queue()
        if self._peers:
            out += self._drain_peers()
        return self._record(out)

    def feed_checkpoints(self, batch: Sequence[tuple[int, bytes]]) -> list[Finding]:
        out: list[Finding] = []
        for record in batch:
            if record[0] < self.next_offset[CHECKPOINTS]:
                continue
            self.next_offset[CHECKPOINTS] = record[0] + 1
            c = check_checkpoint_record(record, self.config)
            if c.rejection is not None:
                out += self._reject(CHECKPOINTS, c.rejection)
                if c.record is not None and c.name == "Checkpoint":
                    self._reject_body(c.body_hash)
                continue
            self._last_rejection[CHECKPOINTS] = None
            self._queue.append(c)
        out += self._drain_queue()
        out += self._drain_peers()  # a checkpoint may have integrated the entry a held claim waits for
        return self._record(out)

    def _reject_body(self, body_hash: bytes) -> None:
        """Remember a reported checkpoint, so that its anchors raise nothing more; the oldest
        is forgotten beyond MAX_REJECTED_BODIES (its anchors are then reported as anchors of
        a checkpoint this ledger does not have)."""
        self._rejected_bodies.pop(body_hash, None)
        self._rejected_bodies[body_hash] = None
        if len(self._rejected_bodies) > MAX_REJECTED_BODIES:
            del self._rejected_bodies[next(iter(self._rejected_bodies))]

    def feed(self, topic: str, offset: int, raw: bytes) -> list[Finding]:
        """One record of ``topic`` ("entries" or "checkpoints")."""
        if topic == ENTRIES:
            return self.feed_entries([(offset, raw)])
        if topic == CHECKPOINTS:
            return self.feed_checkpoints([(offset, raw)])
        raise ValueError(f"unknown topic role {topic!r}")

    def finish(self) -> list[Finding]:
        """End of a finite replay: integrate the newest entry and settle every checkpoint."""
        self._finalize_tentative()
        return self._record(self._drain_queue() + self._expire())

    def expire_checkpoints(self, before_offset: int | None = None) -> list[Finding]:
        """Call when every entry committed before the checkpoints at offsets below
        ``before_offset`` (all queued ones when None) has been fed: those still waiting for
        entries claim more entries than the ledger has. Checkpoints read later stay pending:
        a checkpoint may be read before the entries it covers, and that is no finding."""
        out = self._expire(before_offset)
        return self._record(out + self._drain_peers())

    def _expire(self, before_offset: int | None = None) -> list[Finding]:
        out = []
        while self._queue and (before_offset is None or self._queue[0].offset < before_offset):
            item = self._queue.popleft()
            if item.name == "Checkpoint" and item.record["tree_size"] > self.position:
                rec = item.record
                self._reject_body(item.body_hash)
                out.append(Finding.make(
                    Kind.CHECKPOINT_ROOT_MISMATCH,
                    f"checkpoint claims {rec['tree_size']} entries but the ledger has {self.position}",
                    seq=self.position, seq_to=rec["tree_size"] - 1, tree_size=rec["tree_size"],
                    ledger_size=self.position, **at_offset(item.offset, CHECKPOINTS)))
            else:
                out += self._evaluate_queued(item)
        return out

    # --- entries -------------------------------------------------------------------------------
    def _integrate(self, c: CheckedEntry) -> list[Finding]:
        self.stats.entries_seen += 1
        if c.rejection is not None:
            self.stats.entries_rejected += 1
            return self._reject(ENTRIES, c.rejection)
        self._last_rejection[ENTRIES] = None
        self.stats.signatures_verified += c.signed
        self.stats.unsigned_entries += not c.signed
        self.stats.approvals_checked += c.approvals_checked
        out = list(c.notes)
        e, seq, h = c.entry, c.seq, c.entry_hash
        t = self._tentative
        # [4] an entry for a seq we already have
        if seq < self._tree.size:
            known = self._hash_at(seq)
            if known is None:
                out.append(Finding.make(Kind.CHAIN_BREAK, f"entry {seq} arrives after entry {self.position - 1}: "
                                        "out of order", got=h, **entry_located(c)))
            else:
                out.append(self._same_seq(c, known))
            return out
        if t is not None and seq == t.checked.seq:
            cand = self._candidate
            if h == t.checked.entry_hash or (cand is not None and h == cand.entry_hash):
                out.append(self._same_seq(c, h))
            else:
                out.append(self._same_seq(c, t.checked.entry_hash))
                self._candidate = c
            return out
        prev = bytes(e["prev_hash"])
        if seq == self.position:
            if t is None:
                parent = self._hash_at(seq - 1) if seq else records.ZERO_HASH
                if prev != parent:
                    out.append(self._chain_break(c, parent))
            elif prev == t.checked.entry_hash:
                self._finalize_tentative()
            elif self._candidate is not None and prev == self._candidate.entry_hash:
                cand = self._candidate
                self._tentative = None
                out += self._make_tentative(cand)  # its own [5]/[8] checks, now that it is adopted
                self._finalize_tentative()
            else:
                out.append(self._chain_break(c, t.checked.entry_hash))
                self._finalize_tentative()
        else:  # seq > position: entries are missing
            first = self.position
            out.append(Finding.make(Kind.GAP, f"entries {first}..{seq - 1} are missing (next entry is {seq})",
                                    seq=first, seq_to=seq - 1, missing=seq - first, **at_offset(c.offset, ENTRIES)))
            self._finalize_tentative()
            self._fill_gap(first, seq, prev)
        self._candidate = None
        out += self._make_tentative(c)
        received = int(e["received_at"])
        self._ledger_time = received if self._ledger_time is None else max(self._ledger_time, received)
        out += self._dangling(seq, self._ledger_time)
        return out

    def _same_seq(self, c: CheckedEntry, known: bytes) -> Finding:
        seq, h = c.seq, c.entry_hash
        where = entry_located(c)
        if h == known:
            return Finding.make(Kind.DUPLICATE, f"entry {seq} appears again (replayed record)", entry_hash=h, **where)
        return Finding.make(Kind.FORK, f"a different entry under a trusted key claims seq {seq}",
                            expected=known, got=h, key_id=c.entry["key_id"], **where)

    def _chain_break(self, c: CheckedEntry, parent: bytes) -> Finding:
        detail = (f"entry {c.seq}: prev_hash does not link to entry {c.seq - 1}" if c.seq else
                  "entry 0: prev_hash is not 32 zero bytes (the chain starts from zero)")
        return Finding.make(Kind.CHAIN_BREAK, detail,
                            seq=c.seq, agent_id=c.agent_id, expected=parent, got=bytes(c.entry["prev_hash"]),
                            **at_offset(c.offset, ENTRIES))

    def _fill_gap(self, first: int, seq: int, prev: bytes) -> None:
        """Integrate placeholders for missing entries; the last one's hash is known from
        prev_hash (signed by its successor), so a one-entry gap keeps the tree exact."""
        self._gaps.append((first, seq - 1))
        self._journal.append({"gap": [first, seq - 1]})
        for missing in range(first, seq):
            self._append(missing, prev if missing == seq - 1 else None)

    def _make_tentative(self, c: CheckedEntry) -> list[Finding]:
        """Steps [5] and [8] for the new head, against the integrated state."""
        out: list[Finding] = []
        e, seq, agent = c.entry, c.seq, c.agent_id
        head = self._history.agent(agent)
        want_seq, want_prev = (head[0], head[1]) if head else (0, records.ZERO_HASH)
        got_seq, got_prev = int(e["agent_seq"]), bytes(e["agent_prev_hash"])
        if (got_seq, got_prev) != (want_seq, want_prev):
            explained = got_seq > want_seq and self._gap_after(head[2] if head else -1)
            if not explained:
                detail = (f"entry {seq}: the chain of agent {agent} does not continue (agent_seq {got_seq}, "
                          f"expected {want_seq})" if (got_seq, want_seq) != (0, 0) else
                          f"entry {seq}: agent_prev_hash of {agent}'s first entry is not 32 zero bytes")
                out.append(Finding.make(Kind.AGENT_CHAIN_BREAK, detail,
                                        expected_agent_seq=want_seq, got_agent_seq=got_seq,
                                        expected=want_prev, got=got_prev, **entry_located(c)))
        edges, pending, problems = self._check_links(e)
        if problems:
            out.append(Finding.make(Kind.LINK_MISMATCH, f"entry {seq}: " + "; ".join(problems), **entry_located(c)))
        self._tentative = _Tentative(c, edges, pending)
        return out

    def _check_links(self, e: Mapping[str, Any]) -> tuple[list, list, list[str]]:
        links = list(e["action"].get("links") or [])
        resolved = list(e.get("resolved_links") or [])
        if not links and not resolved:
            return [], [], []
        mismatch = links_answer_problem(e)
        if mismatch:
            return [], [], [mismatch]
        edges, pending, problems = [], [], []
        for link, r in zip(links, resolved):
            relation = link.get("relation", "caused_by")
            target = self._history.event(r["event_id"])
            if target is not None and target[1] != r["agent_id"]:
                target = None
            if r["status"] == "resolved":
                problem = self._resolved_problem(e["seq"], r, target)
                if problem:
                    problems.append(problem)
                elif r["seq"] is not None and not self._in_hole(r["seq"]):
                    edges.append((int(r["seq"]), r["agent_id"], relation))
            elif r["status"] == "pending":
                if target is not None:  # the signer's index forgot it (dedup horizon): resolved now
                    edges.append((target[0], r["agent_id"], relation))
                else:
                    pending.append((r["agent_id"], r["event_id"], relation))
            else:
                problems.append(f"link to {r['agent_id']}/{r['event_id']} has unknown status {r['status']!r}")
        return edges, pending, problems

    def _resolved_problem(self, seq: int, r: Mapping[str, Any], target: tuple[int, str] | None) -> str | None:
        if names_earlier_entry(seq, r) and self._in_gap(r["seq"]):
            # the target is missing (a reported gap): only its hash may be known, from its successor
            known = self._hash_at(r["seq"])
            return None if known is None else resolved_link_problem(seq, r, (r["seq"], known))
        return resolved_link_problem(seq, r, None if target is None else (target[0], self._hash_at(target[0])))

    def _finalize_tentative(self) -> None:
        """Integrate the tentative entry: Merkle leaf, agent head, event index, links."""
        t = self._tentative
        if t is None:
            return
        self._tentative = None
        self._candidate = None
        c = t.checked
        e, seq, agent = c.entry, c.seq, c.agent_id
        self._append(seq, c.entry_hash)
        self._history.set_agent(agent, (int(e["agent_seq"]) + 1, c.entry_hash, seq))
        event_id = e["action"]["event_id"]
        self._history.add_event(event_id, seq, agent)
        self._journal[-1].update(a=agent, ev=event_id, as_=int(e["agent_seq"]))
        for to_seq, to_agent, relation in t.edges:
            self._edge(Edge(seq, agent, to_seq, to_agent, relation))
        for p in self._pending_by_target.pop((agent, event_id), []):
            p.done = True
            self._edge(Edge(p.from_seq, p.from_agent, seq, agent, p.relation))
        for to_agent, to_event, relation in t.pending:
            p = PendingLink(seq, agent, to_agent, to_event, relation, int(e["received_at"]))
            self._pending.append(p)
            self._pending_by_target.setdefault((to_agent, to_event), []).append(p)
        if self.on_adopt is not None:
            self.on_adopt(c)

    def _append(self, seq: int, entry_hash: bytes | None) -> None:
        assert seq == self._tree.size, (seq, self._tree.size)
        self._history.append(entry_hash or records.ZERO_HASH)
        self._journal.append({"e": [seq, None if entry_hash is None else entry_hash.hex()]})

    def _edge(self, edge: Edge) -> None:
        self.graph.add(edge)
        self._journal.append({"g": [edge.from_seq, edge.from_agent, edge.to_seq, edge.to_agent, edge.relation]})

    def hash_at(self, seq: int) -> bytes | None:
        """entry_hash of integrated entry ``seq`` (None: unknown, inside a gap)."""
        return self._hash_at(seq)

    def _hash_at(self, seq: int) -> bytes | None:
        if not 0 <= seq < self._tree.size or self._in_hole(seq):
            return None
        return self._history.hash_at(seq)

    def _in_gap(self, seq: int) -> bool:
        """True for a missing entry (a placeholder), whether its hash is known or not."""
        return any(first <= seq <= last for first, last in self._gaps)

    def _in_hole(self, seq: int) -> bool:
        """True for a missing entry whose hash is unknown."""
        return any(first <= seq < last for first, last in self._gaps)

    def _gap_after(self, seq: int) -> bool:
        return any(last > seq for _, last in self._gaps)

    def _dangling(self, now_seq: int, now_us: int) -> list[Finding]:
        """[8] pending links whose grace period (ledger time ``now_us`` and/or entries) has run out."""
        out = []
        cfg = self.config
        while self._pending:
            p = self._pending[0]
            if p.done:
                self._pending.popleft()
                continue
            late_s = cfg.link_grace_seconds is None or (now_us - p.since_us) / 1e6 > cfg.link_grace_seconds
            late_n = cfg.link_grace_entries is None or now_seq - p.from_seq > cfg.link_grace_entries
            if not (late_s and late_n):
                break
            self._pending.popleft()
            p.done = True
            waiting = self._pending_by_target.get((p.to_agent, p.to_event), [])
            if p in waiting:
                waiting.remove(p)
                if not waiting:
                    del self._pending_by_target[(p.to_agent, p.to_event)]
            out.append(Finding.make(
                Kind.LINK_DANGLING, f"entry {p.from_seq}: link to {p.to_agent}/{p.to_event} is still unresolved "
                f"after {now_seq - p.from_seq} entries and {(now_us - p.since_us) / 1e6:.0f}s",
                seq=p.from_seq, agent_id=p.from_agent, to_agent=p.to_agent, to_event=p.to_event))
        return out

    # --- checkpoints and anchors ---------------------------------------------------------------------
    def _drain_queue(self) -> list[Finding]:
        out: list[Finding] = []
        while self._queue:
            item = self._queue[0]
            if item.name == "Checkpoint":
                size = item.record["tree_size"]
                if size > self.position:
                    break  # waits for its entries; later records wait behind it (arrival order)
            self._queue.popleft()
            out += self._evaluate_queued(item)
        return out

    def _evaluate_queued(self, item: CheckedCheckpoint) -> list[Finding]:
        """[6] for a record taken off the queue: a checkpoint that covers the tentative head
        (size <= position) integrates it first, whoever settles the queue."""
        if item.name == "Checkpoint" and item.record["tree_size"] > self._tree.size:
            self._finalize_tentative()
        return self._evaluate(item)

    def _evaluate(self, item: CheckedCheckpoint) -> list[Finding]:
        if item.name == "TimestampAnchor":
            return self._evaluate_anchor(item)
        if item.name == "NoteSignature":
            return self._evaluate_note_signature(item)
        self.stats.checkpoints_seen += 1
        rec = item.record
        size, root, head = rec["tree_size"], bytes(rec["root_hash"]), bytes(rec["chain_head"])
        where = {"seq": size - 1 if size else None, "tree_size": size, **at_offset(item.offset, CHECKPOINTS)}
        self._history.add_checkpoint_body(item.body_hash, (size, bytes(rec["body"]), rec["created_at"]))
        if not self._history.persistent:
            self._journal.append({"b": [size, rec["created_at"], base64.b64encode(bytes(rec["body"])).decode()]})
        last = self._last_cp
        unverifiable = any(first < size and first < last for first, last in self._gaps)
        ours = None if unverifiable else (self._tree.root(size), self._hash_at(size - 1) if size else records.ZERO_HASH)
        if last is not None and size <= last.tree_size:  # [6] tree sizes never shrink, roots never change
            if (size == last.tree_size and (root, head) == (last.root, last.chain_head)) or (ours == (root, head)):
                return []
            if unverifiable:
                self.stats.checkpoints_unverifiable += 1
                return []
            return [Finding.make(Kind.CHECKPOINT_INCONSISTENT,
                                 f"checkpoint of size {size} contradicts the verified checkpoint of size {last.tree_size}",
                                 root=root, verified_size=last.tree_size, verified_root=last.root,
                                 computed_root=ours[0] if ours else None, **where)]
        if unverifiable:
            self.stats.checkpoints_unverifiable += 1
            return []
        if ours != (root, head):
            return [Finding.make(Kind.CHECKPOINT_ROOT_MISMATCH,
                                 f"checkpoint of size {size} does not match the entries "
                                 f"({'root' if ours[0] != root else 'chain head'} differs)",
                                 expected_root=ours[0], got_root=root, expected_head=ours[1], got_head=head, **where)]
        if last is not None:
            try:
                merkle.verify_consistency(last.tree_size, size, last.root, root,
                                          self._tree.consistency_proof(last.tree_size, size))
            except ProofError as exc:
                return [Finding.from_error(Kind.CHECKPOINT_INCONSISTENT, exc, **where)]
        self._last_cp = _CheckpointHead(size, root, head, rec["created_at"])
        self._origin = rec["origin"]
        self.stats.checkpoints_verified += 1
        self._journal.append({"c": [size, root.hex(), head.hex(), rec["created_at"]]})
        return []

    def _evaluate_anchor(self, item: CheckedCheckpoint) -> list[Finding]:
        rec = item.record
        body_hash = bytes(rec["body_hash"])
        known = self._history.checkpoint_body(body_hash)
        where = {"tree_size": rec["tree_size"], "tsa": rec["timestamp"]["tsa"], **at_offset(item.offset, CHECKPOINTS)}
        if known is None:
            if body_hash in self._rejected_bodies:
                return []  # the checkpoint itself was reported
            return [Finding.make(Kind.TIMESTAMP_INVALID, "timestamp anchor for a checkpoint this ledger does not have",
                                 body_hash=body_hash, **where)]
        size, body, created_at = known
        if size != rec["tree_size"]:
            return [Finding.make(Kind.TIMESTAMP_INVALID, f"anchor names tree size {rec['tree_size']}, "
                                 f"its checkpoint has {size}", checkpoint_size=size, **where)]
        if self.config.tsa_ca is None:
            self.stats.timestamps_unverified += 1
            return []
        try:
            info = verify_timestamp(bytes(rec["timestamp"]["token"]), body, self.config.tsa_ca)
        except TimestampError as exc:
            return [Finding.from_error(Kind.TIMESTAMP_INVALID, exc, **where)]
        self.stats.timestamps_verified += 1
        gen = info.gen_time.timestamp()
        where["gen_time"] = info.gen_time.isoformat()
        if gen < created_at / 1e6 - self.config.clock_skew_seconds:
            return [Finding.make(Kind.TIMESTAMP_OUT_OF_ORDER, f"token for checkpoint {size} predates the checkpoint",
                                 created_at=created_at, **where)]
        newest = self._last_gen.get(info.tsa_subject)
        self._last_gen[info.tsa_subject] = max(gen, newest or gen)
        if newest is not None and gen < newest:
            return [Finding.make(Kind.TIMESTAMP_OUT_OF_ORDER, f"token for checkpoint {size} is older than an earlier "
                                 f"token from the same TSA ({newest - gen:.0f}s back)",
                                 previous_gen_time=newest, tsa_subject=info.tsa_subject, **where)]
        return []

    def _evaluate_note_signature(self, item: CheckedCheckpoint) -> list[Finding]:
        """[6] a signed-note line (the log's Ed25519 one or a witness's cosignature) over a
        checkpoint body this ledger has; lines of keys not configured are ignored (C2SP)."""
        rec = item.record
        witness = rec["role"] == "witness"
        kind = Kind.COSIGNATURE_INVALID if witness else Kind.CHECKPOINT_BAD_SIGNATURE
        where = {"tree_size": rec["tree_size"], "name": rec["name"], **at_offset(item.offset, CHECKPOINTS)}
        verifier = note_signature_key(rec, self.config)
        if verifier is None:
            self.stats.note_signatures_unknown += 1
            return []
        known = self._history.checkpoint_body(bytes(rec["body_hash"]))
        if known is None:
            if bytes(rec["body_hash"]) in self._rejected_bodies:
                return []  # the checkpoint itself was reported
            return [Finding.make(kind, "note signature for a checkpoint this ledger does not have",
                                 body_hash=bytes(rec["body_hash"]), reason="unknown_checkpoint", **where)]
        size, body, _ = known
        if size != rec["tree_size"]:
            return [Finding.make(kind, f"note signature names tree size {rec['tree_size']}, its checkpoint has {size}",
                                 checkpoint_size=size, reason="size_mismatch", **where)]
        try:
            verifier.verify(body, note_signature_line(rec))
        except VerificationError as exc:
            return [Finding.from_error(kind, exc, key_type=verifier.kind, **where)]
        if not witness:
            self.stats.note_signatures_verified += 1
            return []
        self.stats.cosignatures_verified += 1
        latest = self.stats.witnesses
        latest[verifier.name] = max(size, latest.get(verifier.name, 0))
        return []

    def check_peer_checkpoint(self, record: tuple[int, bytes], source: str) -> list[Finding]:
        """[6] a checkpoint seen outside this ledger's topics (another copy of the topics, a
        bundle, a witness's log): if our trusted key signed it for our origin, it must agree
        with this ledger's tree at its size, else the signer shows two histories (a split
        view). Call it once the ledger is read: a larger peer checkpoint is only counted."""
        claim = self._peer_claim(record, source)
        found = None if claim is None else self._compare_peer(claim)
        if claim is not None and found is None:
            self.stats.peer_checkpoints_beyond += 1
        return self._record(found or [])

    def feed_peer_checkpoints(self, batch: Sequence[tuple[int, bytes]], source: str) -> list[Finding]:
        """A live verifier's run of another copy's ``checkpoints`` records: each claim of our
        signer is held until this ledger's tree reaches its size, then compared as
        :meth:`check_peer_checkpoint` does (at most MAX_PEER_PENDING wait)."""
        for record in batch:
            if record[0] < self.next_offset.get(PEERS, 0):
                continue
            self.next_offset[PEERS] = record[0] + 1
            claim = self._peer_claim(record, source)
            if claim is not None:
                self._peers.append(claim)
                if len(self._peers) > MAX_PEER_PENDING:
                    self._peers.popleft()
                    self.stats.peer_checkpoints_dropped += 1
        return self._record(self._drain_peers())

    def _peer_claim(self, record: tuple[int, bytes], source: str) -> _PeerClaim | None:
        c = check_checkpoint_record(record, self.config)
        if c.rejection is not None or c.name != "Checkpoint":
            return None  # not a claim of our signer about our log
        rec = c.record
        origin = self.config.origin or self._origin
        if origin is not None and rec["origin"] != origin:
            return None
        self.stats.peer_checkpoints_checked += 1
        return _PeerClaim(record[0], rec["tree_size"], bytes(rec["root_hash"]), rec["origin"], rec["key_id"], source)

    def _compare_peer(self, p: _PeerClaim) -> list[Finding] | None:
        """[] if it agrees, a split_view finding if not, None while this ledger is smaller."""
        if p.size > self._tree.size or any(first < p.size for first, _ in self._gaps):
            return None
        ours = self._tree.root(p.size)
        if ours == p.root:
            return []
        return [Finding.make(
            Kind.SPLIT_VIEW, f"a checkpoint of size {p.size} signed by our signer on {p.source} has another root "
            f"than this ledger's tree of that size: the signer shows two histories",
            seq=p.size - 1 if p.size else None, tree_size=p.size, peer_root=p.root, our_root=ours,
            peer_source=p.source, peer_offset=p.offset, key_id=p.key_id)]

    def _drain_peers(self) -> list[Finding]:
        out: list[Finding] = []
        waiting: deque[_PeerClaim] = deque()
        for p in self._peers:
            found = self._compare_peer(p)
            if found is None:
                waiting.append(p)
            else:
                out += found
        self._peers = waiting
        return out

    @property
    def witnessed_size(self) -> int:
        """The largest checkpoint size the configured quorum of witnesses has cosigned."""
        return self.config.witnessed_size(self.stats.witnesses)

    # --- incidents ---------------------------------------------------------------------------------
    def _reject(self, topic: str, finding: Finding) -> list[Finding]:
        """A run of rejected records of one kind on one topic is one incident."""
        if self._last_rejection[topic] == finding.kind:
            self.stats.suppressed += 1
            return []
        self._last_rejection[topic] = finding.kind
        return [finding]

    def _record(self, findings: list[Finding]) -> list[Finding]:
        for f in findings:
            self.stats.findings[f.kind.value] += 1
        return findings

    # --- persistence (pure: the caller stores what these return) -----------------------------------
    def drain_journal(self) -> list[dict[str, Any]]:
        """Append-only records of what was integrated since the last call (entries, holes,
        graph edges, verified checkpoints). Replayed by :meth:`restore`."""
        out, self._journal = self._journal, []
        return out

    def export_state(self) -> dict[str, Any]:
        """Everything else, small: offsets, the tentative head, pending work, counters.

        Valid together with every journal record drained so far (drain first)."""
        def raw(c: CheckedEntry | CheckedCheckpoint | None) -> list | None:
            return None if c is None else [c.offset, base64.b64encode(c.raw).decode()]

        return {
            "version": STATE_VERSION,
            "next_offset": dict(self.next_offset),
            "integrated": self._tree.size,
            "tentative": raw(self._tentative.checked if self._tentative else None),
            "candidate": raw(self._candidate),
            "queue": [raw(c) for c in self._queue],
            "pending_links": [[p.from_seq, p.from_agent, p.to_agent, p.to_event, p.relation, p.since_us]
                              for p in self._pending if not p.done],
            "ledger_time": self._ledger_time,
            "last_gen": self._last_gen,
            "rejected_bodies": [b.hex() for b in self._rejected_bodies],
            "origin": self._origin,
            "peers": [[p.offset, p.size, p.root.hex(), p.origin, p.key_id, p.source] for p in self._peers],
            "last_rejection": {k: (v.value if v else None) for k, v in self._last_rejection.items()},
            "stats": self.stats.to_dict(),
            # a persistent history's journal holds no edges: the graph's counts travel here
            **({"graph": self.graph.export()} if self._history.persistent else {}),
        }

    @classmethod
    def restore(cls, config: CheckerConfig, state: Mapping[str, Any], journal: Iterable[Mapping[str, Any]],
                history: History | None = None) -> "Checker":
        """Rebuild a checker from its journal and state, re-checking only the few records
        kept whole (tentative head, fork candidate, queued checkpoints). With a persistent
        ``history`` (already at the state's size), the journal's per-entry records are not
        needed: give it only the others (holes, checkpoint bodies, verified checkpoints)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"verifier state version {state.get('version')} is not {STATE_VERSION}")
        ch = cls(config, history=history)
        for rec in journal:
            ch._replay(rec)
        ch._journal = []
        if ch._tree.size != state["integrated"]:
            raise ValueError(f"journal holds {ch._tree.size} entries, state expects {state['integrated']}")
        ch.next_offset = {k: int(v) for k, v in state["next_offset"].items()}
        ch._ledger_time = None if state["ledger_time"] is None else int(state["ledger_time"])
        ch._last_gen = {k: float(v) for k, v in state["last_gen"].items()}
        ch._rejected_bodies = dict.fromkeys(bytes.fromhex(b) for b in state["rejected_bodies"])
        ch._origin = state.get("origin")
        ch._peers = deque(_PeerClaim(o, s, bytes.fromhex(r), origin, k, src) for o, s, r, origin, k, src in state.get("peers", []))
        ch._last_rejection = {k: (Kind(v) if v else None) for k, v in state["last_rejection"].items()}
        if "graph" in state:
            ch.graph.restore(state["graph"])
        stats = dict(state["stats"])
        findings = Counter(stats.pop("findings", {}))
        ch.stats = Stats(**stats, findings=findings)
        for p in state["pending_links"]:
            link = PendingLink(*p)
            ch._pending.append(link)
            ch._pending_by_target.setdefault((link.to_agent, link.to_event), []).append(link)

        def unpack(item: list) -> tuple[int, bytes]:
            return int(item[0]), base64.b64decode(item[1])

        if state["tentative"]:
            checked = check_entry(unpack(state["tentative"]), config)
            if checked.rejection is None:
                t = _Tentative(checked, [], [])
                t.edges, t.pending, _ = ch._check_links(checked.entry)
                ch._tentative = t
        if state["candidate"]:
            checked = check_entry(unpack(state["candidate"]), config)
            ch._candidate = checked if checked.rejection is None else None
        for item in state["queue"]:
            ch._queue.append(check_checkpoint_record(unpack(item), config))
        return ch

    def _replay(self, rec: Mapping[str, Any]) -> None:
        if "e" in rec:
            if self._history.persistent:
                raise ValueError("per-entry journal records given to a checker with a persistent history")
            seq, hex_hash = rec["e"]
            h = None if hex_hash is None else bytes.fromhex(hex_hash)
            self._append(seq, h)
            if "a" in rec:
                self._history.set_agent(rec["a"], (rec["as_"] + 1, h, seq))
                self._history.add_event(rec["ev"], seq, rec["a"])
        elif "gap" in rec:
            self._gaps.append((rec["gap"][0], rec["gap"][1]))
        elif "g" in rec and not self._history.persistent:
            self.graph.add(Edge(*rec["g"]))
        elif "b" in rec:
            size, created, body = rec["b"]
            body_bytes = base64.b64decode(body)
            self._history.add_checkpoint_body(hashlib.sha256(body_bytes).digest(), (size, body_bytes, created))
        elif "c" in rec:
            size, root, head, created = rec["c"]
            self._last_cp = _CheckpointHead(size, bytes.fromhex(root), bytes.fromhex(head), created)
