"""``ledgerstream mcp serve``: the ledger's tools and resources over MCP (docs/mcp.md).

Built on the official MCP Python SDK (FastMCP). Each tool is a thin async wrapper that runs
the blocking library call (tools_read, tools_record) in a worker thread, so one slow read
of Kafka never stalls the session, and turns every failure into an MCP tool error
(``isError``) with a readable message: a bad argument or an unreachable Kafka never stops
the server. Results are JSON objects, sent both as structured content and as JSON text.
"""
from __future__ import annotations

import functools
import logging
import sys
from typing import Annotated, Any, Callable, Literal

import anyio
import click
from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from ledgerstream.core.errors import ConfigError, LedgerstreamError
from ledgerstream.mcp import tools_read
from ledgerstream.mcp.server_config import ServeConfig
from ledgerstream.mcp.tools_record import MAX_WAIT_SEQ, Recorder
from ledgerstream.tools.bundle_export import ExportError

log = logging.getLogger("ledgerstream.mcp.server")

Transport = Literal["stdio", "http"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
MAX_LIMIT = 1000

INSTRUCTIONS = """\
ledgerstream is a tamper-evident, append-only ledger of AI-agent actions on Apache Kafka.
Use record_action to record what an agent did; search to find entries by agent, session,
action type (glob) or time; replay to see entries re-verified with their checks and causal
links; verify to check the whole ledger; prove_inclusion for an RFC 9162 proof of one
entry; export_bundle to write offline-verifiable evidence. Times are ISO 8601 (UTC if no
zone) or a duration ago such as 15m, 2h, 7d. Resources: ledgerstream://checkpoints (signed
tree heads) and ledgerstream://alerts (the verifiers' findings)."""

READ_ONLY = ToolAnnotations(readOnlyHint=True, openWorldHint=False)

# the filter arguments search, replay and export_bundle share (replay's selection)
AgentId = Annotated[str | None, Field(description="Only this agent id.")]
SessionId = Annotated[str | None, Field(description="Only this session id.")]
ActionGlob = Annotated[str | None, Field(description="Only action types matching this glob, e.g. 'tool:*'.")]
Since = Annotated[str | None, Field(description="Ledger time >= this: ISO 8601 or a duration ago ('15m', '2h').")]
Until = Annotated[str | None, Field(description="Ledger time < this (same forms as since).")]
SeqRange = Annotated[str | None, Field(description="Sequence numbers 'A..B' inclusive, 'A..', '..B' or 'N'.")]
FollowLinks = Annotated[bool, Field(description="Add the causal closure: every event linked to or from the "
                                                "selected ones, across agents.")]


def build_server(cfg: ServeConfig, recorder: Recorder, *, host: str = "127.0.0.1", port: int = 0,
                 log_level: LogLevel = "WARNING") -> FastMCP:
    """The FastMCP app with the six ledger tools and the two resources (``host`` and ``port``
    matter for HTTP only: on loopback the SDK then checks Host and Origin headers)."""
    app = FastMCP("ledgerstream", instructions=INSTRUCTIONS, host=host, port=port, log_level=log_level)

    @app.tool(annotations=ToolAnnotations(title="Record an agent action", readOnlyHint=False,
                                          destructiveHint=False, idempotentHint=False, openWorldHint=False))
    async def record_action(
        agent_id: Annotated[str, Field(description="The agent that acted, e.g. 'billing-bot'.")],
        action_type: Annotated[str, Field(description="What it did: colon-separated segments of letters, digits, "
                                                      "'_', '.', '-', e.g. 'tool:search'.")],
        payload: Annotated[dict[str, Any] | None, Field(description="Details as a JSON object; the ledger keeps "
                                                                     "a salted commitment to it.")] = None,
        session_id: Annotated[str | None, Field(description="Session to record it under.")] = None,
        links: Annotated[list[str] | None, Field(description="Causal links to other events: 'AGENT:EVENT_ID' or "
                                                             "link tokens.")] = None,
        wait_for_seq: Annotated[float, Field(ge=0, le=MAX_WAIT_SEQ, description="Seconds to wait until the signer "
                                                                                "sequenced it (0: do not wait).")] = 0,
    ) -> dict[str, Any]:
        """Record one agent action in the ledger. Returns its event_id; "delivered" once Kafka
        acknowledged it ("spooled" if Kafka is unreachable: kept on disk, sent later); with
        wait_for_seq, also its ledger "seq" once the signer sequenced it."""
        return await _call(recorder.record, agent_id, action_type, payload, session_id=session_id, links=links,
                           wait_for_seq=wait_for_seq)

    @app.tool(annotations=READ_ONLY)
    async def verify() -> dict[str, Any]:
        """Verify the whole ledger end to end, as 'ledgerstream verify --json': hash chain, every
        agent's chain, entry signatures, checkpoints, timestamp tokens, links and approvals.
        "ok" is true only when intact; "errors" lists findings."""
        return await _call(tools_read.verify, cfg)

    @app.tool(annotations=READ_ONLY)
    async def search(agent_id: AgentId = None, session_id: SessionId = None, action_type: ActionGlob = None,
                     since: Since = None, until: Until = None,
                     limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="At most this many (the newest) "
                                                                                 "entries.")] = 50) -> dict[str, Any]:
        """Find ledger entries matching all given filters, oldest first (the newest `limit`):
        seq, event_id, agent_id, session_id, action_type, time and entry_hash of each, plus
        how many matched. Fast; does not re-verify (use replay for that)."""
        return await _call(tools_read.search, cfg, agent_id=agent_id, session_id=session_id,
                           action_type=action_type, since=since, until=until, limit=limit)

    @app.tool(annotations=READ_ONLY)
    async def replay(agent_id: AgentId = None, session_id: SessionId = None, action_type: ActionGlob = None,
                     since: Since = None, until: Until = None, seq_range: SeqRange = None,
                     follow_links: FollowLinks = False,
                     limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="List at most this many (the "
                                                                                 "newest) entries.")] = 100,
                     ) -> dict[str, Any]:
        """Replay what happened, as 'ledgerstream replay --json': the selected entries (and with
        follow_links their causal closure across agents), each re-verified (hash, signature,
        payload, chains, links, inclusion, timestamp) with its payload and checks."""
        return await _call(tools_read.replay, cfg, agent_id=agent_id, session_id=session_id,
                           action_type=action_type, since=since, until=until, seq_range=seq_range,
                           follow_links=follow_links, limit=limit)

    @app.tool(annotations=READ_ONLY)
    async def prove_inclusion(
        seq: Annotated[int, Field(ge=0, description="Sequence number of the entry.")],
        tree_size: Annotated[int | None, Field(ge=1, description="Tree size to prove against (default: the "
                                                                  "latest checkpoint covering the entry).")] = None,
    ) -> dict[str, Any]:
        """RFC 9162 inclusion proof that entry `seq` is leaf `seq` of the ledger's Merkle tree of
        `tree_size` entries, as 'ledgerstream prove inclusion --json': leaf_hash, root_hash,
        audit_path (hex)."""
        return await _call(tools_read.prove_inclusion, cfg, seq, tree_size)

    @app.tool(annotations=ToolAnnotations(title="Export an evidence bundle", readOnlyHint=False,
                                          destructiveHint=False, idempotentHint=False, openWorldHint=False))
    async def export_bundle(
        out_path: Annotated[str, Field(description="ZIP file to create (must not exist yet).")],
        agent_id: AgentId = None, session_id: SessionId = None, action_type: ActionGlob = None,
        since: Since = None, until: Until = None, seq_range: SeqRange = None, follow_links: FollowLinks = False,
        redact_payloads: Annotated[bool, Field(description="Leave payloads out (their commitments still "
                                                           "verify).")] = False,
    ) -> dict[str, Any]:
        """Write an evidence bundle of the selected entries that anyone can verify offline
        ('ledgerstream verify-bundle'), as 'ledgerstream export bundle --json'. Returns the
        path, the number of entries and the file's SHA-256 (bundle_sha256)."""
        return await _call(tools_read.export_bundle, cfg, out_path, agent_id=agent_id, session_id=session_id,
                           action_type=action_type, since=since, until=until, seq_range=seq_range,
                           follow_links=follow_links, redact_payloads=redact_payloads)

    @app.resource("ledgerstream://checkpoints", name="checkpoints", mime_type="application/json",
                  description="Signed checkpoints (tree heads), oldest first, as 'checkpoints list --json'.")
    async def checkpoints() -> list[dict[str, Any]]:
        return await _call(tools_read.checkpoints, cfg)

    @app.resource("ledgerstream://alerts", name="alerts", mime_type="application/json",
                  description="The verifiers' alerts, oldest first, as 'alerts --json'.")
    async def alerts() -> list[dict[str, Any]]:
        return await _call(tools_read.alerts, cfg)

    return app


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` in a worker thread; any failure becomes a ToolError with a clear message."""
    try:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
    except ExportError as exc:
        raise ToolError("; ".join([str(exc), *exc.problems[:20]])) from exc
    except click.ClickException as exc:  # bad filter values, from the replay selection
        raise ToolError(exc.format_message()) from exc
    except (LedgerstreamError, ValueError, TypeError, LookupError) as exc:
        raise ToolError(str(exc)) from exc
    except Exception as exc:
        log.exception("tool call failed")
        raise ToolError(f"internal error ({type(exc).__name__}): {exc}") from exc


def serve(cfg: ServeConfig, *, transport: Transport, host: str, port: int, log_level: LogLevel) -> None:
    """Run until the client disconnects (stdio) or the process is stopped (HTTP); queued
    actions are delivered or left in the spools on the way out."""
    # plain lines on stderr, set before FastMCP's own set-up (which then keeps them)
    logging.basicConfig(level=log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    recorder = Recorder(cfg)
    app = build_server(cfg, recorder, host=host, port=port, log_level=log_level)
    try:
        if transport == "stdio":
            app.run("stdio")
        else:
            anyio.run(_serve_http, app, host, port, log_level)
    finally:
        recorder.close()


async def _serve_http(app: FastMCP, host: str, port: int, log_level: LogLevel) -> None:
    """Streamable HTTP at /mcp under uvicorn, whose logs (access lines too) go to our stderr
    handler instead of its default configuration, which prints access lines on stdout."""
    import uvicorn

    config = uvicorn.Config(app.streamable_http_app(), host=host, port=port, log_level=log_level.lower(),
                            log_config=None)
    try:
        await uvicorn.Server(config).serve()
    except SystemExit as exc:  # uvicorn's answer to a port it cannot bind (logged just before)
        raise ConfigError(f"cannot serve on {host}:{port}") from exc
