"""The dashboard web application: read-only pages, a JSON API, and a server-sent event stream.

Every route is a GET. The overview page is static HTML + JS (no CDN, nothing external);
its data comes from ``/api/overview`` once and then only from ``/api/events``, which
pushes ``overview`` snapshots when something changed and each ``alert`` the moment it
is read from the alerts topic. The entry page is rendered on the server.
"""
from __future__ import annotations

import asyncio
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

from aiohttp import web

from ledgerstream.core.config import is_loopback
from ledgerstream.core.errors import ConfigError, LedgerstreamError
from ledgerstream.core.topic_reader import read_partition
from ledgerstream.index.db import SCHEMA_VERSION, get_meta
from ledgerstream.index.reads import IndexedLedger, open_for
from ledgerstream.tools.dashboard import pages, status_files, tlog
from ledgerstream.tools.dashboard.auth import host_middleware, security_headers, token_middleware
from ledgerstream.core.verify.trust import NoteTrust
from ledgerstream.tools.dashboard.checks import EntryChecker, EntryReport
from ledgerstream.tools.dashboard.follower import Follower
from ledgerstream.tools.dashboard.hub import Hub
from ledgerstream.tools.dashboard.indexed import IndexedEntries, IndexedOverview
from ledgerstream.tools.dashboard.ledger import LedgerView
from ledgerstream.tools.dashboard.settings import DashboardSettings

log = logging.getLogger("ledgerstream.dashboard")
PUSH_INTERVAL = 1.0
KEEPALIVE = 15.0


@dataclass
class Dashboard:
    """Everything the handlers share."""

    settings: DashboardSettings
    view: LedgerView
    checker: EntryChecker
    hub: Hub
    follower: Follower | None = None

    def open_index(self) -> IndexedLedger | None:
        """HOME's ledger index when it follows these topics under exactly the dashboard's
        trusted signer keys (another key set would be another ledger) in this version's layout
        (an older one is being rebuilt by its follower); None otherwise."""
        s = self.settings
        ix = open_for(s.home, s.bootstrap, s.topics)
        if ix is not None and (get_meta(ix.conn, "schema_version") != SCHEMA_VERSION or set(
                (get_meta(ix.conn, "trust") or {}).get("trusted_keys") or ()) != set(self.checker.config.trusted_keys)):
            ix.close()
            return None
        return ix

    @contextmanager
    def ledger(self) -> Iterator[IndexedOverview | LedgerView]:
        """Where the ledger questions are answered: the index when there is one (and the
        live follower of the ledger topics is stopped: its memory and start-up replay grow
        with the ledger), else the live view (following the topics again if it had stopped)."""
        ix = self.open_index()
        if ix is None:
            if self.follower is not None:
                self.follower.resume_ledger()  # the index went away: the live view catches up again
            yield self.view
            return
        if self.follower is not None:
            self.follower.stop_ledger("the ledger index answers")
        try:
            with ix.consistent():  # one committed state of the index for the whole answer
                yield IndexedOverview(ix)
        finally:
            ix.close()

    def overview(self) -> dict[str, Any]:
        home = self.settings.home
        with self.ledger() as ledger:
            return {
                "head": ledger.head(),
                "checkpoints": ledger.checkpoint_views(20),
                "verifiers": status_files.verifiers(home),
                "signers": status_files.signers(home),
                "agents": ledger.agent_views(),
                "graph": ledger.graph(status_files.graph_edges(home)),
                "alerts": self.view.alert_summary(),
                "foreign": ledger.foreign_views(20),
                "follower": dict(self.follower.state) if self.follower else {},
                "topics": self.settings.topics.as_dict(),
            }

    def fetch_entry(self, offset: int) -> bytes:
        """The raw record at ``offset`` of the entries topic (older entries are not cached)."""
        records = read_partition(self.settings.bootstrap, self.settings.topics.entries, 0, start=offset, timeout=15)
        try:
            for found, raw in records:
                if found == offset:
                    return raw
                break
        finally:
            records.close()
        raise LedgerstreamError(f"entry at offset {offset} is no longer on the topic")

    async def entry_report(self, seq: int) -> EntryReport:
        loop = asyncio.get_running_loop()
        indexed = await loop.run_in_executor(None, self.indexed_report, seq)
        if indexed is not None:
            return indexed
        offset, raw, agent_prev = self.view.locate(seq)
        if raw is None:
            raw = await loop.run_in_executor(None, self.fetch_entry, offset)
        return await loop.run_in_executor(None, self.checker.report, self.view, seq, offset, raw, agent_prev)

    def indexed_report(self, seq: int) -> EntryReport | None:
        """The entry's report from HOME's ledger index (``indexed.py``) when it has indexed
        ``seq``; None to use the live view (no index, another ledger, or not indexed yet)."""
        ix = self.open_index()
        if ix is None:
            return None
        try:
            entries = IndexedEntries(ix)
            if not entries.has(seq):
                return None
            offset, raw, agent_prev = entries.locate(seq)
            report = self.checker.report(entries, seq, offset, raw, agent_prev)  # type: ignore[arg-type]
            report.source = "index"
            return report
        finally:
            ix.close()


