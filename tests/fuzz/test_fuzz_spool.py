"""Fuzz the spool reader: scan_segment on any bytes partitions the segment into frames that
are valid (checked here with struct/zlib, not with the spool code) and damaged ranges, and a
spool folder holding a fuzzed segment opens, quarantines the damage and yields only good bodies."""
from __future__ import annotations

import json
import struct
import tempfile
import zlib
from pathlib import Path

import pytest
import fuzz_profile  # noqa: F401  (the Hypothesis profile: bounded in CI, LEDGERSTREAM_FUZZ_EXAMPLES)
from hypothesis import given
from hypothesis import strategies as st

from fuzz_mutations import mutated
from ledgerstream.producers import spool

pytestmark = pytest.mark.unit


def _frame(body: bytes) -> bytes:
    return struct.pack(">2sII", b"LS", len(body), zlib.crc32(body)) + body


SEEDS = [b"".join(_frame(bytes([i]) * n) for n in (0, 1, 7, 40)) for i in range(4)]
_SEGMENTS = st.one_of(st.binary(max_size=400), mutated(SEEDS),
                      st.lists(st.one_of(st.binary(max_size=30).map(_frame), st.binary(max_size=12)), max_size=8)
                      .map(b"".join))


def _valid_frame(data: bytes, start: int, end: int) -> bool:
    if end - start < 10:
        return False
    magic, length, crc = struct.unpack(">2sII", data[start:start + 10])
    return magic == b"LS" and start + 10 + length == end and zlib.crc32(data[start + 10:end]) == crc


@given(_SEGMENTS)
def test_scan_segment_partitions_into_valid_frames_and_damage(segment: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "000000000001.seg")
        path.write_bytes(segment)
        frames, damaged = spool.scan_segment(path)
    ranges = sorted([(s, e) for s, e in frames] + [(s, e) for s, e, _ in damaged])
    position = 0
    for start, end in ranges:
        assert start == position and end > start
        position = end
    assert position == len(segment)
    assert all(_valid_frame(segment, s, e) for s, e in frames)


@given(_SEGMENTS)
def test_a_spool_with_a_fuzzed_segment_opens_and_yields_only_good_bodies(segment: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "agent")
        folder.mkdir()
        (folder / spool.META).write_text(json.dumps({"agent_id": "a", "format": 1}))
        (folder / "000000000001.seg").write_bytes(segment)
        frames, _ = spool.scan_segment(folder / "000000000001.seg")
        want = [segment[s + 10:e] for s, e in frames]
        sp = spool.Spool(folder)
        try:
            assert list(sp.records()) == want
        finally:
            sp.close()


def test_regression_resync_after_damage_is_linear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by fuzzing: a header every 10 bytes, each claiming the rest of the segment with a
    wrong CRC, made the scan CRC O(n^2) bytes (256 KiB took 8 s, a 16 MiB segment hours)."""
    n = 256 * 1024
    data = bytearray()
    while len(data) + 10 <= n:
        data += struct.pack(">2sII", b"LS", n - len(data) - 10, 1)
    data += bytes(n - len(data))
    path = tmp_path / "000000000001.seg"
    path.write_bytes(bytes(data))
    crc_bytes = 0

    class CountingZlib:
        @staticmethod
        def crc32(chunk: bytes) -> int:
            nonlocal crc_bytes
            crc_bytes += len(chunk)
            return zlib.crc32(chunk)

    monkeypatch.setattr(spool, "zlib", CountingZlib)
    frames, damaged = spool.scan_segment(path)
    assert frames == [] and [(s, e) for s, e, _ in damaged] == [(0, n)]
    assert crc_bytes <= 6 * n


def test_a_good_frame_after_damage_is_still_found(tmp_path: Path) -> None:
    good = _frame(b"payload")
    path = tmp_path / "000000000001.seg"
    path.write_bytes(b"LS\x00\x00\x00\x05\x00\x00\x00\x01hello" + b"junk" + good)
    frames, damaged = spool.scan_segment(path)
    assert frames == [(19, 19 + len(good))] and [(s, e) for s, e, _ in damaged] == [(0, 19)]
