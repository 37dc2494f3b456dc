"""C2SP tlog-tiles (https://c2sp.org/tlog-tiles): write and read a tiled Merkle tree on disk.

Pure code over a directory, no network. The layout (docs/spec.md, section "Tiles"):

* ``tile/<L>/<N>`` — hash tile ``N`` of level ``L``: 256 consecutive 32-byte hashes. Level 0
  holds leaf hashes; a level ``L`` hash is the RFC 9162 root of a full level ``L-1`` tile.
  ``<N>`` is written in 3-digit path elements, all but the last prefixed with ``x``
  (1234067 -> ``x001/x234/067``).
* ``tile/<L>/<N>.p/<W>`` — the partial (rightmost) tile of width ``W`` (1..255).
* ``tile/entries/<N>[.p/<W>]`` — entry bundle: the leaf data of the same leaves as level-0
  tile ``N``, each as a big-endian uint16 length followed by the bytes.
* ``checkpoint`` — the checkpoint text (C2SP tlog-checkpoint: origin, tree size, base64
  root, ...). It is the commit point of the writer: the tree size is the checkpoint's.

In ledgerstream the leaf data of entry ``seq`` is its 32-byte entry hash (spec section 5),
so ``SHA-256(0x00 || data)`` is exactly our Merkle leaf hash and Go's
``tlog.RecordHash(data)``; a bundle entry is ``00 20 || entry_hash``.

:class:`TileWriter` appends leaves incrementally keeping only the right edge of the tree
(the partial tile of each level and the partial entry bundle: O(log n) state), writes
every file atomically (temporary file in the same directory, fsync, ``os.replace``, fsync
of the directory) and writes the checkpoint last, so a process killed at any point reopens
at the last checkpoint's size and the caller re-appends from there; files already written
beyond that size are checked byte for byte instead of rewritten (full and partial tiles
are immutable; a different byte is a :class:`TileConflict`).

The reader (:class:`TileReader` and the module functions) computes node hashes, roots and
RFC 9162 proofs from the tiles of one tree size in O(log n) tile reads, through
:class:`ledgerstream.core.merkle.MerkleTree`'s own proof code. It trusts the directory:
clients verify what it returns against a signed checkpoint.

``height`` is 8 everywhere by default, the only height C2SP allows; other heights exist
only so that tests can reach many tile levels with few leaves.
"""
from __future__ import annotations

import base64
import binascii
import errno
import fcntl
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, TypeVar

from ledgerstream.core.errors import LedgerstreamError
from ledgerstream.core.merkle import EMPTY_ROOT, HASH_SIZE, MerkleTree, node_hash

TILE_HEIGHT = 8
"""Levels of the Merkle tree one tile spans (C2SP fixes it at 8)."""
TILE_WIDTH = 1 << TILE_HEIGHT
"""Hashes in a full tile, entries in a full bundle: 256."""
MAX_ENTRY_SIZE = 0xFFFF
"""An entry bundle prefixes each entry with a big-endian uint16 length."""
CHECKPOINT_FILE = "checkpoint"
LOCK_FILE = ".tiles.lock"
"""Held (flock) by the one writer of a directory; not part of the served layout."""
LEDGER_LEAF_SIZE = 32
"""Leaf data of a ledgerstream entry: its 32-byte entry hash (docs/spec.md section 5)."""

_PATH_BASE = 1000
_TMP_SUFFIX = ".tmp"
_T = TypeVar("_T")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class TileError(LedgerstreamError):
    """A tile directory is missing a file, holds a malformed one, or does not match itself."""


class TileConflict(TileError):
    """An immutable file (full or partial tile, entry bundle) exists with other bytes than
    the leaves being appended give: the leaves differ from those the log already holds."""


class TileCoord(NamedTuple):
    """One file of the layout: a hash tile (``level`` >= 0) or an entry bundle (``level`` None)."""

    level: int | None
    index: int
    width: int

    def path(self, height: int = TILE_HEIGHT) -> str:
        if self.level is None:
            return entries_path(self.index, self.width, height=height)
        return tile_path(self.level, self.index, self.width, height=height)


# --- paths -------------------------------------------------------------------------------

