"""The dashboard's ``/tlog/`` routes serve the index's C2SP tiles and nothing else."""
from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ledgerstream.core.config import Topics
from ledgerstream.core.tiles import TileWriter
from ledgerstream.tools.dashboard import tlog
from ledgerstream.tools.dashboard.app import build_app
from ledgerstream.tools.dashboard.auth import PUBLIC_PATHS
from ledgerstream.tools.dashboard.settings import DashboardSettings

pytestmark = pytest.mark.unit

LEAVES = [hashlib.sha256(b"entry %d" % i).digest() for i in range(300)]  # 32-byte entry hashes


@pytest.fixture()
def tiles_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "tiles"
    with TileWriter(directory, origin="example.test/log", fsync=False) as writer:
        writer.append(LEAVES)
    (tmp_path / "secret.pem").write_text("PRIVATE")
    return directory


def fetch(tiles_dir: Path, *paths: str) -> list[tuple[int, bytes, dict[str, str]]]:
    async def run() -> list[tuple[int, bytes, dict[str, str]]]:
        app = web.Application()
        tlog.add_routes(app, tiles_dir)
        async with TestClient(TestServer(app)) as client:
            out = []
            for path in paths:
                response = await client.get(path)
                out.append((response.status, await response.read(), dict(response.headers)))
            return out

    return asyncio.run(run())


def test_full_tile_is_rfc6962_leaf_hashes_and_immutable(tiles_dir: Path) -> None:
    (status, body, headers), = fetch(tiles_dir, "/tlog/tile/0/000")
    assert status == 200
    # the oracle: RFC 6962 leaf hashes computed here, not by core/tiles.py
    assert body == b"".join(hashlib.sha256(b"\x00" + leaf).digest() for leaf in LEAVES[:256])
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"


def test_partial_tile_bundle_and_checkpoint_are_not_cached(tiles_dir: Path) -> None:
    (s1, partial, h1), (s2, bundle, h2), (s3, note, h3) = fetch(
        tiles_dir, "/tlog/tile/0/001.p/44", "/tlog/tile/entries/001.p/44", "/tlog/checkpoint")
    assert (s1, s2, s3) == (200, 200, 200)
    assert partial == b"".join(hashlib.sha256(b"\x00" + leaf).digest() for leaf in LEAVES[256:])
    # entry bundle: each leaf as a big-endian uint16 length and its bytes (c2sp.org/tlog-tiles)
    assert bundle == b"".join(len(leaf).to_bytes(2, "big") + leaf for leaf in LEAVES[256:])
    assert note.split(b"\n")[:2] == [b"example.test/log", b"300"]
    assert h1["Cache-Control"] == h2["Cache-Control"] == h3["Cache-Control"] == "no-store"
    assert h3["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("path", [
    "/tlog/../secret.pem", "/tlog/tile/../../secret.pem", "/tlog/tile/0/0", "/tlog/tile/0/x000",
    "/tlog/tile/0/002", "/tlog/lock", "/tlog/tile/0/001.p/045", "/tlog/tile/0/001.p/256"])
def test_only_canonical_existing_tile_paths_are_served(tiles_dir: Path, path: str) -> None:
    (status, body, _), = fetch(tiles_dir, path)
    assert status == 404 and b"PRIVATE" not in body


def test_tlog_is_behind_the_dashboard_token(tmp_path: Path) -> None:
    settings = DashboardSettings(home=tmp_path, bootstrap="127.0.0.1:1", topics=Topics.with_prefix(),
                                 token="t" * 24, tiles_dir=tmp_path / "tiles")
    app = build_app(settings)
    canonical = {r.canonical for r in app.router.resources()}
    assert "/tlog/{path}" in canonical
    assert not any(p.startswith("/tlog") for p in PUBLIC_PATHS)
