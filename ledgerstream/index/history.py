"""The index Checker's per-entry memory, on disk: flat RSS and a restart in seconds at any size.

A verifier's Checker keeps ~100 bytes per entry in memory plus an event dictionary, and rebuilds
them at start from a journal with one record per entry. The index already stores every entry
in SQLite, so its Checker's :class:`~ledgerstream.core.verify.History` is:

- entry hashes and the Merkle tree's levels in append-only files of 32-byte hashes
  (``HISTORY_DIR/hashes``, ``HISTORY_DIR/level-<k>``), with only an unflushed tail in memory
  and every other read an ``os.pread``;
- event ids and agent heads answered from the ``entries`` table, with the entries integrated
  since the last commit (not yet rows) in memory, and a bounded cache of agent heads.

Crash safety follows the database: the files are flushed and fsynced before each commit
(:meth:`IndexHistory.sync`) and cut back at open to the committed size, which the state in the
database records; whatever a crash left beyond it is discarded.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ledgerstream.core import merkle
from ledgerstream.core.verify import AgentHead, MemoryHistory
from ledgerstream.core.verify.history import CheckpointBody
from ledgerstream.index.db import IndexOutdated

HASH = 32
#: unflushed bytes kept per file before they are written out
TAIL_BYTES = 1 << 20
#: agent heads cached in memory at most (trimmed at commits; the rest are read from the database)
AGENT_CACHE = 100_000


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
            raise IndexOutdated(f"{path} holds {on_disk // HASH} hashes, the index state {count}: the index "
                              "files are incomplete (rebuild: ledgerstream index run --reindex)")
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

    def sync(self) -> None:
        self.flush()
        if self._fsync:
            os.fsync(self._fd)

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


class IndexHistory(MemoryHistory):
    """The :class:`~ledgerstream.core.verify.History` of the index's Checker: MemoryHistory's
    rules over files and the database."""

    persistent = True

    def __init__(self, conn: sqlite3.Connection, directory: Path, size: int, *, fsync: bool = True) -> None:
        super().__init__()
        directory.mkdir(parents=True, exist_ok=True)
        self._conn = conn
        self._spilled = SpilledHashes(directory / "hashes", size, fsync=fsync)
        try:
            self._spilled_tree = SpilledTree(directory, size, fsync=fsync)
        except BaseException:
            self._spilled.close()
            raise
        self._hashes, self._tree = self._spilled, self._spilled_tree  # type: ignore[assignment]
        # self._events, self._bodies: events and checkpoints evaluated since the last commit (not yet rows);
        # self._agents: a cache of agent heads, authoritative for those not yet committed

    def event(self, event_id: str) -> tuple[int, str] | None:
        known = self._events.get(event_id)
        if known is not None:
            return known
        row = self._conn.execute(
            "SELECT seq, agent_id FROM entries WHERE event_id = ?1 OR event_id_reused = ?1 ORDER BY seq DESC LIMIT 1",
            (event_id,)).fetchone()
        return None if row is None else (int(row[0]), row[1])

    def checkpoint_body(self, body_hash: bytes) -> CheckpointBody | None:
        known = self._bodies.get(body_hash)
        if known is not None:
            return known
        row = self._conn.execute("SELECT tree_size, body, created_at FROM checkpoints WHERE body_sha256 = ? "
                                 "AND status != 'pending' ORDER BY topic_offset LIMIT 1", (body_hash,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]), int(row[2]))

    def agent(self, agent_id: str) -> AgentHead | None:
        head = self._agents.get(agent_id)
        if head is None:
            row = self._conn.execute("SELECT agent_seq, entry_hash, seq FROM entries WHERE agent_id = ? "
                                     "ORDER BY seq DESC LIMIT 1", (agent_id,)).fetchone()
            if row is None:
                return None
            head = self._agents[agent_id] = (int(row[0]) + 1, bytes(row[1]), int(row[2]))
        return head

    # --- commit protocol (index/core.py) ------------------------------------------------------------
    def sync(self) -> None:
        """Make every appended hash durable: called before the database commit."""
        self._spilled.sync()
        for level in self._spilled_tree.spilled_levels():
            level.sync()

    def committed(self) -> None:
        """The batch's rows are in the database now: drop what they answer."""
        self._events.clear()
        self._bodies.clear()
        if len(self._agents) > AGENT_CACHE:
            self._agents.clear()

    def close(self) -> None:
        self._spilled.close()
        for level in self._spilled_tree.spilled_levels():
            level.close()
