"""Read an untrusted bundle ZIP within fixed limits (docs/bundle-format.md "Limits").

Why a module of its own: a bundle comes from outside, so a ZIP bomb, a lying header or a
huge central directory must be refused before it costs memory. Every limit is checked on
the declared sizes first (cheap, before any byte is inflated) and again on the bytes actually
read, through a reader that never reads past the limit whatever the headers say.
"""
from __future__ import annotations

import hashlib
import struct
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory, 22 bytes, no comment allowed
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # 20 bytes just before the EOCD
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # 56 bytes
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ZipLimits:
    """Limits for one bundle; the defaults fit a bundle of well over 100,000 entries (a real
    bundle takes ~14.1 KB uncompressed, ~9.7 KB compressed and 3 members per entry)."""

    bundle_bytes: int = 4 << 30  # the ZIP file itself
    members: int = 1_000_000
    member_bytes: int = 128 << 20  # uncompressed, each member (an 8 MiB record renders to < 32 MiB)
    total_bytes: int = 4 << 30  # uncompressed, all members together
    ratio: int = 200  # uncompressed / compressed, for a member above ratio_floor
    ratio_floor: int = 1 << 20
    name_chars: int = 256
    central_directory_bytes: int = 256 << 20


class ZipLimitError(Exception):
    """The ZIP breaks a rule or a limit; ``member`` names the member ('' for the archive)."""

    def __init__(self, member: str, detail: str) -> None:
        super().__init__(detail)
        self.member = member
        self.detail = detail


class ZipMembers(Mapping[str, bytes]):
    """The members of a checked ZIP, inflated on access (one at a time, never all at once);
    ``digests`` holds each member's (SHA-256 hex, size) from the checking pass."""

    def __init__(self, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], digests: dict[str, tuple[str, int]]) -> None:
        self._zf = zf
        self._infos = {info.filename: info for info in infos}
        self.digests = digests

    def __getitem__(self, name: str) -> bytes:
        return b"".join(_stream(self._zf, self._infos[name]))

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)


def read_members(fh: BinaryIO, size: int, limits: ZipLimits = ZipLimits()) -> ZipMembers:
    """The members of the ZIP in ``fh`` (``size`` bytes; keep ``fh`` open while using them),
    after every limit and rule is checked and every member inflated once (CRC, size, digest),
    or :class:`ZipLimitError`. Raises zipfile/zlib errors for a ZIP that is not readable at all.
    """
    if size > limits.bundle_bytes:
        raise ZipLimitError("", f"bundle file is {size} bytes, more than the limit of {limits.bundle_bytes}")
    count, cd_size = _directory_size(fh, size)
    if count > limits.members:
        raise ZipLimitError("", f"{count} members, more than the limit of {limits.members}")
    if cd_size > limits.central_directory_bytes:
        raise ZipLimitError("", f"central directory is {cd_size} bytes, more than the limit of "
                                f"{limits.central_directory_bytes}")
    zf = zipfile.ZipFile(fh)
    infos = zf.infolist()
    if len(infos) > limits.members:
        raise ZipLimitError("", f"{len(infos)} members, more than the limit of {limits.members}")
    _check_names(infos, limits)
    declared = 0
    for info in infos:
        _check_declared(info, limits)
        declared += info.file_size
    if declared > limits.total_bytes:
        raise ZipLimitError("", f"uncompressed size {declared} exceeds the limit of {limits.total_bytes} bytes")
    digests: dict[str, tuple[str, int]] = {}
    for info in infos:
        digest = hashlib.sha256()
        for chunk in _stream(zf, info):
            digest.update(chunk)
        digests[info.filename] = (digest.hexdigest(), info.file_size)
    _check_layout(fh, size, infos, zf.start_dir)
    return ZipMembers(zf, infos, digests)


