"""``ledgerstream mcp proxy``: record and govern every tool call between an MCP client and
any MCP server (docs/mcp.md)."""
from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click

from ledgerstream.cli.common import EXIT_USAGE, bootstrap_option, fail, info, resolve_home
from ledgerstream.core.errors import ConfigError


@click.command(context_settings={"help_option_names": ["-h", "--help"], "ignore_unknown_options": True,
                              "allow_interspersed_args": False})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--agent-id", default="mcp-proxy", show_default=True, metavar="ID",
              help="Agent id the tool calls are recorded for.")
@click.option("--server-name", default=None, metavar="NAME",
              help="Server segment of the action types [default: the serverInfo.name the server reports].")
@click.option("--session-id", default=None, metavar="S",
              help="Session id of this connection's calls [default: mcp-<UUIDv7>, printed on stderr].")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Policy file (deny / require_approval rules over mcp:<server>:<tool>) "
                   "[default: $LEDGERSTREAM_HOME/policy.yaml|yml|json if present].")
@click.option("--hash-only", is_flag=True, help="Record only the salted commitments of arguments and results.")
@click.option("--redact", "redact", multiple=True, metavar="PATH",
              help="Replace this field before it is committed (a key at any depth, or a dotted path such as "
                   "arguments.password); repeatable.")
@click.option("--spool", "spool_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Spool root [default: $LEDGERSTREAM_HOME/spool].")
@bootstrap_option
def proxy(command: tuple[str, ...], agent_id: str, server_name: str | None, session_id: str | None,
          policy_path: Path | None, hash_only: bool, redact: tuple[str, ...], spool_dir: Path | None,
          bootstrap: str | None) -> None:
    """Run the MCP server COMMAND (after '--') and stand in for it on stdio.

    Configure your MCP client to launch, for example,
    'ledgerstream mcp proxy --agent-id billing-bot -- uvx mcp-server-time'
    instead of the server itself. Every message passes through unchanged; each tools/call
    is checked against the policy before it is forwarded and recorded as two linked
    actions of type mcp:<server>:<tool> (the request with its arguments, the response
    with its result or error and duration) in one session per connection. A refused call
    never reaches the server: the client gets a tool result with isError=true naming the
    rule, and the refusal is recorded. Recording never waits for Kafka: events go through
    the agent's spool (deliver leftovers with 'ledgerstream sync').

    Only the stdio transport is supported (not streamable HTTP). Exit status: the
    server's; 2 if the server cannot be started or the options are wrong.
    """
    try:
        from ledgerstream.mcp.proxy import McpProxy, ServerStartError
    except ImportError as exc:
        fail(f"ledgerstream mcp proxy needs the MCP SDK: pip install 'ledgerstream[mcp]' ({exc})", EXIT_USAGE)
    from ledgerstream.mcp.proxy_calls import ToolCallLedger
    from ledgerstream.producers.ledger import connect
    from ledgerstream.producers.uuid7 import uuid7
    from ledgerstream.core.verify import find_policy

    logging.basicConfig(format="ledgerstream mcp proxy: %(levelname)s %(message)s", level=logging.WARNING)
    logging.getLogger("ledgerstream.mcp").setLevel(logging.INFO)
    # librdkafka reports a down broker every few ms; the spool keeps the events meanwhile and
    # the exit message counts what is left in it
    logging.getLogger("ledgerstream.producer.kafka").setLevel(logging.CRITICAL)
    try:
        policy = find_policy(resolve_home(None), policy_path)
        ledger = connect(agent_id, bootstrap, spool_dir=spool_dir, policy=policy, hash_only=hash_only,
                         redact=redact, adapter="mcp-proxy")
    except (ConfigError, ValueError) as exc:
        fail(str(exc), EXIT_USAGE)
    session_id = session_id or f"mcp-{uuid7()}"
    calls = ToolCallLedger(ledger, session_id, server_name or Path(command[0]).name)
    info(f"ledgerstream mcp proxy: agent {agent_id}, session {session_id}"
         + (f", policy {policy}" if policy else ", no policy"))
    try:
        status = asyncio.run(McpProxy(command, calls, learn_server_name=server_name is None).run())
    except ServerStartError as exc:
        fail(str(exc), EXIT_USAGE)
    finally:
        # MCP clients send SIGTERM ~2 s after closing our stdin, SIGKILL 2 s later: deliver
        # what we can meanwhile (everything is journaled to the spool first in any case)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        undelivered = ledger.close(timeout=2.0)
    if undelivered:
        info(f"ledgerstream mcp proxy: {undelivered} events kept in the spool {ledger.stats()['spool']} "
             "(delivered later, or by 'ledgerstream sync')")
    raise SystemExit(status)
