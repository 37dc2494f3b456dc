"""Tile directories written by ledgerstream/core/tiles.py, read by Go's golang.org/x/mod/sumdb/tlog.

tests/interop/tlogclient is a small Go program: tlog.TileHashReader authenticates every
tile it fetches against a trusted (size, root), tlog.ProveRecord / tlog.CheckRecord prove
leaves whose data it takes from the entry bundles (hashed with tlog.RecordHash, i.e.
SHA-256(0x00 || data)), tlog.ProveTree / tlog.CheckTree prove consistency. It fetches over
HTTP from a Python http.server on 127.0.0.1 serving the directory under /tlog/ (the dev
stack's dashboard serving the index's tiles: tests/e2e/test_tlog_dev_stack.py). Its proofs
must equal ours byte for byte.

The test is skipped when ``go`` is not on PATH; a failed build fails it under CI=true (and
skips it elsewhere, e.g. on a machine without the Go module proxy).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ledgerstream.core import tiles
from ledgerstream.core.tiles import TileReader, TileWriter
from support.tlogclient import build_tlogclient, run_client

pytestmark = pytest.mark.integration

def _leaf(i: int) -> bytes:
    """Ledger-shaped leaf data: a 32-byte 'entry hash'."""
    return hashlib.sha256(b"entry %d" % i).digest()


@pytest.fixture(scope="module")
def tlogclient() -> Path:
    return build_tlogclient()


class _Handler(SimpleHTTPRequestHandler):
    requests: list[tuple[str, int]]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.server.requests.append((self.path, int(code)))  # type: ignore[attr-defined]


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[Path, str, list[tuple[str, int]]]]:
    """(tile directory, its URL prefix, the requests served): the directory is /tlog/."""
    www = tmp_path / "www"
    log_dir = www / "tlog"
    log_dir.mkdir(parents=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Handler(*a, directory=str(www)))
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        prefix = f"http://127.0.0.1:{server.server_address[1]}/tlog/"
        yield log_dir, prefix, server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def write_log(directory: Path, size: int, cuts: list[int], height: int = 8) -> None:
    with TileWriter(directory, origin="ledgerstream/interop", height=height, fsync=False) as writer:
        position = 0
        for cut in [*cuts, size]:
            writer.append([_leaf(i) for i in range(position, cut)])
            position = cut


CASES = [
    # (height, size, batch cuts, indexes, old sizes)
    (8, 70_000, [300, 1000, 65536], [0, 1, 255, 256, 299, 300, 65535, 65536, 69999, 41234],
     [1, 255, 256, 300, 65536, 69999]),
    (8, 1, [], [0], []),
    (8, 256, [5], [0, 5, 255], [5]),
    (8, 257, [256], [0, 256], [1, 256]),
    (2, 1000, [3, 17, 64, 513], [0, 3, 4, 63, 64, 511, 512, 999], [1, 3, 17, 64, 513, 999]),
]


@pytest.mark.parametrize("height,size,cuts,indexes,old_sizes", CASES, ids=lambda v: str(v)[:20])
def test_go_tlog_verifies_our_tiles(tlogclient, served, height, size, cuts, indexes, old_sizes):
    log_dir, prefix, requests = served
    write_log(log_dir, size, cuts, height)
    reader = TileReader(log_dir, height=height)
    root = reader.root(size)
    for old_size in old_sizes or [0]:
        old_root = reader.root(old_size) if old_size else None
        code, report = run_client(tlogclient, prefix, size, root, indexes=indexes, old_size=old_size,
                                  old_root=old_root, height=height)
        assert code == 0, json.dumps(report, indent=1)[:3000]
        assert report["ok"] and report["root_ok"]
        assert report["root_from_tiles"] == root.hex()
        assert report["tlog_module"] == "golang.org/x/mod@v0.43.0"
        assert report["checkpoint"] == {"origin": "ledgerstream/interop", "size": size, "root": root.hex()}
        for result in report["inclusion"]:
            index = result["index"]
            assert result["ok"], result
            assert bytes.fromhex(result["leaf_data"]) == _leaf(index)
            assert result["proof"] == [h.hex() for h in reader.inclusion_proof(index, size)]
        if old_size:
            consistency = report["consistency"]
            assert consistency["ok"], consistency
            assert consistency["old_root_from_tiles"] == old_root.hex()
            assert consistency["proof"] == [h.hex() for h in reader.consistency_proof(old_size, size)]
    # Go asked only for C2SP paths (after dropping tlog's height element) and got them all.
    assert requests
    for path, status in requests:
        relative = path.removeprefix("/tlog/")
        assert relative == "checkpoint" or tiles.parse_tile_path(relative, height=height), path
        assert status == 200, path


def test_go_reads_an_old_tree_size_after_its_partial_tiles_are_gone(tlogclient, served):
    """A client holding the checkpoint of size 300 after the log grew to 70,000: tile
    0/001.p/44 was deleted when 0/001 became full; tlog fetches the partial, gets a 404 and
    falls back to the full tile, as C2SP allows."""
    log_dir, prefix, requests = served
    write_log(log_dir, 70_000, [300])
    assert not (log_dir / "tile/0/001.p").exists()
    root_300 = tiles.tree_hash(log_dir, 300)
    code, report = run_client(tlogclient, prefix, 300, root_300, indexes=[0, 299], old_size=256,
                              old_root=tiles.tree_hash(log_dir, 256))
    assert code == 0, report
    assert ("/tlog/tile/0/001.p/44", 404) in requests
    assert ("/tlog/tile/0/001", 200) in requests
    assert report["inclusion"][1]["proof"] == [h.hex() for h in tiles.inclusion_proof(log_dir, 299, 300)]


def test_go_reads_a_directory_too(tlogclient, tmp_path):
    write_log(tmp_path, 600, [100])
    root = tiles.tree_hash(tmp_path, 600)
    code, report = run_client(tlogclient, str(tmp_path), 600, root, indexes=[0, 599], old_size=100,
                              old_root=tiles.tree_hash(tmp_path, 100))
    assert code == 0 and report["ok"], report


def test_go_rejects_tampered_tiles_and_wrong_roots(tlogclient, served):
    log_dir, prefix, _ = served
    write_log(log_dir, 1000, [])
    root = tiles.tree_hash(log_dir, 1000)
    root_500 = tiles.tree_hash(log_dir, 500)

    code, report = run_client(tlogclient, prefix, 1000, bytes(32), indexes=[7])
    assert code == 1 and not report["root_ok"] and "inconsistent" in report["root_error"]

    code, report = run_client(tlogclient, prefix, 1000, root, old_size=500, old_root=root)
    assert code == 1 and report["root_ok"] and not report["consistency"]["ok"]

    code, report = run_client(tlogclient, prefix, 1000, root, old_size=500, old_root=root_500)
    assert code == 0

    # one flipped bit in a leaf hash of a full level-0 tile
    tile = log_dir / "tile/0/001"
    good = tile.read_bytes()
    tile.write_bytes(good[:40] + bytes([good[40] ^ 1]) + good[41:])
    code, report = run_client(tlogclient, prefix, 1000, root, indexes=[257])
    assert code == 1 and "inconsistent" in report["inclusion"][0]["error"]
    tile.write_bytes(good)

    # an entry bundle whose data is not the leaf the tiles commit to
    bundle = log_dir / "tile/entries/003.p/232"
    good = bundle.read_bytes()
    bundle.write_bytes(good[:2] + bytes(32) + good[34:])
    code, report = run_client(tlogclient, prefix, 1000, root, indexes=[768, 769])
    assert code == 1
    assert "does not hash" in report["inclusion"][0]["error"] and report["inclusion"][1]["ok"]


def test_go_client_usage_errors(tlogclient):
    done = subprocess.run([str(tlogclient), "-size", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "need -prefix" in done.stderr
