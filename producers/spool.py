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
Segments wholly behind the cursor are deleted. On open, every segment is scanned; a frame
that fails its length or CRC check ends the usable part of its segment: the segment is
copied to ``quarantine/`` and reported, and the valid prefix stays in place to be sent.
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
        """Scan every segment, quarantine corrupt ones, count what is still undelivered."""
        cursor = self._read_cursor()
        numbers = sorted(int(p.name[:-len(SEGMENT_SUFFIX)]) for p in self.path.glob("*" + SEGMENT_SUFFIX)
                         if p.name[:-len(SEGMENT_SUFFIX)].isdigit())
        self._segments: list[int] = []
        self.pending_records = 0
        self.pending_bytes = 0
        acked: Position | None = None
        for number in numbers:
            if number < cursor[0]:
                (self.path / _segment_name(number)).unlink()  # delivered; deletion was interrupted
                continue
            offsets, valid_end, problem = self._scan(number)
            if problem:
                self._quarantine(number, valid_end, problem)
            start = cursor[1] if number == cursor[0] else 0
            # resume at the last frame boundary at or before the cursor (never past a record)
            bounds = offsets + [valid_end]
            begin = bounds[bisect.bisect_right(bounds, start) - 1]
            if acked is None:
                acked = (number, begin)
            self.pending_records += len(offsets) - bisect.bisect_left(offsets, begin)
            self.pending_bytes += valid_end - begin
            self._segments.append(number)
        next_number = max([cursor[0], *numbers, 0]) + 1
        if not self._segments:
            self._segments.append(next_number)
            acked = (next_number, 0)
        self.acked: Position = acked
        self._open_writer(self._segments[-1])

    def _scan(self, number: int) -> tuple[list[int], int, str | None]:
        """Frame start offsets, end of the valid part, and what is wrong after it (if anything)."""
        offsets: list[int] = []
        path = self.path / _segment_name(number)
        with open(path, "rb") as fh:
            data = fh.read()
        pos = 0
        while pos < len(data):
            if len(data) - pos < FRAME.size:
                return offsets, pos, f"truncated frame header at offset {pos}"
            magic, length, crc = FRAME.unpack_from(data, pos)
            if magic != MAGIC or length > MAX_FRAME_BODY:
                return offsets, pos, f"bad frame header at offset {pos}"
            body = data[pos + FRAME.size: pos + FRAME.size + length]
            if len(body) != length:
                return offsets, pos, f"truncated frame body at offset {pos}"
            if zlib.crc32(body) != crc:
                return offsets, pos, f"CRC mismatch at offset {pos}"
            offsets.append(pos)
            pos += FRAME.size + length
        return offsets, pos, None

    def _quarantine(self, number: int, valid_end: int, problem: str) -> None:
        """Copy the whole segment to quarantine/, then cut it back to its valid prefix."""
        src = self.path / _segment_name(number)
        qdir = self.path / QUARANTINE
        qdir.mkdir(exist_ok=True)
        dest = qdir / f"{src.name}.{time.time_ns() // 1_000_000}"
        dest.write_bytes(src.read_bytes())
        size = src.stat().st_size
        dest.with_name(dest.name + ".json").write_text(json.dumps({
            "segment": src.name, "agent_id": self.agent_id, "problem": problem,
            "size": size, "valid_bytes": valid_end, "lost_bytes": size - valid_end,
            "quarantined_at": time.time()}, indent=2))
        os.truncate(src, valid_end)
        self.quarantined.append(dest)
        log.error("spool %s: segment %s is corrupt (%s); %d bytes after offset %d moved to %s; "
                  "the valid prefix will still be delivered", self.path, src.name, problem,
                  size - valid_end, valid_end, dest)

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
        dir_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new segment's name must survive a crash too
        finally:
            os.close(dir_fd)

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
