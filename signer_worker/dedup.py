"""The signer's dedup window: its last ``horizon`` events in memory fixed at start.

Dedup and link resolution ask one question of the recent past: "which entry holds
event_id X?". The window answers it for the last ``horizon`` seqs (an event is entry
``seq``, so they are contiguous) from flat columns indexed by ``seq % horizon`` (the
event's keyed-hash fingerprints, entry hash, payload commitment, agent and action type)
and an open-addressing table of ``2**k >= 2 * horizon`` slots (fingerprint, seq) with
linear probing and backward-shift deletion. All of it is allocated, and touched, with the
first event remembered: about 120 bytes per event of horizon, whatever the ledger's size, where a
dict of Python objects grew to ~520 bytes per event (docs/signer.md "Dedup").

An event id is hashed with BLAKE2b-128 under a key drawn at start: 64 bits pick the slot,
the other 64 confirm the match, so a false match needs a 128-bit collision and nobody
outside the process can aim event ids at one slot. Event ids themselves are kept only
for the events a snapshot has not written yet (``ids_since``), which snapshots need in
their dedup chunks; ``release_ids`` drops them once a snapshot covers them.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import os
from array import array
from collections import deque
from typing import Iterable, NamedTuple

log = logging.getLogger("ledgerstream.signer")
_HASH = 32


class Known(NamedTuple):
    """What the signer remembers of a sequenced event (dedup and link resolution)."""

    agent_id: str
    seq: int
    entry_hash: bytes
    payload_hash: bytes
    action_type: str


class DedupWindow:
    """Event id -> :class:`Known` for the last ``horizon`` seqs, in fixed memory."""

    def __init__(self, horizon: int, *, keep_ids: bool = True) -> None:
        if horizon < 1:
            raise ValueError(f"the dedup horizon must be at least 1, got {horizon}")
        self.horizon = horizon
        self.start = 0  # oldest seq held
        self.end = 0    # next seq
        self._key = os.urandom(16)
        self._mask = (1 << max(4, (2 * horizon - 1).bit_length())) - 1
        self._allocated = False
        self._names: list[str] = []  # agent ids and action types, each once
        self._name_ids: dict[str, int] = {}
        self._keep_ids = keep_ids
        self._ids: deque[str] = deque()
        self._ids_from = 0
        self._last: tuple[str, int, int] = ("", 0, 0)

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

    def __len__(self) -> int:
        return self.end - self.start

    # --- reads -----------------------------------------------------------------------------------
    def get(self, event_id: str) -> Known | None:
        """The event's entry if it is one of the last ``horizon``."""
        if not self._allocated:
            return None
        slot = self._find(*self._hash(event_id))
        return None if slot < 0 else self._known(self._slot_seq[slot])

    def knowns(self) -> list[Known]:
        """Every entry held, oldest first (what a recovery must reproduce)."""
        return [self._known(s) for s in range(self.start, self.end)]

    def ids_since(self, seq: int) -> list[tuple[str, Known]]:
        """The events from ``seq`` on whose ids are still kept (those no snapshot covers yet)."""
        first = max(seq, self._ids_from, self.start)
        ids = itertools.islice(self._ids, first - self._ids_from, None) if self._keep_ids else ()
        return [(event_id, self._known(s)) for s, event_id in zip(range(first, self.end), ids)]

    # --- writes ----------------------------------------------------------------------------------
    def add(self, event_id: str, known: Known) -> None:
        """Remember entry ``known.seq`` (the next seq); the oldest leaves once ``horizon`` are held."""
        if not self._allocated:
            self._allocate()
        seq = known.seq
        if seq != self.end:
            if len(self):
                log.warning("dedup window: entry %d does not follow %d; the window restarts there", seq, self.end - 1)
            self._clear(seq)
        if len(self) == self.horizon:
            self._evict()
        h1, fp = self._hash(event_id)
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
        self.end = seq + 1
        if self._keep_ids:
            if not self._ids:
                self._ids_from = seq
            self._ids.append(event_id)
            if len(self._ids) > self.horizon:  # beyond the window: no snapshot needs them
                self._ids.popleft()
                self._ids_from += 1

    def load(self, events: Iterable[tuple[str, Known]]) -> None:
        """Take a snapshot's window (its ids are written already: none kept)."""
        for event_id, known in events:
            self.add(event_id, known)
        self._ids.clear()
        self._ids_from = self.end

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
        d = int.from_bytes(hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=16,
                                           key=self._key).digest(), "little")
        h1, fp = (d & 0xFFFF_FFFF_FFFF_FFFF) or 1, d >> 64
        self._last = (event_id, h1, fp)
        return h1, fp

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
        self._slot_key = array("Q", [0]) * (self._mask + 1)
        self._ids.clear()
        self.start = self.end = self._ids_from = seq
