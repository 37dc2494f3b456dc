"""Append-only arrays of 32-byte hashes in files, and the Merkle tree whose levels are such files.

A :class:`~ledgerstream.core.verify.History` that outlives its process (the ledger index's,
a verifier worker's) keeps entry hashes and tree levels here instead of in memory: only an
unflushed tail is in memory, every other read is an ``os.pread``, so memory stays flat and a
restart opens files instead of replaying a journal. The owner records the committed count
elsewhere (its database) and calls :meth:`SpilledHashes.sync` before that commit; at open,
anything a crash left beyond the committed count is cut off.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ledgerstream.core import merkle
from ledgerstream.core.verify.history import MemoryHistory

HASH = 32
#: unflushed bytes kept per file before they are written out
TAIL_BYTES = 1 << 20


class SpillIncomplete(ValueError):
    """A file holds fewer hashes than the committed state says: it was lost or cut."""


class SpilledHashes:
    """An append-only array of 32-byte hashes in a file, read like the ``bytearray`` the
    in-memory tree uses (``+=``, ``len`` in bytes, slices); only the unflushed tail is in memory."""

    def __init__(self, path: Path, count: int, *, fsync: bool = True) -> None:
        self.path = path
        self._fsync = fsync
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        on_disk = os.fstat(self._fd).st_size
        if on_disk < count * HASH:
            os.close(self._fd)
            raise SpillIncomplete(f"{path} holds {on_disk // HASH} hashes, the committed state {count}: "
                                  "the files are incomplete")
        if on_disk > count * HASH:
            os.ftruncate(self._fd, count * HASH)  # written after the last commit: not part of it
        self._flushed = count * HASH
        self._tail = bytearray()

    def __len__(self) -> int:
        return self._flushed + len(self._tail)

    def __iadd__(self, data: bytes) -> "SpilledHashes":
        self._tail += data
        if len(self._tail) >= TAIL_BYTES:
            self.flush()
        return self

    def __getitem__(self, item: slice) -> bytes:
        start, stop, _ = item.indices(len(self))
        if stop <= start:
            return b""
        f = self._flushed
        if start >= f:
            return bytes(self._tail[start - f:stop - f])
        head = os.pread(self._fd, min(stop, f) - start, start)
        return head if stop <= f else head + bytes(self._tail[:stop - f])

    def flush(self) -> None:
        if self._tail:
            os.pwrite(self._fd, self._tail, self._flushed)
            self._flushed += len(self._tail)
            self._tail = bytearray()

    def fsync(self) -> None:
        """Make what :meth:`flush` wrote durable (safe on another thread while this one appends)."""
        if self._fsync:
            os.fsync(self._fd)

    def sync(self) -> None:
        self.flush()
        self.fsync()

    def close(self) -> None:
        os.close(self._fd)


class SpilledTree(merkle.MerkleTree):
    """:class:`~ledgerstream.core.merkle.MerkleTree` whose level arrays are files: the same
    append, roots and proofs, with O(log n) ``pread`` per root or proof."""

    def __init__(self, directory: Path, size: int, *, fsync: bool = True) -> None:
        super().__init__()
        self._dir, self._fsync_files = directory, fsync
        self._size = size
        # level k holds size >> k nodes; level 0 always exists
        self._levels = [self._open(k, size >> k) for k in range(max(1, size.bit_length()))]  # type: ignore[misc]

    def _open(self, level: int, count: int) -> SpilledHashes:
        return SpilledHashes(self._dir / f"level-{level}", count, fsync=self._fsync_files)

    def _new_level(self, level: int) -> SpilledHashes:  # type: ignore[override]
        return self._open(level, 0)  # a level appears empty, its first node comes next

    def spilled_levels(self) -> list[SpilledHashes]:
        return self._levels  # type: ignore[return-value]


class SpilledHistory(MemoryHistory):
    """A persistent :class:`~ledgerstream.core.verify.History`: entry hashes and the Merkle
    levels in files under ``directory``; events, agent heads and checkpoint bodies evaluated
    since the last commit in memory. Subclasses answer older ones from their database
    (:meth:`event`, :meth:`agent`, :meth:`checkpoint_body`) and write the new ones in their commit.

    Commit protocol: :meth:`sync` before the database commit that records the size,
    :meth:`committed` after it.
    """

    persistent = True
    #: agent heads cached in memory at most (trimmed at commits; the rest come from the database)
    agent_cache = 100_000

    def __init__(self, directory: Path, size: int, *, fsync: bool = True) -> None:
        super().__init__()
        directory.mkdir(parents=True, exist_ok=True)
        self._spilled = SpilledHashes(directory / "hashes", size, fsync=fsync)
        try:
            self._spilled_tree = SpilledTree(directory, size, fsync=fsync)
        except BaseException:
            self._spilled.close()
            raise
        self._hashes, self._tree = self._spilled, self._spilled_tree  # type: ignore[assignment]
        # self._events, self._bodies: what was evaluated since the last commit (not yet rows);
        # self._agents: a cache of agent heads, authoritative for those not yet committed

    def files(self) -> list[SpilledHashes]:
        """The entry hashes and every tree level."""
        return [self._spilled, *self._spilled_tree.spilled_levels()]

    def sync(self) -> None:
        """Make every appended hash durable: called before the database commit."""
        for f in self.files():
            f.sync()

    def committed(self) -> None:
        """The batch's rows are in the database now: drop what they answer."""
        self._events.clear()
        self._bodies.clear()
        if len(self._agents) > self.agent_cache:
            self._agents.clear()

    def close(self) -> None:
        self._spilled.close()
        for level in self._spilled_tree.spilled_levels():
            level.close()


def durable_records(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The Checker's journal records that a SpilledHistory does not already hold (holes,
    checkpoint bodies, verified checkpoints: a few per checkpoint): what ``Checker.restore``
    needs besides it. Entries are in the history; graph edges' counts in the Checker's state."""
    return [r for r in records if "e" not in r and "g" not in r]


def durable_journal(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """:func:`durable_records` as the compact JSON lines their owners store."""
    return [json.dumps(r, separators=(",", ":")) for r in durable_records(records)]

