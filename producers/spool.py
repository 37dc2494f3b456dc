"""The on-disk spool: one agent's durable, append-only journal of encoded ActionEvents.

Layout of a spool folder (default ``$LEDGERSTREAM_HOME/spool/<agent_id>/``)::

    spool.json           {"agent_id": ..., "format": 1}
    lock                 flock()ed by the one process that owns the spool (agent or sync)
    000000000001.seg     frames: b"LS" | u32 length | u32 CRC-32 of body | body (Avro record)
    cursor.json          {"segment": s, "offset": o}: every frame before it was delivered
    quarantine/          corrupt segments, copied whole with a .json reason beside them

Records are appended in emit order and delivered in that order; the cursor only moves
forward over delivered records (written at most every few hundred ms, so after a crash a
few delivered records may be sent again: harmless, the signer dedups by event_id).
Segments wholly behind the cursor are deleted. On open, every segment is scanned; bytes
that do not form a frame passing its length and CRC check are *damaged*: the scan resyncs
on the next valid frame, so one damaged frame costs only itself. A damaged segment is
copied whole to ``quarantine/`` (mode 0600, with a JSON note of the damaged ranges) and
rewritten atomically with its valid frames only, which stay in place to be sent.
"""
from __future__ import annotations

import bisect
import errno
import fcntl
import json
import logging
import os
import struct
import time
import zlib
from hashlib import sha256
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import quote

from ledgerstream.core import config
from ledgerstream.core.errors import ConfigError, LedgerstreamError

log = logging.getLogger("ledgerstream.producer.spool")

MAGIC = b"LS"
FRAME = struct.Struct(">2sII")
MAX_FRAME_BODY = 64 * 1024 * 1024
META, CURSOR, LOCK, QUARANTINE = "spool.json", "cursor.json", "lock", "quarantine"
SEGMENT_SUFFIX = ".seg"
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024
MAX_INSTANCES = 64
_RESYNC_WORK = 4  # times a segment's size

Position = tuple[int, int]  # (segment number, byte offset)


class SpoolBusy(LedgerstreamError):
    """Another live process holds the spool's lock (an agent sending it, or a sync)."""


class SpoolCorrupt(LedgerstreamError):
    """A frame read back during this run failed its check (the next open quarantines it)."""


def default_root() -> Path:
    return config.home() / "spool"


def dir_name(agent_id: str) -> str:
    """A file-system safe, readable folder name for an agent id."""
    name = quote(agent_id, safe="")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > 120:
        name = f"{name[:80]}-{sha256(agent_id.encode()).hexdigest()[:16]}"
    return name


