"""The verifier's batch ring (verifier_worker/batch_ring.py) between two real processes."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from ledgerstream.verifier_worker.batch_ring import BatchRing, RingBatch, RingReader

pytestmark = pytest.mark.unit
_reader: RingReader | None = None


def _attach(pid: int, fd: int, size: int, slot_bytes: int) -> None:
    global _reader
    _reader = RingReader(pid, fd, size, slot_bytes)


def _read(ref: RingBatch) -> list[tuple[str, int, bytes]]:
    assert _reader is not None
    return _reader.read(ref)


def test_batches_cross_to_another_process_byte_for_byte() -> None:
    ring = BatchRing(slots=2, slot_bytes=256 * 1024)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_attach, os.getpid(), ring.fd, ring.size, ring.slot_bytes).result()
        for round_ in range(5):  # slots are reused: later batches overwrite earlier ones
            batch = [("entries", 100 * round_ + i, os.urandom(1 + 997 * i)) for i in range(20)]
            batch.append(("checkpoints", round_, b""))
            ref = ring.put(batch)
            assert ref is not None
            got = pool.submit(_read, ref).result()
            assert got == batch and all(type(raw) is bytes for _, _, raw in got)
            ring.release(ref)
    ring.close()


def test_a_batch_that_cannot_use_a_slot_is_left_to_the_pipe() -> None:
    ring = BatchRing(slots=2, slot_bytes=1000)
    assert ring.put([("entries", 0, bytes(1001))]) is None  # larger than a slot
    first, second = ring.put([("entries", 0, bytes(1000))]), ring.put([("entries", 1, b"x")])
    assert first is not None and second is not None and first.slot != second.slot
    assert ring.put([("entries", 2, b"y")]) is None  # every slot busy
    ring.release(first)
    again = ring.put([("entries", 2, b"y")])
    assert again is not None and again.slot == first.slot
    ring.close()


def test_the_reader_cannot_open_a_ring_that_is_not_there() -> None:
    with pytest.raises(OSError):
        RingReader(os.getpid(), 987654, 4096, 4096)
