"""ledgerstream.core.tiles: the C2SP tlog-tiles layout, its writer and its reader.

Oracles independent of the module (and of core/merkle.py): the RFC 9162 MTH written out
below, the C2SP tile definition ("the n-th tile at level l is MTH(D[(n*256+i)*256**l :
(n*256+i+1)*256**l]) for i in 0..255"), the path examples of the C2SP text and of Go's
golang.org/x/mod/sumdb/tlog tests, and tests/support/rfc9162_checker.py for proofs.
"""
from __future__ import annotations

import base64
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from functools import lru_cache
from unittest import mock
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerstream.core import merkle, tiles
from ledgerstream.core.tiles import (
    TileConflict,
    TileCoord,
    TileError,
    TileReader,
    TileWriter,
    entries_path,
    parse_tile_path,
    tile_path,
    tiles_for_size,
)
from tests.support import rfc9162_checker

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


# --- the oracle: RFC 9162 section 2.1.1, literally ----------------------------------------

def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 2.1.1 over leaf data, recursing on lists."""
    if not leaves:
        return _sha(b"")
    if len(leaves) == 1:
        return _sha(b"\x00" + leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)  # largest power of two smaller than n
    return _sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


class Oracle:
    """MTH over ranges of one leaf list (memoised: tiles ask for the same ranges often)."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves = leaves
        self.range_hash = lru_cache(maxsize=None)(self._range_hash)

    def _range_hash(self, lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return _sha(b"\x00" + self.leaves[lo])
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        return _sha(b"\x01" + self.range_hash(lo, lo + k) + self.range_hash(lo + k, hi))

    def root(self, size: int) -> bytes:
        return self.range_hash(0, size) if size else _sha(b"")

    def tile(self, level: int, index: int, width: int, height: int = 8) -> bytes:
        """The C2SP definition: MTH(D[(n*W + i) * W**l : (n*W + i + 1) * W**l]), i < width."""
        full, span = 1 << height, 1 << (height * level)
        return b"".join(self.range_hash((index * full + i) * span, (index * full + i + 1) * span)
                        for i in range(width))

    def bundle(self, index: int, width: int, height: int = 8) -> bytes:
        first = index << height
        return b"".join(len(d).to_bytes(2, "big") + d for d in self.leaves[first:first + width])


def leaf(i: int) -> bytes:
    return _sha(b"leaf %d" % i)


LEAVES = [leaf(i) for i in range(70_000)]


def files_under(directory: Path) -> dict[str, bytes]:
    out = {}
    for root, _dirs, names in os.walk(directory):
        for name in names:
            path = Path(root) / name
            out[path.relative_to(directory).as_posix()] = path.read_bytes()
    return out


def check_tile_dir(directory: Path, leaves: list[bytes], height: int = 8, *, keep_partials: bool = False,
                   oracle: Oracle | None = None) -> None:
    """The directory is exactly a C2SP tile set for ``leaves``: the checkpoint names their
    root; every file the spec requires for that size exists with the spec's bytes; every
    other file is an older partial tile (the right prefix) of a tile not yet full; no
    temporaries, nothing else."""
    oracle = oracle or Oracle(leaves)
    size, full = len(leaves), 1 << height
    files = files_under(directory)
    info = tiles.parse_checkpoint(files.pop("checkpoint"))
    assert (info.size, info.root) == (size, mth(leaves) if size <= 4096 else oracle.root(size))
    files.pop(tiles.LOCK_FILE, None)
    required = {c.path(height): c for c in tiles_for_size(size, height=height)}
    for path, coord in required.items():
        assert path in files, f"missing {path}"
    for path, data in files.items():
        assert not Path(path).name.startswith("."), f"stray file {path}"
        coord = parse_tile_path(path, height=height)
        if coord.level is None:
            assert (coord.index << height) + coord.width <= size, path
            assert data == oracle.bundle(coord.index, coord.width, height), path
        else:
            count = size >> (height * coord.level)
            assert (coord.index << height) + coord.width <= count, path
            assert data == oracle.tile(coord.level, coord.index, coord.width, height), path
        if path not in required:
            assert coord.width < full
            full_path = TileCoord(coord.level, coord.index, full).path(height)
            assert keep_partials or full_path not in files, f"{path} kept beside its full tile"


# --- paths ---------------------------------------------------------------------------------

def test_paths_match_the_c2sp_text():
    # "index 1234067 will be encoded as x001/x234/067"
    assert tiles.encode_index(1234067) == "x001/x234/067"
    assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tile_path(3, 1234067, 8) == "tile/3/x001/x234/067.p/8"
    assert entries_path(1234067) == "tile/entries/x001/x234/067"
    assert entries_path(1234067, 255) == "tile/entries/x001/x234/067.p/255"
    assert tile_path(0, 0) == "tile/0/000" and tile_path(0, 999) == "tile/0/999"
    assert tile_path(0, 1000) == "tile/0/x001/000"
    assert tile_path(63, 10**9) == "tile/63/x001/x000/x000/000"


# golang.org/x/mod/sumdb/tlog tlog_test.go tilePaths: Go's tlog writes the tile height as an
# extra element after "tile/" (tile/H/L/N); C2SP has no height element (tile/L/N) and fixes
# H = 8. Same <N> encoding and .p/<W> suffix: only the "H/" element differs.
GO_TILE_PATHS = [
    ("tile/4/0/001", 4, 0, 1, 16),
    ("tile/4/0/001.p/5", 4, 0, 1, 5),
    ("tile/3/5/x123/x456/078", 3, 5, 123456078, 8),
    ("tile/3/5/x123/x456/078.p/2", 3, 5, 123456078, 2),
    ("tile/1/0/x003/x057/500", 1, 0, 3057500, 2),
]


@pytest.mark.parametrize("go_path,height,level,index,width", GO_TILE_PATHS)
def test_paths_match_go_tlog_test_data_minus_the_height(go_path, height, level, index, width):
    ours = "tile/" + go_path.removeprefix(f"tile/{height}/")
    assert tile_path(level, index, width, height=height) == ours
    assert parse_tile_path(ours, height=height) == TileCoord(level, index, width)


@pytest.mark.parametrize("path", [
    "tile/5/123/456/078",       # Go's bad example: elements before the last need "x"
    "tile/-1/000", "tile/00/000", "tile/64/000", "tile/0/12", "tile/0/1234", "tile/0/x000/001",
    "tile/0/000.p/0", "tile/0/000.p/256", "tile/0/000.p/05", "tile/0/000.p", "tile/0/000.p/5/6",
    "tile/entries/00a", "tiles/0/000", "tile/0/x001", "tile/data/000", "tile/0/+01",
])
def test_parse_rejects_non_canonical_paths(path):
    with pytest.raises(ValueError):
        parse_tile_path(path)


@pytest.mark.parametrize("level,index,width", [(0, 0, 1), (0, 7, 256), (2, 1234067, 17), (None, 999999, 3)])
def test_parse_round_trips(level, index, width):
    coord = TileCoord(level, index, width)
    assert parse_tile_path(coord.path()) == coord


def test_tiles_for_size_matches_the_c2sp_examples():
    # "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial
    # level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of width
    # 17, and one partial level 2 tile of width 1."
    coords = [c for c in tiles_for_size(70_000) if c.level is not None]
    by_level = {level: [c for c in coords if c.level == level] for level in (0, 1, 2)}
    assert len(coords) == 273 + 1 + 1 + 1 + 1
    assert [c.width for c in by_level[0]] == [256] * 273 + [112]
    assert [c.width for c in by_level[1]] == [256, 17]
    assert by_level[2] == [TileCoord(2, 0, 1)]
    assert tile_path(0, 273, 112) == "tile/0/273.p/112"
    # "a tree of size 256 will be represented by a full level 0 tile and a partial level 1
    # tile of width 1."
    assert [c.path() for c in tiles_for_size(256)] == ["tile/0/000", "tile/1/000.p/1", "tile/entries/000"]
    assert tiles_for_size(0) == []


# --- writer against the oracle -------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 2, 3, 255, 256, 257, 511, 512, 513, 1000, 65535, 65536, 70_000])
def test_writer_writes_exactly_the_spec_tiles(tmp_path, size):
    leaves = LEAVES[:size]
    with TileWriter(tmp_path, origin="example.com/log") as writer:
        assert writer.append(leaves) == size
        assert writer.size == size
    check_tile_dir(tmp_path, leaves)
    text = (tmp_path / "checkpoint").read_bytes()
    assert text == f"example.com/log\n{size}\n".encode() + base64.b64encode(Oracle(leaves).root(size)) + b"\n"


def test_c2sp_example_size_70000_files(tmp_path):
    with TileWriter(tmp_path, origin="o", fsync=False) as writer:
        writer.append(LEAVES[:70_000])
    files = files_under(tmp_path / "tile")
    assert len([p for p in files if p.startswith("0/")]) == 274
    for path in ("0/272", "0/273.p/112", "1/000", "1/001.p/17", "2/000.p/1", "entries/273.p/112"):
        assert path in files
    assert len(files["0/273.p/112"]) == 112 * 32 and len(files["entries/273.p/112"]) == 112 * 34
    # level 1 hash 0 is the root of level 0 tile 0; level 2 hash 0 is the root of 65536 leaves
    assert files["1/000"][:32] == mth(LEAVES[:256])
    assert files["2/000.p/1"] == Oracle(LEAVES).root(65536)


def test_bundle_entries_hash_to_the_level0_tile_and_the_ledger_leaf(tmp_path):
    entry_hashes = LEAVES[:300]
    with TileWriter(tmp_path, origin="o", fsync=False) as writer:
        writer.append([tiles.entry_leaf_data(h) for h in entry_hashes])
    bundle = tiles.decode_bundle((tmp_path / "tile/entries/000").read_bytes(), 256)
    level0 = (tmp_path / "tile/0/000").read_bytes()
    assert (tmp_path / "tile/entries/000").read_bytes()[:34] == b"\x00\x20" + entry_hashes[0]
    for i, data in enumerate(bundle):
        # RFC 9162 leaf hash of the entry = the ledger's Merkle leaf (spec section 5)
        assert _sha(b"\x00" + data) == level0[32 * i:32 * i + 32] == merkle.leaf_hash(entry_hashes[i])
    with pytest.raises(ValueError):
        tiles.entry_leaf_data(b"x" * 31)


def test_entries_of_any_length_up_to_65535(tmp_path):
    leaves = [b"", b"\x00", b"a" * 65535, b"\x10\x20"]
    with TileWriter(tmp_path, origin="o", fsync=False) as writer:
        writer.append(leaves)
        with pytest.raises(ValueError):
            writer.append([b"a" * 65536])
        with pytest.raises(TypeError):
            writer.append(["text"])
        assert writer.size == 4
    check_tile_dir(tmp_path, leaves)
    assert TileReader(tmp_path).leaf_data(2) == b"a" * 65535


def test_ct_reference_tree_roots(tmp_path):
    # certificate-transparency's 8-leaf reference tree (docs/spec.md, "Known values")
    ct = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
          b"\x50\x51\x52\x53\x54\x55\x56\x57", b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"]
    prefixes = ["6e340b9c", "fac54203", "aeb6bcfe", "d37ee418", "4e3bbb1f", "76e67dad", "ddb89be4", "5dc9da79"]
    with TileWriter(tmp_path, origin="o", fsync=False, height=1) as writer:
        for i, data in enumerate(ct):
            writer.append([data])
            assert writer.root.hex().startswith(prefixes[i])
    for size in range(9):
        assert tiles.tree_hash(tmp_path, size, height=1) == mth(ct[:size])


# --- property tests: random sizes and batch splits ------------------------------------------

def _write_in_batches(directory: Path, leaves: list[bytes], cuts: list[int], height: int, **kw) -> None:
    with TileWriter(directory, origin="o", fsync=False, height=height, **kw) as writer:
        position = 0
        for cut in sorted(set(cuts)) + [len(leaves)]:
            writer.append(leaves[position:cut])
            position = max(position, cut)
            assert writer.size == position


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(height=st.sampled_from([1, 2, 3, 8]), data=st.data())
def test_same_tiles_whatever_the_batch_split(height, data):
    size = data.draw(st.integers(0, 300 if height < 8 else 1100), label="size")
    cuts = data.draw(st.lists(st.integers(0, size), max_size=12), label="cuts")
    keep = data.draw(st.booleans(), label="keep_partials")
    leaves = LEAVES[:size]
    oracle = Oracle(leaves)
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as many:
        _write_in_batches(Path(one), leaves, [], height)
        _write_in_batches(Path(many), leaves, cuts, height, keep_partials=keep)
        check_tile_dir(Path(one), leaves, height, oracle=oracle)
        check_tile_dir(Path(many), leaves, height, keep_partials=keep, oracle=oracle)
        a, b = files_under(Path(one)), files_under(Path(many))
        for coord in tiles_for_size(size, height=height):
            path = coord.path(height)
            assert a[path] == b[path]
        assert a["checkpoint"] == b["checkpoint"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(height=st.sampled_from([1, 2, 3, 8]), data=st.data())
def test_one_append_with_marks_leaves_the_files_of_appending_up_to_each_mark(height, data):
    """The oracle is the plain path: appending up to each mark in turn (partial tiles of
    every size a checkpoint named, deleted once their tile is full)."""
    size = data.draw(st.integers(0, 300 if height < 8 else 1100), label="size")
    done = data.draw(st.integers(0, size), label="already appended")
    marks = data.draw(st.lists(st.integers(0, size + 3), max_size=12), label="marks")
    keep = data.draw(st.booleans(), label="keep_partials")
    leaves = LEAVES[:size]
    with tempfile.TemporaryDirectory() as turn, tempfile.TemporaryDirectory() as once:
        _write_in_batches(Path(turn), leaves, [done] + [m for m in marks if done < m <= size], height,
                          keep_partials=keep)
        with TileWriter(Path(once), origin="o", fsync=False, height=height, keep_partials=keep) as writer:
            writer.append(leaves[:done])
            with mock.patch.object(tiles, "_write_temporary", wraps=tiles._write_temporary) as written:
                assert writer.append(leaves[done:], marks=marks) == size
        assert files_under(Path(once)) == files_under(Path(turn))
        check_tile_dir(Path(once), leaves, height, keep_partials=keep)
        # and no partial tile is written only to be deleted with its full tile in the same append
        for (path, _data), _ in written.call_args_list:
            assert path.exists(), path


@settings(max_examples=40, deadline=None)
@given(height=st.sampled_from([1, 2, 3, 8]), data=st.data())
def test_reader_roots_and_proofs_match_the_oracle(height, data):
    tree_size = data.draw(st.integers(1, 300 if height < 8 else 1100), label="tree_size")
    leaves = LEAVES[:tree_size]
    oracle = Oracle(leaves)
    with tempfile.TemporaryDirectory() as d:
        _write_in_batches(Path(d), leaves, data.draw(st.lists(st.integers(0, tree_size), max_size=5)), height)
        n = data.draw(st.integers(1, tree_size), label="n")
        m = data.draw(st.integers(0, n), label="m")
        index = data.draw(st.integers(0, n - 1), label="index")
        root_n, root_m = oracle.root(n), oracle.root(m)
        assert tiles.tree_hash(d, n, height=height) == root_n == mth(leaves[:n])
        assert tiles.tree_hash(d, m, height=height) == root_m
        proof = tiles.inclusion_proof(d, index, n, height=height)
        rfc9162_checker.verify_inclusion(rfc9162_checker.hash_leaf(leaves[index]), index, n, proof, root_n)
        merkle.verify_inclusion(merkle.leaf_hash(leaves[index]), index, n, proof, root_n)
        cproof = tiles.consistency_proof(d, m, n, height=height)
        merkle.verify_consistency(m, n, root_m, root_n, cproof)
        if 0 < m < n:
            rfc9162_checker.verify_consistency(m, n, root_m, root_n, cproof)
        level = data.draw(st.integers(0, (n).bit_length() - 1), label="level")
        node = data.draw(st.integers(0, (n >> level) - 1), label="node")
        assert tiles.read_hash(d, level, node, height=height) == oracle.range_hash(node << level, (node + 1) << level)


def test_proofs_equal_merkle_tree_for_every_index_and_size(tmp_path):
    leaves = LEAVES[:150]
    tree = merkle.MerkleTree()
    for data in leaves:
        tree.append(merkle.leaf_hash(data))
    _write_in_batches(tmp_path, leaves, [1, 5, 64, 65, 100], height=2)
    reader = TileReader(tmp_path, height=2)
    for n in range(1, 151):
        assert reader.root(n) == tree.root(n) == mth(leaves[:n])
        for i in range(n):
            assert reader.inclusion_proof(i, n) == tree.inclusion_proof(i, n)
        for m in range(n + 1):
            assert reader.consistency_proof(m, n) == tree.consistency_proof(m, n)


def test_reads_are_logarithmic(tmp_path):
    """Each proof touches at most two tiles per level (the leaf's and the right edge's)."""
    leaves = LEAVES[:70_000]
    with TileWriter(tmp_path, origin="o", fsync=False) as writer:
        writer.append(leaves)
    levels = 3
    rng = random.Random(7)
    worst = 0
    for _ in range(60):
        n = rng.randint(1, 70_000)
        index, m = rng.randrange(n), rng.randint(0, n)
        for ask in (lambda r: r.inclusion_proof(index, n), lambda r: r.consistency_proof(m, n),
                    lambda r: r.root(n)):
            reader = TileReader(tmp_path)
            ask(reader)
            worst = max(worst, reader.reads)
    assert worst <= 2 * levels
    small = tmp_path / "h2"
    _write_in_batches(small, LEAVES[:1000], [], height=2)  # 5 tile levels
    for index in range(0, 1000, 37):
        reader = TileReader(small, height=2)
        reader.inclusion_proof(index, 1000)
        assert reader.reads <= 2 * 5


def test_reader_limits(tmp_path):
    with TileWriter(tmp_path, origin="o", fsync=False) as writer:
        writer.append(LEAVES[:10])
    reader = TileReader(tmp_path)
    assert reader.tree_size == 10
    with pytest.raises(ValueError):
        reader.root(11)
    with pytest.raises(ValueError):
        reader.node(1, 5)  # leaves 10..11: not in the tree
    with pytest.raises(ValueError):
        reader.leaf_data(10)
    with pytest.raises(TypeError):
        reader.tree().append(bytes(32))
    assert TileReader(tmp_path / "nothing").root() == merkle.EMPTY_ROOT
    (tmp_path / "tile/0/000.p/10").write_bytes(bytes(31))
    with pytest.raises(TileError):
        TileReader(tmp_path).root()


def test_reader_of_an_old_size_falls_back_to_full_tiles(tmp_path):
    """Partial tiles of sizes that became full are deleted; a reader of that old tree size
    (a client holding an old checkpoint) uses the full tile's prefix, as C2SP allows."""
    with TileWriter(tmp_path, origin="o", fsync=False) as writer:
        writer.append(LEAVES[:100])
        assert (tmp_path / "tile/0/000.p/100").exists()
        writer.append(LEAVES[100:300])
        assert not (tmp_path / "tile/0/000.p").exists()
    reader = TileReader(tmp_path, 100)
    assert reader.root() == mth(LEAVES[:100])
    assert reader.bundle(0) == LEAVES[:100]
    with TileWriter(tmp_path / "keep", origin="o", fsync=False, keep_partials=True) as writer:
        writer.append(LEAVES[:100])
        writer.append(LEAVES[100:300])
    assert (tmp_path / "keep/tile/0/000.p/100").read_bytes() == Oracle(LEAVES).tile(0, 0, 100)


# --- resuming, idempotence, conflicts -------------------------------------------------------

def test_resume_reads_only_the_edge_and_continues(tmp_path):
    with TileWriter(tmp_path, origin="o", fsync=False) as writer:
        writer.append(LEAVES[:1000])
    with TileWriter(tmp_path, origin="o", fsync=False) as writer:
        assert writer.size == 1000 and writer.root == mth(LEAVES[:1000])
        writer.append(LEAVES[1000:1300])
    assert tiles.read_size(tmp_path) == 1300
    check_tile_dir(tmp_path, LEAVES[:1300])


def test_re_append_overlap_is_idempotent_and_checked(tmp_path):
    with TileWriter(tmp_path, origin="o", fsync=False) as writer:
        writer.append(LEAVES[:600])
        before = files_under(tmp_path)
        assert writer.append(LEAVES[100:600], start=100) == 600
        assert files_under(tmp_path) == before
        assert writer.append(LEAVES[500:700], start=500) == 700
        with pytest.raises(TileConflict):
            writer.append([leaf(-1)], start=10)   # in a full bundle
        with pytest.raises(TileConflict):
            writer.append([leaf(-1)], start=699)  # in the partial bundle
        with pytest.raises(ValueError):
            writer.append([leaf(701)], start=701)  # a gap
        assert writer.size == 700
    check_tile_dir(tmp_path, LEAVES[:700])


def test_files_beyond_the_checkpoint_are_checked_not_overwritten(tmp_path):
    """A killed batch may leave full tiles past the checkpoint: the same leaves re-appended
    find them identical; other leaves are a conflict (tiles are immutable)."""
    with TileWriter(tmp_path, origin="o", fsync=False) as writer:
        writer.append(LEAVES[:300])
        checkpoint_300 = (tmp_path / "checkpoint").read_bytes()
        writer.append(LEAVES[300:600])
    (tmp_path / "checkpoint").write_bytes(checkpoint_300)  # as if killed before checkpoint 600
    assert not (tmp_path / "tile/0/001.p").exists()  # its tile 0/001 is full: read from there
    with TileWriter(tmp_path, origin="o", fsync=False) as writer:
        assert writer.size == 300
        with pytest.raises(TileConflict):
            writer.append([leaf(-1)] * 300)
        assert writer.size == 300 and writer.root == mth(LEAVES[:300])
        writer.append(LEAVES[300:600])
    check_tile_dir(tmp_path, LEAVES[:600])


def test_inconsistent_directory_is_refused(tmp_path):
    with TileWriter(tmp_path, origin="o", fsync=False) as writer:
        writer.append(LEAVES[:300])
    partial = tmp_path / "tile/0/001.p/44"
    good = partial.read_bytes()
    partial.write_bytes(bytes(32) + good[32:])
    with pytest.raises(TileError, match="checkpoint says"):
        TileWriter(tmp_path, origin="o")
    partial.unlink()
    with pytest.raises(TileError, match="missing tile"):
        TileWriter(tmp_path, origin="o")
    partial.write_bytes(good)
    (tmp_path / "checkpoint").write_bytes(b"o\n300\nnot base64\n")
    with pytest.raises(TileError, match="malformed"):
        TileWriter(tmp_path, origin="o")


def test_one_writer_per_directory(tmp_path):
    with TileWriter(tmp_path, origin="o"):
        with pytest.raises(TileError, match="another TileWriter"):
            TileWriter(tmp_path, origin="o")
    TileWriter(tmp_path, origin="o").close()


def test_checkpoint_callback_writes_the_signers_note(tmp_path):
    """The checkpoint text comes from the caller (the signer's signed note in production);
    the writer checks its size and root lines and passes the chain head (last leaf)."""
    seen = []

    def note(size: int, root: bytes, last: bytes) -> bytes:
        seen.append((size, last))
        return (f"ledgerstream/dev\n{size}\n{base64.b64encode(root).decode()}\nchain-head {last.hex()}\n"
                f"time 1700000000000000\n\n— ledgerstream/dev AAAA\n").encode()

    with TileWriter(tmp_path, checkpoint=note, fsync=False) as writer:
        writer.append(LEAVES[:5])
    assert seen == [(5, LEAVES[4])]
    assert tiles.read_checkpoint(tmp_path).size == 5
    with TileWriter(tmp_path, checkpoint=lambda s, r, last: b"o\n1\n" + base64.b64encode(r) + b"\n",
                    fsync=False) as writer:
        with pytest.raises(ValueError, match="expected size 6"):
            writer.append(LEAVES[5:6])
        assert writer.size == 5
    with pytest.raises(ValueError):
        TileWriter(tmp_path / "x")  # neither origin nor callback
    with pytest.raises(ValueError):
        TileWriter(tmp_path / "y", origin="two\nlines")


# --- every crash point of one batch, in process ---------------------------------------------

def test_a_crash_at_every_rename_leaves_a_resumable_directory(tmp_path, monkeypatch):
    """Stop a batch (37 -> 101 leaves, height 2: 4 levels, 43 files) just before its k-th
    rename, for every k: the temporary file is left behind as a kill would leave it. A new
    writer opens at 37 with the right root, and re-appending (in one batch or leaf by leaf)
    ends in exactly the spec's directory for 101 leaves."""
    leaves = LEAVES[:101]
    oracle = Oracle(leaves)
    real_replace = os.replace

    class Killed(BaseException):
        pass

    def run(directory: Path, stop_at: int | None) -> int:
        calls = 0

        def replace(src, dst):
            nonlocal calls
            calls += 1
            if calls == stop_at:
                raise Killed()
            real_replace(src, dst)

        writer = TileWriter(directory, origin="o", fsync=False, height=2)
        writer.append(leaves[:37])
        monkeypatch.setattr(tiles.os, "replace", replace)
        try:
            writer.append(leaves[37:])
        except Killed:
            pass
        finally:
            monkeypatch.setattr(tiles.os, "replace", real_replace)
            writer.close()
        return calls

    renames = run(tmp_path / "clean", None)
    assert renames > 40
    for k in range(1, renames + 1):
        directory = tmp_path / f"k{k}"
        run(directory, k)
        with TileWriter(directory, origin="o", fsync=False, height=2) as writer:
            assert writer.size == 37  # the checkpoint is the last rename
            assert writer.root == oracle.root(writer.size)
            if k % 2:
                writer.append(leaves[37:])
            else:
                for i in range(37, 101):
                    writer.append([leaves[i]])
        check_tile_dir(directory, leaves, 2, oracle=oracle)


# --- crash test: kill -9 a writer several times ---------------------------------------------

CHILD = textwrap.dedent("""
    import hashlib, random, sys
    from ledgerstream.core.tiles import TileWriter
    directory, target, height, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    leaf = lambda i: hashlib.sha256(b"leaf %d" % i).digest()
    writer = TileWriter(directory, origin="crash.test/log", height=height)
    print("open", writer.size, flush=True)
    while writer.size < target:
        start = writer.size
        count = min(target - start, rng.choice([1, 2, 7, 100, 255, 256, 257, 600, 1500]))
        writer.append([leaf(i) for i in range(start, start + count)])
        print("size", writer.size, flush=True)
    print("done", writer.size, flush=True)
""")


@pytest.mark.slow
@pytest.mark.parametrize("height,target", [(8, 20_000), (2, 6_000)])
def test_kill_9_while_appending_then_resume(tmp_path, height, target):
    directory = tmp_path / "log"
    rng = random.Random(height)
    leaves = [leaf(i) for i in range(target)]
    oracle = Oracle(leaves)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    kills = 0
    durable = 0
    for attempt in range(40):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(directory), str(target), str(height),
                                  str(attempt)], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
        first = child.stdout.readline().split()
        assert first[0] == "open"
        # A reopened writer is at least where the last run's returned appends had got to.
        assert int(first[1]) >= durable
        durable = int(first[1])
        if kills < 6:
            time.sleep(rng.uniform(0.0, 0.25))
            child.send_signal(signal.SIGKILL)
            out, _ = child.communicate(timeout=60)
            assert child.returncode in (-signal.SIGKILL, 0), out  # 0: it finished first
            kills += child.returncode == -signal.SIGKILL
            # the kill can cut the last line short ("size" without its number): whole lines only
            sizes = [int(parts[1]) for parts in map(str.split, out.splitlines())
                     if len(parts) == 2 and parts[0] in ("size", "done") and parts[1].isdigit()]
            if sizes:
                durable = sizes[-1]
            # The directory is consistent right after the kill: a writer opens it at a
            # size with the oracle's root.
            with TileWriter(directory, origin="crash.test/log", fsync=False, height=height) as writer:
                assert writer.size >= durable
                assert writer.root == oracle.root(writer.size)
            if durable == target:
                break
            continue  # a run that finished before the kill is not counted as one
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0, out
        assert out.splitlines()[-1] == f"done {target}"
        break
    assert kills >= 1
    check_tile_dir(directory, leaves, height, oracle=oracle)
    reader = TileReader(directory, height=height)
    for index in (0, target // 2, target - 1):
        merkle.verify_inclusion(merkle.leaf_hash(leaves[index]), index, target,
                                reader.inclusion_proof(index, target), oracle.root(target))