def encode_index(index: int) -> str:
    """``<N>`` of a tile path: 3-digit elements, all but the last prefixed with ``x``."""
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError(f"tile index must be a non-negative int, got {index!r}")
    parts = [f"{index % _PATH_BASE:03d}"]
    index //= _PATH_BASE
    while index:
        parts.append(f"x{index % _PATH_BASE:03d}")
        index //= _PATH_BASE
    return "/".join(reversed(parts))


def _suffix(width: int | None, height: int) -> str:
    _check_height(height)
    full = 1 << height
    if width is None:
        return ""
    if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= full:
        raise ValueError(f"tile width must be an int in [1, {full}], got {width!r}")
    return "" if width == full else f".p/{width}"


def tile_path(level: int, index: int, width: int | None = None, *, height: int = TILE_HEIGHT) -> str:
    """``tile/<L>/<N>[.p/<W>]``, relative to the log prefix; ``width`` None = full."""
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 63:
        raise ValueError(f"tile level must be an int in [0, 63], got {level!r}")
    return f"tile/{level}/{encode_index(index)}{_suffix(width, height)}"


def entries_path(index: int, width: int | None = None, *, height: int = TILE_HEIGHT) -> str:
    """``tile/entries/<N>[.p/<W>]``, relative to the log prefix."""
    return f"tile/entries/{encode_index(index)}{_suffix(width, height)}"


def parse_tile_path(path: str, *, height: int = TILE_HEIGHT) -> TileCoord:
    """Inverse of :func:`tile_path` / :func:`entries_path`; ValueError unless ``path`` is
    exactly the canonical spelling (no leading zeros in ``<L>`` or ``<W>``, ``x`` prefixes)."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise ValueError(f"not a tile path: {path!r}")
    kind, rest = parts[1], parts[2:]
    width = 1 << height
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not _DECIMAL.fullmatch(rest[-1]):
            raise ValueError(f"bad partial width in {path!r}")
        width = int(rest[-1])
        rest = [*rest[:-2], rest[-2][:-2]]
    index = 0
    for element in rest:
        digits = element[1:] if element.startswith("x") else element
        if len(digits) != 3 or not digits.isdigit() or not digits.isascii():
            raise ValueError(f"bad index element {element!r} in {path!r}")
        index = index * _PATH_BASE + int(digits)
    if kind == "entries":
        level = None
    elif _DECIMAL.fullmatch(kind):
        level = int(kind)
    else:
        raise ValueError(f"bad tile level in {path!r}")
    try:
        coord = TileCoord(level, index, width)
        canonical = coord.path(height)
    except ValueError as exc:
        raise ValueError(f"bad tile path {path!r}: {exc}") from exc
    if canonical != path:
        raise ValueError(f"non-canonical tile path {path!r} (canonical: {canonical!r})")
    return coord


def tiles_for_size(size: int, *, height: int = TILE_HEIGHT) -> list[TileCoord]:
    """Every file (hash tiles, then entry bundles) a tree of ``size`` leaves is served as:
    at level ``l`` ``floor(c / 256)`` full tiles and, if ``w = c mod 256`` is not 0, one
    partial tile of width ``w``, with ``c = floor(size / 256**l)``. O(size / 256) items."""
    _check_count(size, "size")
    full = 1 << height
    coords: list[TileCoord] = []
    level = 0
    while size >> (height * level):
        count = size >> (height * level)
        coords.extend(TileCoord(level, index, full) for index in range(count >> height))
        if count & (full - 1):
            coords.append(TileCoord(level, count >> height, count & (full - 1)))
        level += 1
    coords.extend(TileCoord(None, c.index, c.width) for c in coords if c.level == 0)
    return coords


# --- encodings ---------------------------------------------------------------------------

def encode_entry(data: bytes) -> bytes:
    """One entry of a bundle: big-endian uint16 length, then the bytes."""
    if len(data) > MAX_ENTRY_SIZE:
        raise ValueError(f"leaf data is {len(data)} bytes; an entry bundle holds at most {MAX_ENTRY_SIZE}")
    return len(data).to_bytes(2, "big") + data


def decode_bundle(data: bytes, width: int | None = None) -> list[bytes]:
    """The entries of a bundle; TileError on a truncated bundle or a wrong entry count."""
    entries = []
    position = 0
    while position < len(data):
        if position + 2 > len(data):
            raise TileError(f"entry bundle truncated in the length of entry {len(entries)}")
        length = int.from_bytes(data[position:position + 2], "big")
        end = position + 2 + length
        if end > len(data):
            raise TileError(f"entry bundle truncated in entry {len(entries)}")
        entries.append(bytes(data[position + 2:end]))
        position = end
    if width is not None and len(entries) != width:
        raise TileError(f"entry bundle has {len(entries)} entries, expected {width}")
    return entries


def entry_leaf_data(entry_hash: bytes) -> bytes:
    """The leaf data of a ledgerstream entry: its entry hash, checked to be 32 bytes."""
    if not isinstance(entry_hash, (bytes, bytearray)) or len(entry_hash) != LEDGER_LEAF_SIZE:
        raise ValueError(f"an entry hash is {LEDGER_LEAF_SIZE} bytes")
    return bytes(entry_hash)


def subtree_root(hashes: bytes) -> bytes:
    """RFC 9162 root of 2**k concatenated hashes (a full tile, or an aligned part of one)."""
    count = len(hashes) // HASH_SIZE
    if count == 0 or count & (count - 1) or len(hashes) % HASH_SIZE:
        raise ValueError(f"need a power of two of {HASH_SIZE}-byte hashes, got {len(hashes)} bytes")
    level = [hashes[i:i + HASH_SIZE] for i in range(0, len(hashes), HASH_SIZE)]
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return bytes(level[0])


# --- checkpoints -------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckpointInfo:
    """The first three lines of a C2SP checkpoint, plus the whole text."""

    origin: str
    size: int
    root: bytes
    text: bytes


def parse_checkpoint(text: bytes) -> CheckpointInfo:
    """Origin, tree size and root of a checkpoint body or signed note (C2SP tlog-checkpoint:
    ``<origin>\\n<decimal size>\\n<base64 root>\\n`` then extension lines / signatures)."""
    lines = text.split(b"\n")
    if len(lines) < 4:
        raise TileError("checkpoint has fewer than three lines")
    try:
        origin = lines[0].decode("utf-8")
        size_text = lines[1].decode("ascii")
        root = base64.b64decode(lines[2], validate=True)
    except (UnicodeDecodeError, binascii.Error) as exc:
        raise TileError(f"malformed checkpoint: {exc}") from exc
    if not origin or not _DECIMAL.fullmatch(size_text) or len(root) != HASH_SIZE \
            or base64.b64encode(root) != lines[2]:
        raise TileError("malformed checkpoint: want a non-empty origin, a decimal size and a base64 32-byte root")
    return CheckpointInfo(origin, int(size_text), root, bytes(text))


def unsigned_checkpoint(origin: str, size: int, root: bytes) -> bytes:
    """The C2SP checkpoint body with no extension lines and no signature.

    Enough for the writer's own bookkeeping and for tests; a served log publishes the
    signer's signed note instead (pass a ``checkpoint`` callback to :class:`TileWriter`)."""
    if not origin or "\n" in origin:
        raise ValueError("origin must be one non-empty line")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n".encode()