def _directory_size(fh: BinaryIO, size: int) -> tuple[int, int]:
    """(member count, central directory bytes) from the end records, before zipfile parses them."""
    if size < _EOCD.size:
        raise zipfile.BadZipFile("file is too short to be a ZIP")
    fh.seek(size - _EOCD.size)
    sig, _, _, _, count, cd_size, _, comment = _EOCD.unpack(fh.read(_EOCD.size))
    if sig != b"PK\x05\x06" or comment:
        raise ZipLimitError("", "data after the end-of-central-directory record (a comment or appended bytes)")
    if count == 0xFFFF or cd_size == 0xFFFFFFFF:
        loc = size - _EOCD.size - _ZIP64_LOCATOR.size
        if loc < 0:
            raise zipfile.BadZipFile("ZIP64 locator missing")
        fh.seek(loc)
        lsig, _, offset, _ = _ZIP64_LOCATOR.unpack(fh.read(_ZIP64_LOCATOR.size))
        if lsig != b"PK\x06\x07" or offset > size - _ZIP64_EOCD.size:
            raise zipfile.BadZipFile("ZIP64 end record missing")
        fh.seek(offset)
        record = _ZIP64_EOCD.unpack(fh.read(_ZIP64_EOCD.size))
        count, cd_size = record[7], record[8]
    fh.seek(0)
    return count, cd_size


def _check_names(infos: list[zipfile.ZipInfo], limits: ZipLimits) -> None:
    """No duplicate, directory, absolute, backslash or '..' names, no overlong ones."""
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if name in seen:
            raise ZipLimitError(name, "member name occurs more than once")
        seen.add(name)
        if len(name) > limits.name_chars:
            raise ZipLimitError(name[:64] + "…", f"member name longer than {limits.name_chars} characters")
        if not name or name.endswith("/") or name.startswith("/") or "\\" in name or ".." in name.split("/"):
            raise ZipLimitError(name, "unsafe or directory member name")
        if info.flag_bits & 0x1:
            raise ZipLimitError(name, "encrypted member")


def _check_declared(info: zipfile.ZipInfo, limits: ZipLimits) -> None:
    if info.file_size > limits.member_bytes:
        raise ZipLimitError(info.filename, f"declares {info.file_size} bytes uncompressed, more than the member "
                                           f"limit of {limits.member_bytes}")
    if info.file_size > limits.ratio_floor and info.file_size > limits.ratio * max(info.compress_size, 1):
        raise ZipLimitError(info.filename, f"compression ratio {info.file_size // max(info.compress_size, 1)}:1 "
                                           f"exceeds the limit of {limits.ratio}:1")


def _stream(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The member's bytes in chunks, reading at most its declared size + 1 (already within
    the limits), so a header that understates the size cannot make us inflate more."""
    got = 0
    with zf.open(info) as src:
        while got <= info.file_size:
            chunk = src.read(min(_CHUNK, info.file_size + 1 - got))
            if not chunk:
                break
            got += len(chunk)
            if got > info.file_size:
                break
            yield chunk
    if got != info.file_size:
        raise ZipLimitError(info.filename, f"holds {'more than ' if got > info.file_size else ''}"
                                           f"{min(got, info.file_size)} bytes, not the {info.file_size} its header "
                                           f"declares")


def _check_layout(fh: BinaryIO, size: int, infos: list[zipfile.ZipInfo], start_dir: int) -> None:
    """Bytes outside the members (prepended, between members, before the central directory)
    are not evidence and are refused, so that any added byte fails."""
    position = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset != position:
            raise ZipLimitError("", f"{info.header_offset - position} stray bytes before member {info.filename}")
        fh.seek(position + 26)
        name_len, extra_len = struct.unpack("<HH", fh.read(4))
        position += 30 + name_len + extra_len + info.compress_size
        if info.flag_bits & 0x8:  # data descriptor, with or without its optional signature
            fh.seek(position)
            position += 16 if fh.read(4) == b"PK\x07\x08" else 12
    if start_dir != position:
        raise ZipLimitError("", f"{start_dir - position} stray bytes before the central directory")


#: errors of a ZIP that cannot be read at all
UNREADABLE = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, OSError, struct.error)
