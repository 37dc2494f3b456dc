"""The index's C2SP tlog-tiles, served read-only under ``/tlog/`` (issue 17, item 4).

Only the spec's paths are served: ``checkpoint``, ``tile/<L>/<N>[.p/<W>]`` and
``tile/entries/<N>[.p/<W>]``, each parsed by :func:`ledgerstream.core.tiles.parse_tile_path`
(canonical spelling only), so no request names any other file. Full tiles never change and
are cached as immutable; partial tiles and the checkpoint are not cached.
"""
from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ledgerstream.core.tiles import TILE_HEIGHT, parse_tile_path

PREFIX = "/tlog/"
TILES_DIR = web.AppKey("tiles_dir", Path)
IMMUTABLE = "public, max-age=31536000, immutable"


async def tlog_file(request: web.Request) -> web.StreamResponse:
    tiles_dir = request.app[TILES_DIR]
    path = request.match_info["path"]
    if path == "checkpoint":
        cache = "no-store"
    else:
        try:
            coord = parse_tile_path(path)
        except ValueError:
            raise web.HTTPNotFound(text="404 Not Found: not a tlog-tiles path\n") from None
        cache = IMMUTABLE if coord.width == 1 << TILE_HEIGHT else "no-store"
    try:
        data = (tiles_dir / path).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise web.HTTPNotFound(text=f"404 Not Found: {path} (not indexed yet, or a partial tile "
                                    "that a full one replaced)\n") from None
    content_type = "text/plain; charset=utf-8" if path == "checkpoint" else "application/octet-stream"
    return web.Response(body=data, headers={"Content-Type": content_type, "Cache-Control": cache,
                                            "X-Content-Type-Options": "nosniff"})


def add_routes(app: web.Application, tiles_dir: Path) -> None:
    app[TILES_DIR] = tiles_dir
    app.router.add_get(PREFIX + "{path:.+}", tlog_file)