def find_spools(root: Path) -> list[Path]:
    """Every spool folder under ``root`` (any agent), sorted by name."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / META).is_file())


def open_for_agent(root: Path, agent_id: str, **options: int) -> "Spool":
    """The agent's spool; when another live process of the same agent id holds it, the next
    free ``<agent>@1``, ``<agent>@2`` ... folder (so each replica keeps its own order)."""
    base = dir_name(agent_id)
    for n in range(MAX_INSTANCES):
        try:
            return Spool(root / (base if n == 0 else f"{base}@{n}"), agent_id, **options)
        except SpoolBusy:
            continue
    raise SpoolBusy(f"{MAX_INSTANCES} live processes already spool for agent {agent_id!r} under {root}")


def _segment_name(number: int) -> str:
    return f"{number:012d}{SEGMENT_SUFFIX}"


def _frame_at(data: bytes, pos: int) -> tuple[int, str | None]:
    """The end of the valid frame at ``pos``, or what is wrong with it (with the end a frame
    that fails its CRC claims, else ``pos``)."""
    if len(data) - pos < FRAME.size:
        return pos, f"truncated frame header at offset {pos}"
    magic, length, crc = FRAME.unpack_from(data, pos)
    if magic != MAGIC or length > MAX_FRAME_BODY:
        return pos, f"bad frame header at offset {pos}"
    end = pos + FRAME.size + length
    if end > len(data):
        return pos, f"truncated frame body at offset {pos}"
    if zlib.crc32(data[pos + FRAME.size:end]) != crc:
        return end, f"CRC mismatch at offset {pos}"
    return end, None


def scan_segment(path: Path) -> tuple[list[tuple[int, int]], list[tuple[int, int, str]]]:
    """A segment's valid frames as (start, end) and its damaged ranges as (start, end,
    problem); after damage the scan resumes at the next offset where a valid frame starts."""
    data = path.read_bytes()
    frames: list[tuple[int, int]] = []
    damaged: list[tuple[int, int, str]] = []
    pos = 0
    # bytes the search for a frame after damage may CRC in all: without a bound, headers that
    # each claim the rest of the segment make the scan quadratic (found by tests/fuzz)
    work = _RESYNC_WORK * len(data)
    while pos < len(data):
        end, problem = _frame_at(data, pos)
        if problem is None:
            frames.append((pos, end))
            pos = end
            continue
        resume = pos + 1
        while (resume := data.find(MAGIC, resume)) != -1:
            claimed, candidate_problem = _frame_at(data, resume)
            if candidate_problem is None:
                break
            work -= claimed - resume
            if work < 0:
                resume = -1  # the rest stays in the damaged range: quarantined, not dropped
                break
            resume += 1
        resume = len(data) if resume == -1 else resume
        damaged.append((pos, resume, problem))
        pos = resume
    return frames, damaged


def _write_private(path: Path, data: bytes) -> None:
    """Write a whole file readable by its owner only (spools hold payloads), and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Spool:
    """One spool folder, locked for the lifetime of this object (call :meth:`close`)."""

    def __init__(self, path: Path, agent_id: str | None = None, *,
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.path = Path(path)
        self.segment_bytes = segment_bytes
        self.quarantined: list[Path] = []
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot use spool folder {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolBusy(f"spool {self.path} is in use by another process") from None
        try:
            self.agent_id = self._meta(agent_id)
            self._readers: dict[int, BinaryIO] = {}
            self._recover()
        except BaseException:
            os.close(self._lock_fd)
            raise

    # --- opening ------------------------------------------------------------------------------
    def _meta(self, agent_id: str | None) -> str:
        meta = self.path / META
        if meta.exists():
            try:
                recorded = json.loads(meta.read_text())["agent_id"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"unreadable spool metadata {meta}: {exc}") from exc
            if agent_id is not None and recorded != agent_id:
                raise ConfigError(f"spool {self.path} belongs to agent {recorded!r}, not {agent_id!r}")
            return recorded
        if agent_id is None:
            raise ConfigError(f"{self.path} is not a spool (no {META})")
        meta.write_text(json.dumps({"agent_id": agent_id, "format": 1}))
        return agent_id

    def _read_cursor(self) -> Position:
        try:
            data = json.loads((self.path / CURSOR).read_text())
            return int(data["segment"]), int(data["offset"])
        except FileNotFoundError:
            return 0, 0
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("spool %s: unreadable cursor (%s); re-sending the whole spool", self.path, exc)
            return 0, 0

    def _recover(self) -> None:
        """Scan every segment, quarantine damage, count what is still undelivered."""
        cursor = self._read_cursor()
        numbers = sorted(int(p.name[:-len(SEGMENT_SUFFIX)]) for p in self.path.glob("*" + SEGMENT_SUFFIX)
                         if p.name[:-len(SEGMENT_SUFFIX)].isdigit())
        for stale in self.path.glob("*" + SEGMENT_SUFFIX + ".tmp"):  # a rewrite cut short by a crash
            stale.unlink()
        self._segments: list[int] = []
        self.pending_records = 0
        self.pending_bytes = 0
        acked: Position | None = None
        for number in numbers:
            if number < cursor[0]:
                (self.path / _segment_name(number)).unlink()  # delivered; deletion was interrupted
                continue
            frames, damaged = self._scan(number)
            start = cursor[1] if number == cursor[0] else 0
            # frames wholly before the cursor were delivered; the rest is pending
            delivered = [f for f in frames if f[1] <= start]
            if damaged:
                frames = self._quarantine(number, frames, damaged)
            begin = frames[len(delivered) - 1][1] if delivered else 0
            if acked is None:
                acked = (number, begin)
            self.pending_records += len(frames) - len(delivered)
            self.pending_bytes += (frames[-1][1] if frames else 0) - begin
            self._segments.append(number)
        next_number = max([cursor[0], *numbers, 0]) + 1
        if not self._segments:
            self._segments.append(next_number)
            acked = (next_number, 0)
        self.acked: Position = acked
        self._open_writer(self._segments[-1])

    def _scan(self, number: int) -> tuple[list[tuple[int, int]], list[tuple[int, int, str]]]:
        return scan_segment(self.path / _segment_name(number))

    def _quarantine(self, number: int, frames: list[tuple[int, int]],
                    damaged: list[tuple[int, int, str]]) -> list[tuple[int, int]]:
        """Copy the whole segment to quarantine/ (0600) with a note of the damage, then
        rewrite it atomically with its valid frames only; returns their new positions."""
        src = self.path / _segment_name(number)
        qdir = self.path / QUARANTINE
        qdir.mkdir(mode=0o700, exist_ok=True)
        data = src.read_bytes()
        dest = qdir / f"{src.name}.{time.time_ns() // 1_000_000}"
        lost = sum(end - start for start, end, _ in damaged)
        note = {"segment": src.name, "agent_id": self.agent_id, "problem": damaged[0][2],
                "damaged": [{"start": a, "end": b, "problem": p} for a, b, p in damaged],
                "size": len(data), "valid_bytes": len(data) - lost, "lost_bytes": lost,
                "frames_kept": len(frames), "quarantined_at": time.time()}
        _write_private(dest, data)
        _write_private(dest.with_name(dest.name + ".json"), json.dumps(note, indent=2).encode())
        kept = b"".join(data[a:b] for a, b in frames)
        tmp = src.with_name(src.name + ".tmp")
        _write_private(tmp, kept)
        os.replace(tmp, src)
        _fsync_dir(self.path)
        self.quarantined.append(dest)
        log.error("spool %s: segment %s is damaged (%s); %d bytes in %d range(s) moved to %s; "
                  "its %d valid records will still be delivered", self.path, src.name, damaged[0][2],
                  lost, len(damaged), dest, len(frames))
        moved, pos = [], 0
        for a, b in frames:
            moved.append((pos, pos + b - a))
            pos += b - a
        return moved

    # --- writing ------------------------------------------------------------------------------
    def _open_writer(self, number: int) -> None:
        path = self.path / _segment_name(number)
        self._write_number = number
        self._write_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._write_size = os.fstat(self._write_fd).st_size

    def _roll(self) -> None:
        os.fsync(self._write_fd)
        os.close(self._write_fd)
        number = self._write_number + 1
        self._segments.append(number)
        self._open_writer(number)
        _fsync_dir(self.path)  # the new segment's name must survive a crash too

    def append(self, bodies: list[bytes]) -> list[Position]:
        """Append records (one write per segment touched); returns each record's end position.

        The data is handed to the OS (it survives a kill -9 of this process); :meth:`sync`
        makes it survive a machine crash.
        """
        ends: list[Position] = []
        chunk: list[bytes] = []
        size = self._write_size
        for body in bodies:
            frame_len = FRAME.size + len(body)
            if size > 0 and size + frame_len > self.segment_bytes:
                self._write(chunk, size)
                chunk = []
                self._roll()
                size = 0
            chunk.append(FRAME.pack(MAGIC, len(body), zlib.crc32(body)))
            chunk.append(body)
            size += frame_len
            ends.append((self._write_number, size))
        self._write(chunk, size)
        self.pending_records += len(bodies)
        return ends

    def _write(self, chunk: list[bytes], new_size: int) -> None:
        if not chunk:
            return
        data = b"".join(chunk)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._write_fd, view):]
        except OSError:
            os.ftruncate(self._write_fd, self._write_size)  # never leave a torn frame behind
            raise
        self.pending_bytes += len(data)
        self._write_size = new_size

    @property
    def end(self) -> Position:
        """Where the next appended record will start (or the segment end before a roll)."""
        return self._write_number, self._write_size

    def sync(self) -> None:
        os.fsync(self._write_fd)

    # --- reading and acknowledging ---------------------------------------------------------------
    def read(self, pos: Position) -> tuple[bytes, Position] | None:
        """The record starting at ``pos`` and the position after it, or None at the end."""
        number, offset = pos
        while True:
            fh = self._reader(number)
            fh.seek(offset)
            header = fh.read(FRAME.size)
            if len(header) == FRAME.size:
                break
            later = bisect.bisect_right(self._segments, number)
            if later >= len(self._segments):
                return None
            number, offset = self._segments[later], 0
        magic, length, crc = FRAME.unpack(header)
        body = fh.read(length) if magic == MAGIC and length <= MAX_FRAME_BODY else b""
        if len(body) != length or zlib.crc32(body) != crc:
            raise SpoolCorrupt(f"spool {self.path}: bad frame at {_segment_name(number)}:{offset}")
        return body, (number, offset + FRAME.size + length)

    def records(self) -> Iterator[bytes]:
        """Every undelivered record, oldest first (for inspection and tests)."""
        pos = self.acked
        while (item := self.read(pos)) is not None:
            body, pos = item
            yield body

    def _reader(self, number: int) -> BinaryIO:
        fh = self._readers.get(number)
        if fh is None:
            fh = self._readers[number] = open(self.path / _segment_name(number), "rb")
        return fh

    def ack(self, pos: Position, records: int, nbytes: int) -> None:
        """Everything before ``pos`` is delivered (``records`` records, ``nbytes`` bytes more)."""
        self.acked = pos
        self.pending_records -= records
        self.pending_bytes -= nbytes

    def save_cursor(self) -> None:
        """Persist the delivered position and delete segments that are wholly behind it."""
        tmp = self.path / (CURSOR + ".tmp")
        tmp.write_text(json.dumps({"segment": self.acked[0], "offset": self.acked[1]}))
        os.replace(tmp, self.path / CURSOR)
        while len(self._segments) > 1 and self._segments[0] < self.acked[0]:
            self._drop_segment(self._segments.pop(0))

    def _drop_segment(self, number: int) -> None:
        fh = self._readers.pop(number, None)
        if fh is not None:
            fh.close()
        try:
            (self.path / _segment_name(number)).unlink()
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def close(self) -> None:
        """Save the cursor, fsync, release the lock; a fully delivered spool keeps no segment."""
        try:
            if self.pending_records == 0 and self.acked[1] == self._write_size \
                    and self.acked[0] == self._write_number:
                # start the next run on a fresh segment number, past the cursor
                self.acked = (self._write_number + 1, 0)
            self.save_cursor()
            os.fsync(self._write_fd)
            os.close(self._write_fd)
            if self.acked[0] > self._write_number:
                self._drop_segment(self._write_number)
            for fh in self._readers.values():
                fh.close()
            self._readers.clear()
        finally:
            os.close(self._lock_fd)
