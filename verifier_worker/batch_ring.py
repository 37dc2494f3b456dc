"""Record batches from the faust process to the checker process through shared memory.

Sent through the process pool's pipe, a batch of 1,000 3.8 KB entries was pickled, written
in 64 KB pieces, read back into a growing buffer and unpickled: ≈13 µs of CPU per entry
across the two processes, an eighth of a worker's whole cost. Here the faust process copies
the records into one of a few fixed slots of an anonymous shared file (``memfd``) and sends
only where they lie; the checker process copies them out again. A slot is reused once the
checker's call for its batch has returned (the caller says so with :meth:`BatchRing.release`).

A batch that does not fit a slot, or arrives while every slot is busy, goes through the pipe
as before (:meth:`BatchRing.put` returns None). Linux only (``memfd_create``, and the child
opens the parent's descriptor through ``/proc``); elsewhere, or when the child cannot open
it, the worker uses the pipe for every batch.
"""
from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Sequence

from ledgerstream.verifier_worker.reader import Record

SLOTS = 6                    # more than the batches a worker has in flight (app.IN_FLIGHT + 1)
SLOT_BYTES = 8 * 1024 * 1024  # 1,000 entries of 3.8 KB take half; pages are only used when written


@dataclass(frozen=True)
class RingBatch:
    """Where a batch lies in the ring: what crosses the pipe instead of the records."""

    slot: int
    roles: tuple[str, ...]
    offsets: tuple[int, ...]
    lengths: tuple[int, ...]


class BatchRing:
    """The faust process's side: owns the shared file and its slots."""

    def __init__(self, slots: int = SLOTS, slot_bytes: int = SLOT_BYTES) -> None:
        self.slot_bytes = slot_bytes
        self.size = slots * slot_bytes
        self.fd = os.memfd_create("ledgerstream-verifier-batches", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, self.size)
            self._map = mmap.mmap(self.fd, self.size)
        except OSError:
            os.close(self.fd)
            raise
        self._free = list(range(slots))

    def put(self, batch: Sequence[Record]) -> RingBatch | None:
        """Copy ``batch`` into a free slot; None when it has to travel through the pipe."""
        if not self._free or sum(len(raw) for _, _, raw in batch) > self.slot_bytes:
            return None
        slot = self._free.pop()
        at = slot * self.slot_bytes
        for _, _, raw in batch:
            self._map[at:at + len(raw)] = raw
            at += len(raw)
        return RingBatch(slot, tuple(role for role, _, _ in batch), tuple(offset for _, offset, _ in batch),
                         tuple(len(raw) for _, _, raw in batch))

    def release(self, ref: RingBatch) -> None:
        """The checker process is done with ``ref``'s slot (its call returned)."""
        self._free.append(ref.slot)

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)


class RingReader:
    """The checker process's side: the same shared file, opened through the parent's descriptor."""

    def __init__(self, owner_pid: int, fd: int, size: int, slot_bytes: int) -> None:
        handle = os.open(f"/proc/{owner_pid}/fd/{fd}", os.O_RDONLY)
        try:
            self._map = mmap.mmap(handle, size, prot=mmap.PROT_READ)
        finally:
            os.close(handle)
        self.slot_bytes = slot_bytes

    def read(self, ref: RingBatch) -> list[Record]:
        out: list[Record] = []
        at = ref.slot * self.slot_bytes
        for role, offset, length in zip(ref.roles, ref.offsets, ref.lengths):
            out.append((role, offset, self._map[at:at + length]))
            at += length
        return out
