"""The signer's dedup window: its last ``horizon`` events in memory fixed at start.

Dedup and link resolution ask one question of the recent past: "which entry holds
event_id X?". The window answers it for the last ``horizon`` seqs (an event is entry
``seq``, so they are contiguous) from flat columns indexed by ``seq % horizon`` (the
event's keyed-hash fingerprints, entry hash, payload commitment, agent and action type)
and an open-addressing table of ``2**k >= 2 * horizon`` slots (fingerprint, seq) with
linear probing and backward-shift deletion. All of it is allocated, and touched, with the
first event remembered: about 120 bytes per event of horizon, whatever the ledger's size, where a
dict of Python objects grew to ~520 bytes per event (docs/signer.md "Dedup").

An event id gets two 64-bit fingerprints from a keyed hash (Python's SipHash-1-3 string hash
of the id and of the id + NUL under the interpreter's random key, or BLAKE2b-128 under a key
drawn at start when PYTHONHASHSEED fixes that key): one picks the slot, the other confirms the
match, so a false match needs a 128-bit collision and nobody outside the process can aim
event ids at one slot. Event ids themselves are kept only
for the events a snapshot has not written yet (``columns_since``), which snapshots need in
their dedup chunks; ``release_ids`` drops them once a snapshot covers them.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import os
from array import array
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple

import numpy as np

try:  # compiled at install time when a C compiler is present (setup.py, optional)
    from ledgerstream.signer_worker import _dedup_table
except ImportError:  # pragma: no cover - depends on the install
    _dedup_table = None

log = logging.getLogger("ledgerstream.signer")
_HASH = 32
_U64 = 0xFFFF_FFFF_FFFF_FFFF
#: Python's str hash is SipHash-1-3 under a 128-bit key drawn at interpreter start (hash-flooding
#: resistant) unless PYTHONHASHSEED fixes the key; then the window uses keyed BLAKE2b instead
KEYED_STR_HASH = os.environ.get("PYTHONHASHSEED", "random") == "random"


class Known(NamedTuple):
    """What the signer remembers of a sequenced event (dedup and link resolution)."""

    agent_id: str
    seq: int
    entry_hash: bytes
    payload_hash: bytes
    action_type: str


@dataclass(frozen=True)
class Columns:
    """A run of consecutive events as columns: a dedup chunk's layout (snapshots.py), read
    into the window without an object per event. The event ids stay one newline-separated
    text until they are hashed, run by run: a million id strings alive at once would pin
    their allocator arenas after the load (the RSS after recovery would grow with the
    window's fill, docs/signer.md "Dedup")."""

    first_seq: int
    ids_text: str  # the event ids joined by "\n" (an id holds no control character)
    agents: list[str]
    actions: list[str]
    entry_hashes: bytes  # 32 bytes per event
    payload_hashes: bytes

    @classmethod
    def of(cls, first_seq: int, event_ids: list[str], agents: list[str], actions: list[str],
           entry_hashes: bytes, payload_hashes: bytes) -> Columns:
        return cls(first_seq, "\n".join(event_ids), agents, actions, entry_hashes, payload_hashes)

    def __len__(self) -> int:
        return len(self.agents)

    @property
    def event_ids(self) -> list[str]:
        return self.ids_text.split("\n") if self.agents else []

    def split(self, most: int) -> list[Columns]:
        """Consecutive runs of at most ``most`` events (none for an empty run)."""
        ids = self.event_ids
        return [Columns.of(self.first_seq + i, ids[i:i + most], self.agents[i:i + most], self.actions[i:i + most],
                           self.entry_hashes[_HASH * i:_HASH * (i + most)],
                           self.payload_hashes[_HASH * i:_HASH * (i + most)])
                for i in range(0, len(self), most)]

    def events(self) -> list[tuple[str, Known]]:
        eh, ph = self.entry_hashes, self.payload_hashes
        return [(e, Known(a, self.first_seq + i, eh[_HASH * i:_HASH * (i + 1)], ph[_HASH * i:_HASH * (i + 1)], t))
                for i, (e, a, t) in enumerate(zip(self.event_ids, self.agents, self.actions))]


class DedupWindow:
    """Event id -> :class:`Known` for the last ``horizon`` seqs, in fixed memory."""

    def __init__(self, horizon: int, *, keep_ids: bool = True, str_hash: bool = KEYED_STR_HASH,
                 native: bool = True) -> None:
        """``str_hash``: fingerprint with Python's own string hash (see :data:`KEYED_STR_HASH`);
        ``native``: probe and write the table with the compiled ``_dedup_table`` when it is
        built (the same bytes as the Python methods here, the reference)."""
        if horizon < 1:
            raise ValueError(f"the dedup horizon must be at least 1, got {horizon}")
        self.horizon = horizon
        self.start = 0  # oldest seq held
        self.end = 0    # next seq
        self._key = os.urandom(16)
        self._str_hash = str_hash
        self._mask = (1 << max(4, (2 * horizon - 1).bit_length())) - 1
        self._allocated = False
        self._names: list[str] = []  # agent ids and action types, each once
        self._name_ids: dict[str, int] = {}
        self._keep_ids = keep_ids
        self._ids: deque[str] = deque()
        self._ids_from = 0
        self._last: tuple[str, int, int] = ("", 0, 0)
        self._native = native and _dedup_table is not None
        self._table: Any = None  # the compiled _dedup_table.Table over the arrays, once allocated

    def _allocate(self) -> None:
        """The whole window at once, written through (resident), when the first event comes:
        memory from then on does not depend on how many events follow."""
        horizon, slots = self.horizon, self._mask + 1
        self._slot_key = array("Q", [0]) * slots  # 0: empty (a fingerprint is never 0)
        self._slot_seq = array("q", [0]) * slots
        self._h1 = array("Q", [0]) * horizon
        self._fp = array("Q", [0]) * horizon
        self._entry = bytearray(_HASH * horizon)
        self._payload = bytearray(_HASH * horizon)
        self._agent = array("I", [0]) * horizon
        self._action = array("I", [0]) * horizon
        self._allocated = True
        self._bind()

    def _bind(self) -> None:
        """(Re)make the compiled table's views after the arrays were allocated or replaced."""
        if self._native:
            self._table = _dedup_table.Table(self._slot_key, self._slot_seq, self._h1, self._fp, self._entry,
                                             self._payload, self._agent, self._action, self._mask, self.horizon)

    def __len__(self) -> int:
        return self.end - self.start

    # --- reads -----------------------------------------------------------------------------------
    def get(self, event_id: str) -> Known | None:
        """The event's entry if it is one of the last ``horizon``."""
        if not self._allocated:
            return None
        h1, fp = self._hash(event_id)
        slot = self._table.find(h1, fp) if self._table is not None else self._find(h1, fp)
        return None if slot < 0 else self._known(self._slot_seq[slot])

    def knowns(self) -> list[Known]:
        """Every entry held, oldest first (what a recovery must reproduce)."""
        return [self._known(s) for s in range(self.start, self.end)]

    def columns_since(self, seq: int) -> Columns:
        """The events from ``seq`` on whose ids are still kept (those no snapshot covers yet),
        copied out of the window's columns as they are (a snapshot's dedup chunks)."""
        first = max(seq, self._ids_from, self.start)
        if not self._keep_ids or first >= self.end:
            return Columns.of(first, [], [], [], b"", b"")
        n = self.end - first
        ids = list(itertools.islice(self._ids, first - self._ids_from, None))
        names = self._names
        return Columns.of(first, ids, [names[i] for i in self._ring(self._agent, first, n)],
                          [names[i] for i in self._ring(self._action, first, n)],
                          self._ring_bytes(self._entry, first, n), self._ring_bytes(self._payload, first, n))

    def _ring(self, column: array, seq: int, n: int) -> array:
        """Items of seqs ``seq``..``seq + n - 1`` of a per-seq column (it may wrap)."""
        r = seq % self.horizon
        return column[r:r + n] if r + n <= self.horizon else column[r:] + column[:r + n - self.horizon]

    def _ring_bytes(self, column: bytearray, seq: int, n: int) -> bytes:
        r = seq % self.horizon
        if r + n <= self.horizon:
            return bytes(column[_HASH * r:_HASH * (r + n)])
        return bytes(column[_HASH * r:]) + bytes(column[:_HASH * (r + n - self.horizon)])

    # --- writes ----------------------------------------------------------------------------------
    def add(self, event_id: str, known: Known) -> None:
        """Remember entry ``known.seq`` (the next seq); the oldest leaves once ``horizon`` are held."""
        self.add_fields(event_id, known.agent_id, known.seq, known.entry_hash, known.payload_hash, known.action_type)

    def add_fields(self, event_id: str, agent_id: str, seq: int, entry_hash: bytes, payload_hash: bytes,
                   action_type: str) -> None:
        """:meth:`add` without a :class:`Known` (the signer's loop adds every entry: no object per event)."""
        if not self._allocated:
            self._allocate()
        if seq != self.end:
            if self.end > self.start:
                log.warning("dedup window: entry %d does not follow %d; the window restarts there", seq, self.end - 1)
            self._clear(seq)
        if self.end - self.start == self.horizon:
            self._evict()
        h1, fp = self._hash(event_id)
        if self._table is not None:
            name_ids = self._name_ids
            agent, action = name_ids.get(agent_id), name_ids.get(action_type)
            self._table.insert(seq, h1, fp, entry_hash, payload_hash,
                               self._name_id(agent_id) if agent is None else agent,
                               self._name_id(action_type) if action is None else action)
        else:
            self._insert(seq, h1, fp, Known(agent_id, seq, entry_hash, payload_hash, action_type))
        self.end = seq + 1
        if self._keep_ids:
            ids = self._ids
            if not ids:
                self._ids_from = seq
            ids.append(event_id)
            if len(ids) > self.horizon:  # beyond the window: no snapshot needs them
                ids.popleft()
                self._ids_from += 1

    def _insert(self, seq: int, h1: int, fp: int, known: Known) -> None:
        """Write seq's columns and its slot (the reference of ``_dedup_table.Table.insert``)."""
        r = seq % self.horizon
        self._h1[r], self._fp[r] = h1, fp
        self._entry[_HASH * r:_HASH * (r + 1)] = known.entry_hash
        self._payload[_HASH * r:_HASH * (r + 1)] = known.payload_hash
        self._agent[r], self._action[r] = self._name_id(known.agent_id), self._name_id(known.action_type)
        keys, seqs, mask, fps = self._slot_key, self._slot_seq, self._mask, self._fp
        slot = h1 & mask
        while True:  # to the id's slot (an id sequenced again names its newest entry) or the first empty one
            k = keys[slot]
            if k == 0:
                keys[slot] = h1
                break
            if k == h1 and fps[seqs[slot] % self.horizon] == fp:
                break
            slot = (slot + 1) & mask
        seqs[slot] = seq

    def load(self, runs: Iterable[Columns]) -> None:
        """Take a snapshot's window, consecutive runs of events oldest first (its ids are
        written already: none kept). Into an empty window the columns are copied and the
        table built with array operations: a million events in about a second."""
        runs = [r for r in runs if len(r)]
        if len(self) or not runs:
            for run in runs:
                for event_id, known in run.events():
                    self.add(event_id, known)
        else:
            self._load_columns(runs)
        self._ids.clear()
        self._ids_from = self.end

    def _load_columns(self, runs: list[Columns]) -> None:
        for i in range(1, len(runs)):  # a run that does not follow the one before restarts the window
            if runs[i].first_seq != runs[i - 1].first_seq + len(runs[i - 1]):
                log.warning("dedup window: the snapshot's events jump from %d to %d; the window restarts there",
                            runs[i - 1].first_seq + len(runs[i - 1]) - 1, runs[i].first_seq)
                return self._load_columns(runs[i:])
        if not self._allocated:
            self._allocate()
        total = sum(len(r) for r in runs)
        skip = max(0, total - self.horizon)  # only the last ``horizon`` events stay
        n, first = total - skip, runs[0].first_seq + skip
        h1, fp = np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.uint64)
        at = -skip  # where the next run's first id goes in h1/fp (negative: ids to drop)
        for run in runs:  # one run's id strings at a time (see Columns)
            ids = run.event_ids[max(0, -at):]
            if ids:
                to = max(0, at)
                h1[to:to + len(ids)], fp[to:to + len(ids)] = self._hash_many(ids)
            at += len(run)
        seqs = np.arange(first, first + n, dtype=np.int64)
        ring = seqs % self.horizon
        np.frombuffer(self._h1, dtype=np.uint64)[ring] = h1
        np.frombuffer(self._fp, dtype=np.uint64)[ring] = fp
        seq = runs[0].first_seq
        for run in runs:  # the hash columns: copied run by run into the ring (it may wrap)
            for column, data in ((self._entry, run.entry_hashes), (self._payload, run.payload_hashes)):
                self._copy_into_ring(column, memoryview(data), seq, first)
            seq += len(run)
        for column, name in ((self._agent, "agents"), (self._action, "actions")):
            values = [x for r in runs for x in getattr(r, name)][skip:]
            number = {x: self._name_id(x) for x in set(values)}
            np.frombuffer(column, dtype=np.uint32)[ring] = np.fromiter(map(number.__getitem__, values),
                                                                       dtype=np.uint32, count=n)
        newest = np.arange(n)
        ordered = np.sort(h1)
        if np.any(ordered[1:] == ordered[:-1]):  # an id sequenced twice (past an older horizon): keep the newest
            pairs = np.stack([h1, fp], axis=1)[::-1].copy()
            _, last = np.unique(pairs.view("V16").ravel(), return_index=True)
            newest = np.sort(n - 1 - last)
        self._build_table(h1[newest], seqs[newest])
        self.start, self.end = first, first + n

    def _copy_into_ring(self, column: bytearray, data: memoryview, seq: int, first: int) -> None:
        """32-byte values of seqs ``seq``.. into ``column``, dropping those before ``first``."""
        if seq < first:
            data, seq = data[_HASH * (first - seq):], first
        while len(data):
            r = seq % self.horizon
            take = min(len(data) // _HASH, self.horizon - r)
            column[_HASH * r:_HASH * (r + take)] = data[:_HASH * take]
            data, seq = data[_HASH * take:], seq + take

    def _build_table(self, h1: np.ndarray, seqs: np.ndarray) -> None:
        """Linear probing for many keys at once: each round, every key still waiting tries its
        next slot; of those that find it empty, the first takes it. A key only ever passes
        slots that were taken before it, as one-by-one inserts would."""
        keys = np.frombuffer(self._slot_key, dtype=np.uint64)
        values = np.frombuffer(self._slot_seq, dtype=np.int64)
        mask = np.uint64(self._mask)
        pos = (h1 & mask).astype(np.int64)
        claim = np.full(self._mask + 1, -1, dtype=np.int64)  # which waiting key got an empty slot this round
        won = np.zeros(len(h1), dtype=bool)
        waiting = np.arange(len(h1))
        while waiting.size:
            slots = pos[waiting]
            free = keys[slots] == 0
            contenders, at = waiting[free], slots[free]
            claim[at] = contenders  # of several keys for one slot, one write lands: that key takes it
            winners = contenders[claim[at] == contenders]
            keys[pos[winners]], values[pos[winners]] = h1[winners], seqs[winners]
            won[winners] = True
            waiting = waiting[~won[waiting]]
            pos[waiting] = (pos[waiting] + 1) & self._mask

    def release_ids(self, below: int) -> None:
        """A snapshot committed the events before ``below``: their ids are not needed again."""
        while self._ids and self._ids_from < below:
            self._ids.popleft()
            self._ids_from += 1

    def forget_ids(self) -> None:
        """No snapshots are written: keep no event ids from now on."""
        self._keep_ids = False
        self._ids.clear()
        self._ids_from = self.end

    # --- internals -------------------------------------------------------------------------------
    def _hash(self, event_id: str) -> tuple[int, int]:
        last = self._last
        if last[0] == event_id:
            return last[1], last[2]
        if self._str_hash:
            h1, fp = (hash(event_id) & _U64) or 1, hash(event_id + "\0") & _U64
            self._last = (event_id, h1, fp)
            return h1, fp
        d = int.from_bytes(hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=16,
                                           key=self._key).digest(), "little")
        h1, fp = (d & 0xFFFF_FFFF_FFFF_FFFF) or 1, d >> 64
        self._last = (event_id, h1, fp)
        return h1, fp

    def _hash_many(self, event_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_hash` of each id, as two arrays."""
        n = len(event_ids)
        if self._str_hash:
            h1 = np.fromiter(map(hash, event_ids), dtype=np.int64, count=n).view(np.uint64)
            h1[h1 == 0] = 1
            fp = np.fromiter((hash(e + "\0") for e in event_ids), dtype=np.int64, count=n).view(np.uint64)
            return h1, fp
        key, blake2b = self._key, hashlib.blake2b
        d = np.frombuffer(b"".join(blake2b(e.encode("utf-8", "surrogatepass"), digest_size=16, key=key).digest()
                                   for e in event_ids), dtype="<u8").reshape(len(event_ids), 2)
        h1 = d[:, 0].copy()
        h1[h1 == 0] = 1
        return h1, d[:, 1].copy()

    def _find(self, h1: int, fp: int) -> int:
        keys, seqs, mask, horizon = self._slot_key, self._slot_seq, self._mask, self.horizon
        slot = h1 & mask
        while True:
            k = keys[slot]
            if k == 0:
                return -1
            if k == h1 and self._fp[seqs[slot] % horizon] == fp:
                return slot
            slot = (slot + 1) & mask

    def _known(self, seq: int) -> Known:
        r = seq % self.horizon
        return Known(self._names[self._agent[r]], seq, bytes(self._entry[_HASH * r:_HASH * (r + 1)]),
                     bytes(self._payload[_HASH * r:_HASH * (r + 1)]), self._names[self._action[r]])

    def _name_id(self, name: str) -> int:
        found = self._name_ids.get(name)
        if found is None:
            found = self._name_ids[name] = len(self._names)
            self._names.append(name)
        return found

    def _evict(self) -> None:
        """Forget the oldest seq: delete its slot (unless its id now names a newer entry)."""
        seq = self.start
        self.start += 1
        if self._table is not None:
            self._table.evict(seq)
            return
        h1 = self._h1[seq % self.horizon]
        keys, seqs, mask = self._slot_key, self._slot_seq, self._mask
        hole = h1 & mask
        while keys[hole] and not (keys[hole] == h1 and seqs[hole] == seq):
            hole = (hole + 1) & mask
        if not keys[hole]:
            return
        probe = hole
        while True:  # backward-shift deletion: no tombstones, probe chains stay short
            probe = (probe + 1) & mask
            k = keys[probe]
            if not k:
                break
            home = k & mask
            if (hole - home) & mask < (probe - home) & mask:  # home is not in (hole, probe]: it may move back
                keys[hole], seqs[hole] = k, seqs[probe]
                hole = probe
        keys[hole] = 0

    def _clear(self, seq: int) -> None:
        self._table = None  # (its views of the old table go with it)
        self._slot_key = array("Q", [0]) * (self._mask + 1)
        self._bind()
        self._ids.clear()
        self.start = self.end = self._ids_from = seq