DASHBOARD = web.AppKey("dashboard", Dashboard)
STATIC = Path(str(resources.files("ledgerstream.tools.dashboard") / "static"))


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


def _seq(request: web.Request) -> int:
    raw = request.match_info["seq"]
    if not raw.isdigit():
        raise web.HTTPNotFound(text=f"no entry {raw!r}: seq is a non-negative integer\n")
    return int(raw)


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Content-Type": "text/html; charset=utf-8"})


async def entry_page(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    seq = _seq(request)
    try:
        report = await dash.entry_report(seq)
    except LookupError as exc:
        return web.Response(text=pages.not_found(seq, str(exc)), status=404, content_type="text/html")
    except LedgerstreamError as exc:
        return web.Response(text=pages.not_found(seq, str(exc)), status=502, content_type="text/html")
    return web.Response(text=pages.entry(report), content_type="text/html")


async def api_entry(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    seq = _seq(request)
    try:
        report = await dash.entry_report(seq)
    except LookupError as exc:
        return _json({"error": str(exc)}, 404)
    except LedgerstreamError as exc:
        return _json({"error": str(exc)}, 502)
    return _json(report.as_json())


async def api_overview(request: web.Request) -> web.Response:
    return _json(request.app[DASHBOARD].overview())


async def api_head(request: web.Request) -> web.Response:
    with request.app[DASHBOARD].ledger() as ledger:
        return _json(ledger.head())


async def api_checkpoints(request: web.Request) -> web.Response:
    limit = request.query.get("limit", "50")
    if not limit.isdigit():
        raise web.HTTPBadRequest(text="limit must be a non-negative integer\n")
    with request.app[DASHBOARD].ledger() as ledger:
        return _json(ledger.checkpoint_views(int(limit)))


async def api_verifiers(request: web.Request) -> web.Response:
    return _json(status_files.verifiers(request.app[DASHBOARD].settings.home))


async def api_signers(request: web.Request) -> web.Response:
    return _json(status_files.signers(request.app[DASHBOARD].settings.home))


async def api_agents(request: web.Request) -> web.Response:
    with request.app[DASHBOARD].ledger() as ledger:
        return _json(ledger.agent_views())


async def api_graph(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    with dash.ledger() as ledger:
        return _json(ledger.graph(status_files.graph_edges(dash.settings.home)))


async def api_alerts(request: web.Request) -> web.Response:
    after = request.query.get("after", "0")
    if not after.isdigit():
        raise web.HTTPBadRequest(text="after must be a non-negative integer\n")
    view = request.app[DASHBOARD].view
    return _json({"summary": view.alert_summary(), "alerts": view.alert_views(int(after))})


async def healthz(request: web.Request) -> web.Response:
    """Public (no token: docker's health check has none), so it tells only whether the
    followers run, never anything about the ledger."""
    dash = request.app[DASHBOARD]
    return _json({"ok": True, "follower": dict(dash.follower.state) if dash.follower else {}})


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``overview`` snapshots and ``alert`` records as they happen."""
    dash = request.app[DASHBOARD]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff"})
    await response.prepare(request)
    queue = dash.hub.subscribe()
    try:
        await response.write(b"retry: 2000\n\n")
        await _send(response, "overview", dash.overview())
        last = request.headers.get("Last-Event-ID", "")
        if last.isdigit():  # a reconnecting page: replay the alerts it missed
            for alert in dash.view.alert_views(int(last)):
                await _send(response, "alert", alert, alert["index"])
        while True:
            try:
                name, data, event_id = await asyncio.wait_for(queue.get(), KEEPALIVE)
            except asyncio.TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if name == "close":
                break
            await _send(response, name, data, event_id)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        dash.hub.unsubscribe(queue)
    return response


async def _send(response: web.StreamResponse, name: str, data: Any, event_id: int | None = None) -> None:
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines += [f"data: {line}" for line in json.dumps(data, default=str).splitlines() or ["null"]]
    await response.write(("\n".join(lines) + "\n\n").encode())


async def _pusher(app: web.Application) -> None:
    """Push an ``overview`` snapshot every second to the open pages (ages and rates move)."""
    dash = app[DASHBOARD]
    while True:
        await asyncio.sleep(PUSH_INTERVAL)
        if dash.hub.listeners:
            dash.hub.publish("overview", dash.overview())


async def _start(app: web.Application) -> None:
    dash = app[DASHBOARD]
    loop = asyncio.get_running_loop()

    def on_alert(alert: dict[str, Any]) -> None:  # called on a Kafka thread
        loop.call_soon_threadsafe(dash.hub.publish, "alert", alert, alert["index"])

    s = dash.settings
    dash.follower = Follower(s.bootstrap, s.topics, dash.view, on_alert, log=log.warning)
    ix = dash.open_index()
    if ix is not None:
        ix.close()
    dash.follower.start(ledger=ix is None)
    app[PUSHER] = asyncio.create_task(_pusher(app))


async def _shutdown(app: web.Application) -> None:
    app[DASHBOARD].hub.close_all()  # ends the event streams so shutdown does not wait for them


async def _cleanup(app: web.Application) -> None:
    app[PUSHER].cancel()
    follower = app[DASHBOARD].follower
    if follower is not None:
        await asyncio.get_running_loop().run_in_executor(None, follower.stop)


PUSHER = web.AppKey("pusher", asyncio.Task)


def build_app(settings: DashboardSettings) -> web.Application:
    checker = EntryChecker.from_files(list(settings.public_keys), settings.tsa_ca, NoteTrust.load(settings.home))
    dash = Dashboard(settings, LedgerView(checker.config, checker.checkpoint_signature, settings.trusted_verifiers), checker, Hub())
    app = web.Application(middlewares=[security_headers, host_middleware(settings.host, settings.allowed_hosts),
                                       token_middleware(settings.token)])
    app[DASHBOARD] = dash
    app.router.add_get("/", index)
    app.router.add_get("/entry/{seq}", entry_page)
    app.router.add_get("/api/overview", api_overview)
    app.router.add_get("/api/head", api_head)
    app.router.add_get("/api/checkpoints", api_checkpoints)
    app.router.add_get("/api/verifiers", api_verifiers)
    app.router.add_get("/api/signers", api_signers)
    app.router.add_get("/api/agents", api_agents)
    app.router.add_get("/api/graph", api_graph)
    app.router.add_get("/api/alerts", api_alerts)
    app.router.add_get("/api/entry/{seq}", api_entry)
    app.router.add_get("/api/events", events)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static", STATIC, show_index=False)
    if settings.tiles_dir is not None:
        tlog.add_routes(app, settings.tiles_dir)
    app.on_startup.append(_start)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
    return app


def serve(settings: DashboardSettings) -> None:
    """Run until SIGINT/SIGTERM."""
    if not settings.token and not is_loopback(settings.host):  # resolve() refuses this already
        raise ConfigError(f"refusing to serve on {settings.host} without a token")
    web.run_app(build_app(settings), host=settings.host, port=settings.port, shutdown_timeout=5,
                print=lambda msg: log.warning("%s", msg), access_log=None)