def read_checkpoint(directory: str | os.PathLike[str]) -> CheckpointInfo | None:
    """The parsed ``checkpoint`` file of a tile directory, or None if it has none."""
    try:
        text = (Path(directory) / CHECKPOINT_FILE).read_bytes()
    except FileNotFoundError:
        return None
    return parse_checkpoint(text)


def read_size(directory: str | os.PathLike[str]) -> int:
    """The durable tree size of a tile directory: its checkpoint's size (0 without one)."""
    info = read_checkpoint(directory)
    return 0 if info is None else info.size


# --- file helpers ------------------------------------------------------------------------

def _tmp_path(path: Path) -> Path:
    # Deterministic, hidden, never a valid tile path: a rerun writing the same file reuses
    # (and so removes) a temporary left by a killed run.
    return path.with_name(f".{path.name}{_TMP_SUFFIX}")


def _write_temporary(path: Path, data: bytes) -> int:
    """Write ``data`` to the temporary file of ``path``; returns its open descriptor."""
    fd = os.open(_tmp_path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_file_synced(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, rename it over ``path``.
    The caller fsyncs the directory (it batches that)."""
    fd = _write_temporary(path, data)
    try:
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(_tmp_path(path), path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_SYNC_THREADS = 8
_sync_pool: ThreadPoolExecutor | None = None


def _all_at_once(function: Callable[[_T], object], items: Iterable[_T]) -> None:
    """``function`` over ``items`` on a few threads: fsyncs issued together share the
    filesystem's journal commits (here 0.17 against 0.46 ms per file, decision D51)."""
    global _sync_pool
    items = list(items)
    if len(items) < 2:
        for item in items:
            function(item)
        return
    if _sync_pool is None:
        _sync_pool = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="tiles-fsync")
    for _ in _sync_pool.map(function, items):  # raises the first error
        pass


def _read_optional(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def _check_count(value: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def _check_height(height: int) -> None:
    if not isinstance(height, int) or isinstance(height, bool) or not 1 <= height <= 30:
        raise ValueError(f"tile height must be an int in [1, 30], got {height!r}")


def _levels(size: int, height: int) -> int:
    """Tile levels with at least one hash for a tree of ``size`` leaves."""
    levels = 0
    while size >> (height * levels):
        levels += 1
    return levels


def _load_tile(directory: Path, level: int, index: int, width: int, height: int) -> bytes:
    """Tile (level, index) of width ``width``: the partial file, or else the full tile's
    prefix (a partial tile may be deleted once the full tile exists)."""
    full = 1 << height
    data = _read_optional(directory / tile_path(level, index, width, height=height))
    if data is None and width < full:
        whole = _read_optional(directory / tile_path(level, index, full, height=height))
        if whole is not None:
            if len(whole) != full * HASH_SIZE:
                raise TileError(f"{tile_path(level, index, full, height=height)} is {len(whole)} bytes, "
                                f"expected {full * HASH_SIZE}")
            data = whole[:width * HASH_SIZE]
    if data is None:
        raise TileError(f"missing tile {tile_path(level, index, width, height=height)} in {directory}")
    if len(data) != width * HASH_SIZE:
        raise TileError(f"{tile_path(level, index, width, height=height)} is {len(data)} bytes, "
                        f"expected {width * HASH_SIZE}")
    return data


def _load_bundle(directory: Path, index: int, width: int, height: int) -> list[bytes]:
    full = 1 << height
    data = _read_optional(directory / entries_path(index, width, height=height))
    if data is None and width < full:
        whole = _read_optional(directory / entries_path(index, full, height=height))
        if whole is not None:
            return decode_bundle(whole, full)[:width]
    if data is None:
        raise TileError(f"missing entry bundle {entries_path(index, width, height=height)} in {directory}")
    return decode_bundle(data, width)


def _root_of_edge(edge: list[bytearray], height: int) -> bytes:
    """RFC 9162 root of a tree from its right edge alone.

    The tree of size n splits into complete subtrees, one per set bit of n, largest (and
    leftmost) first. The subtree for bit ``height * l + r`` is 2**r consecutive hashes of
    the partial level-``l`` tile, whose width is bits ``[height*l, height*(l+1))`` of n.
    """
    nodes = []
    for level in reversed(range(len(edge))):
        hashes = edge[level]
        width = len(hashes) // HASH_SIZE
        position = 0
        for r in reversed(range(height)):
            if width >> r & 1:
                chunk = hashes[position * HASH_SIZE:(position + (1 << r)) * HASH_SIZE]
                nodes.append(subtree_root(bytes(chunk)))
                position += 1 << r
    if not nodes:
        return EMPTY_ROOT
    root = nodes.pop()
    while nodes:
        root = node_hash(nodes.pop(), root)
    return root


# --- writer ------------------------------------------------------------------------------

CheckpointFn = Callable[[int, bytes, bytes], bytes]
"""``(size, root, last leaf data) -> checkpoint file bytes`` (for the ledger, the last
leaf data is the chain head: the entry hash of entry ``size - 1``; ``b""`` for size 0)."""


class TileWriter:
    """Appends leaves to a C2SP tile directory; one writer per directory (flock).

    Opening reads the checkpoint (the durable size; 0 if there is none), then the right
    edge: the partial tile of each level and the partial entry bundle, O(log n) files, and
    checks that they give the checkpoint's root. ``append`` writes, in this order: each tile
    and bundle completed by the batch (bundle, then level 0, then the levels above it), the
    partial tiles and bundle of the new size (all to temporaries first, fsynced together,
    then renamed in that order), then deletes the partial tiles of tiles now full (unless
    ``keep_partials``), fsyncs the directories written, and writes the checkpoint last. A
    kill at any point leaves the previous checkpoint, whose tiles all still exist (a
    deleted partial tile is the prefix of a full tile that exists).

    ``fsync=False`` skips the fsyncs (tests, scratch copies): files are still replaced
    atomically, so a killed process leaves a consistent directory, but a power loss may not.
    """

    def __init__(self, directory: str | os.PathLike[str], *, origin: str | None = None,
                 checkpoint: CheckpointFn | None = None, keep_partials: bool = False,
                 fsync: bool = True, height: int = TILE_HEIGHT) -> None:
        _check_height(height)
        if checkpoint is None:
            if not origin:
                raise ValueError("TileWriter needs an origin or a checkpoint callback")
            unsigned_checkpoint(origin, 0, EMPTY_ROOT)  # validates the origin now
            checkpoint = lambda size, root, _last: unsigned_checkpoint(origin, size, root)  # noqa: E731
        self._dir = Path(directory)
        self._checkpoint_fn = checkpoint
        self._keep_partials = keep_partials
        self._fsync = fsync
        self._height = height
        self._full = 1 << height
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = os.open(self._dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise TileError(f"another TileWriter holds {self._dir / LOCK_FILE}") from exc
            raise
        self._dirty: set[Path] = set()
        self._queued: list[tuple[Path, bytes]] = []
        self._known_dirs: set[Path] = set()
        try:
            self._load()
            self._remove_stale_temporaries()
        except BaseException:
            self.close()
            raise

    # -- state ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """The durable tree size: the size of the last checkpoint written."""
        return self._size

    @property
    def root(self) -> bytes:
        """The RFC 9162 root at :attr:`size`."""
        return self._root

    @property
    def directory(self) -> Path:
        return self._dir

    def _load(self) -> None:
        info = read_checkpoint(self._dir)
        size = 0 if info is None else info.size
        height, full = self._height, self._full
        edge = []
        for level in range(_levels(size, height)):
            count = size >> (height * level)
            width = count & (full - 1)
            edge.append(bytearray(_load_tile(self._dir, level, count >> height, width, height) if width else b""))
        bundle = bytearray()
        if size & (full - 1):
            for data in _load_bundle(self._dir, size >> height, size & (full - 1), height):
                bundle += encode_entry(data)
        root = _root_of_edge(edge, height)
        if info is not None and root != info.root:
            raise TileError(f"the partial tiles of size {size} give root {root.hex()}, the checkpoint says "
                            f"{info.root.hex()}")
        if not edge:
            edge.append(bytearray())
        self._size, self._root, self._edge, self._bundle = size, root, edge, bundle
        self._has_checkpoint = info is not None

    def _remove_stale_temporaries(self) -> None:
        """Temporaries a killed writer left on the right edge (the parent directory of each
        level's rightmost tile and the ``.p`` directories in it). Elsewhere a temporary is
        removed when its file is written again: a killed batch is re-appended."""
        height = self._height
        places = [(Path(tile_path(level, (self._size >> (height * level)) >> height, height=height)).parent)
                  for level in range(len(self._edge) + 1)]
        places.append(Path(entries_path(self._size >> height, height=height)).parent)
        for place in places:
            directory = self._dir / place
            try:
                names = os.listdir(directory)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in names:
                path = directory / name
                if name.startswith(".") and name.endswith(_TMP_SUFFIX):
                    path.unlink(missing_ok=True)
                elif name.endswith(".p") and path.is_dir():
                    for inner in os.listdir(path):
                        if inner.startswith(".") and inner.endswith(_TMP_SUFFIX):
                            (path / inner).unlink(missing_ok=True)
        _tmp_path(self._dir / CHECKPOINT_FILE).unlink(missing_ok=True)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> "TileWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- appending -----------------------------------------------------------------------

    def append(self, leaves: Iterable[bytes], *, start: int | None = None, marks: Iterable[int] = ()) -> int:
        """Append leaf data (each at most 65535 bytes); return the new durable size.

        ``marks`` are sizes inside the batch that earlier checkpoints named: their partial
        tiles are written too, so the directory holds the same files as after appending up to
        each mark in turn, at the cost of one append (fsyncs, checkpoint) instead of several.

        ``start`` is the index of ``leaves[0]`` (default: :attr:`size`). Leaves below the
        current size are compared with the stored entry bundles and skipped, so re-sending a
        batch after a crash is harmless; a difference raises :class:`TileConflict`. A gap
        (``start > size``) is a ValueError. Nothing is written for an empty remainder, except
        the checkpoint of the empty tree in a directory that has no checkpoint yet.
        """
        if self._lock_fd is None:
            raise TileError("TileWriter is closed")
        batch = []
        for position, data in enumerate(leaves):
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"leaf {position} is {type(data).__name__}, not bytes")
            data = bytes(data)
            if len(data) > MAX_ENTRY_SIZE:
                raise ValueError(f"leaf {position} is {len(data)} bytes, more than {MAX_ENTRY_SIZE}")
            batch.append(data)
        if start is None:
            start = self._size
        _check_count(start, "start")
        if start > self._size:
            raise ValueError(f"start {start} is past the tree size {self._size}: leaves would be missing")
        overlap = min(self._size - start, len(batch))
        if overlap:
            self._check_stored(start, batch[:overlap])
        batch = batch[self._size - start:]
        if not batch and self._has_checkpoint:
            return self._size
        try:
            self._append(batch, marks)
        except BaseException:
            self._dirty.clear()
            self._queued.clear()
            try:
                self._load()  # back to the durable state: the batch is not committed
            except Exception:
                self.close()  # the directory cannot be read back: reopen to go on
            raise
        return self._size

    def _check_stored(self, start: int, leaves: list[bytes]) -> None:
        height, full = self._height, self._full
        edge_start = (self._size >> height) << height
        edge_entries = decode_bundle(bytes(self._bundle))
        cached: tuple[int, list[bytes]] | None = None
        for offset, data in enumerate(leaves):
            index = start + offset
            if index >= edge_start:
                stored = edge_entries[index - edge_start]
            else:
                if cached is None or cached[0] != index >> height:
                    cached = (index >> height, _load_bundle(self._dir, index >> height, full, height))
                stored = cached[1][index & (full - 1)]
            if stored != data:
                raise TileConflict(f"leaf {index} differs from the entry stored in {self._dir}")

    def _append(self, batch: list[bytes], marks: Iterable[int]) -> None:
        height, full = self._height, self._full
        old = self._size
        size = old
        final = old + len(batch)
        stops = sorted(m for m in set(marks) if old < m < final)
        stops.append(final)
        previous = old
        edge0, bundle = self._edge[0], self._bundle
        mask = full - 1
        for data in batch:
            edge0 += sha256(b"\x00" + data).digest()
            bundle += len(data).to_bytes(2, "big")
            bundle += data
            size += 1
            if not size & mask:
                index = (size >> height) - 1
                self._put(entries_path(index, height=height), bytes(bundle))
                bundle.clear()
                self._complete(0, index)
            if size == stops[0]:
                self._put_partials(previous, size, None if self._keep_partials else final)
                previous = stops.pop(0)
        self._write_queued()
        if not self._keep_partials:
            self._delete_partials(old, size)
        if self._fsync:
            _all_at_once(_fsync_dir, self._dirty)
        self._dirty.clear()
        root = _root_of_edge(self._edge, height)
        text = self._checkpoint_fn(size, root, batch[-1] if batch else b"")
        info = parse_checkpoint(text)
        if info.size != size or info.root != root:
            raise ValueError(f"the checkpoint callback wrote size {info.size} root {info.root.hex()}, "
                             f"expected size {size} root {root.hex()}")
        _write_file_synced(self._dir / CHECKPOINT_FILE, text, self._fsync)
        if self._fsync:
            _fsync_dir(self._dir)
        self._size, self._root, self._has_checkpoint = size, root, True

    def republish(self, text: bytes) -> None:
        """Replace the checkpoint of the current size with ``text``, the same tree head with
        more signature lines (a cosignature that arrived after the tiles were written)."""
        info = parse_checkpoint(text)
        if (info.size, info.root) != (self._size, self._root):
            raise ValueError(f"republished checkpoint has size {info.size} root {info.root.hex()}, "
                             f"the tiles have size {self._size} root {self._root.hex()}")
        _write_file_synced(self._dir / CHECKPOINT_FILE, text, self._fsync)

    def _put_partials(self, previous: int, size: int, final: int | None) -> None:
        """The partial tiles and bundle of ``size`` that changed since ``previous`` (a level
        whose hash count is unchanged has the same partial tile, already written) and, unless
        ``final`` is None, are still partial at ``final`` (the others would be deleted with
        the full tile)."""
        height, mask = self._height, self._full - 1

        def kept(level: int, index: int) -> bool:
            return final is None or final < (index + 1) << (height * (level + 1))

        for level in range(_levels(size, height)):
            count = size >> (height * level)
            if count != previous >> (height * level) and count & mask and kept(level, count >> height):
                self._put(tile_path(level, count >> height, count & mask, height=height), bytes(self._edge[level]))
        if size & mask and size != previous and kept(0, size >> height):
            self._put(entries_path(size >> height, size & mask, height=height), bytes(self._bundle))

    def _complete(self, level: int, index: int) -> None:
        """Tile (level, index) just became full: write it and add its root one level up."""
        while True:
            hashes = bytes(self._edge[level])
            self._put(tile_path(level, index, height=self._height), hashes)
            self._edge[level].clear()
            level += 1
            if level == len(self._edge):
                self._edge.append(bytearray())
            parent = self._edge[level]
            parent += subtree_root(hashes)
            if len(parent) < self._full * HASH_SIZE:
                return
            index >>= self._height

    def _put(self, relative: str, data: bytes) -> None:
        """Queue an immutable file for :meth:`_write_queued`, or check the bytes of the one
        already there."""
        path = self._dir / relative
        existing = _read_optional(path)
        if existing is not None:
            if existing != data:
                raise TileConflict(f"{relative} already exists in {self._dir} with other bytes")
        else:
            self._make_parents(path.parent)
            self._queued.append((path, data))
        self._dirty.add(path.parent)

    def _write_queued(self) -> None:
        """The queued files, each atomically: all written to their temporaries, fsynced
        together, then renamed into place in the order they were queued."""
        queued, self._queued = self._queued, []
        fds: list[int] = []
        try:
            for path, data in queued:
                fds.append(_write_temporary(path, data))
            if self._fsync:
                _all_at_once(os.fsync, fds)
        finally:
            for fd in fds:
                os.close(fd)
        for path, _ in queued:
            os.replace(_tmp_path(path), path)

    def _make_parents(self, directory: Path) -> None:
        if directory in self._known_dirs:
            return
        missing = []
        probe = directory
        while not probe.is_dir():
            missing.append(probe)
            probe = probe.parent
        for new in reversed(missing):
            new.mkdir(exist_ok=True)
            self._dirty.add(new.parent)
        self._known_dirs.add(directory)

    def _delete_partials(self, old: int, size: int) -> None:
        """Remove the ``.p`` directories of every tile that is full at ``size`` and was not
        at ``old`` (also clears partial files a killed run left beyond the old size)."""
        height = self._height
        for level in range(_levels(size, height)):
            for index in range(old >> (height * (level + 1)), size >> (height * (level + 1))):
                self._remove_partial_dir(Path(tile_path(level, index, height=height) + ".p"))
        for index in range(old >> height, size >> height):
            self._remove_partial_dir(Path(entries_path(index, height=height) + ".p"))

    def _remove_partial_dir(self, relative: Path) -> None:
        directory = self._dir / relative
        try:
            names = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            (directory / name).unlink(missing_ok=True)
        try:
            directory.rmdir()
        except OSError:
            pass


# --- reader ------------------------------------------------------------------------------

class TileReader:
    """Hashes, entries, roots and proofs from the tiles of a tree of ``tree_size`` leaves
    (default: the directory's checkpoint size). Tiles are read once and cached; ``reads``
    counts the files opened. Any size up to ``tree_size`` can be asked about: every node of
    a smaller tree is in the tiles of the larger one."""

    def __init__(self, directory: str | os.PathLike[str], tree_size: int | None = None, *,
                 height: int = TILE_HEIGHT) -> None:
        _check_height(height)
        self._dir = Path(directory)
        self._height = height
        self.tree_size = read_size(self._dir) if tree_size is None else tree_size
        _check_count(self.tree_size, "tree_size")
        self._tiles: dict[tuple[int, int], bytes] = {}
        self._bundles: dict[int, list[bytes]] = {}
        self._nodes: dict[tuple[int, int], bytes] = {}
        self.reads = 0

    def _width(self, level: int, index: int) -> int:
        count = self.tree_size >> (self._height * level)
        width = min(1 << self._height, count - (index << self._height))
        if width <= 0:
            raise ValueError(f"tile {level}/{index} is beyond the tree of size {self.tree_size}")
        return width

    def tile(self, level: int, index: int) -> bytes:
        """The hashes of tile (level, index) at ``tree_size`` (partial or full)."""
        key = (level, index)
        if key not in self._tiles:
            width = self._width(level, index)
            self.reads += 1
            self._tiles[key] = _load_tile(self._dir, level, index, width, self._height)
        return self._tiles[key]

    def bundle(self, index: int) -> list[bytes]:
        """The leaf data of entry bundle ``index`` at ``tree_size``."""
        if index not in self._bundles:
            width = self._width(0, index)
            self.reads += 1
            self._bundles[index] = _load_bundle(self._dir, index, width, self._height)
        return self._bundles[index]

    def leaf_data(self, index: int) -> bytes:
        _check_count(index, "index")
        if index >= self.tree_size:
            raise ValueError(f"leaf {index} is not below the tree size {self.tree_size}")
        return self.bundle(index >> self._height)[index & ((1 << self._height) - 1)]

    def node(self, level: int, index: int) -> bytes:
        """MTH of leaves ``[index * 2**level, (index + 1) * 2**level)``, a complete subtree
        (``level`` 0: the leaf hash). One tile read: tile level ``level // height``."""
        _check_count(level, "level")
        _check_count(index, "index")
        if (index + 1) << level > self.tree_size:
            raise ValueError(f"node ({level}, {index}) is not a complete subtree of the tree of size {self.tree_size}")
        key = (level, index)
        if key not in self._nodes:
            tile_level, r = divmod(level, self._height)
            first = index << r
            hashes = self.tile(tile_level, first >> self._height)
            offset = first & ((1 << self._height) - 1)
            self._nodes[key] = subtree_root(hashes[offset * HASH_SIZE:(offset + (1 << r)) * HASH_SIZE])
        return self._nodes[key]

    def tree(self) -> MerkleTree:
        """A read-only :class:`MerkleTree` view whose nodes come from the tiles."""
        return _TiledTree(self)

    def root(self, size: int | None = None) -> bytes:
        return self.tree().root(size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return self.tree().inclusion_proof(index, size)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        return self.tree().consistency_proof(size1, size2)


class _TiledTree(MerkleTree):
    """MerkleTree's root and proof algorithms over nodes read from tiles.

    MerkleTree reaches stored nodes only through ``_node(level, index)`` (complete
    subtrees) and its size through ``_size``; both are supplied here, append is refused."""

    def __init__(self, reader: TileReader) -> None:  # noqa: D107 - no MerkleTree storage
        self._reader = reader
        self._size = reader.tree_size
        self._levels = []

    def append(self, leaf_hash: bytes) -> int:
        raise TypeError("a tiled tree is read-only; append with TileWriter")

    def _node(self, level: int, index: int) -> bytes:
        return self._reader.node(level, index)


def _reader(directory: str | os.PathLike[str], tree_size: int | None, height: int) -> TileReader:
    return TileReader(directory, tree_size, height=height)


def read_hash(directory: str | os.PathLike[str], level: int, index: int, *,
              tree_size: int | None = None, height: int = TILE_HEIGHT) -> bytes:
    """Hash of the complete subtree ``index`` at Merkle level ``level`` (0: leaf hashes)."""
    return _reader(directory, tree_size, height).node(level, index)


def tree_hash(directory: str | os.PathLike[str], size: int, *,
              tree_size: int | None = None, height: int = TILE_HEIGHT) -> bytes:
    """RFC 9162 root of the first ``size`` leaves (size <= the directory's tree size)."""
    return _reader(directory, tree_size, height).root(size)


def inclusion_proof(directory: str | os.PathLike[str], index: int, size: int, *,
                    tree_size: int | None = None, height: int = TILE_HEIGHT) -> list[bytes]:
    """RFC 9162 PATH(index, D[size]), leaf side first."""
    return _reader(directory, tree_size, height).inclusion_proof(index, size)


def consistency_proof(directory: str | os.PathLike[str], m: int, n: int, *,
                      tree_size: int | None = None, height: int = TILE_HEIGHT) -> list[bytes]:
    """RFC 9162 PROOF(m, D[n]); empty for m = 0 and m = n."""
    return _reader(directory, tree_size, height).consistency_proof(m, n)
