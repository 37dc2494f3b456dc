"""``ledgerstream mcp serve``: run the ledger's MCP server (stdio or streamable HTTP)."""
from __future__ import annotations

from pathlib import Path

import click

from ledgerstream.cli.common import EXIT_USAGE, bootstrap_option, fail, home_option, info, resolve_home
from ledgerstream.cli.verify import trust_options
from ledgerstream.core.config import is_loopback

DEFAULT_PORT = 8765


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True,
              help="stdio: the client starts this command and speaks MCP on its stdin/stdout; "
                   "http: streamable HTTP at http://HOST:PORT/mcp.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (http only).")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on (http only).")
@click.option("--allow-remote", is_flag=True,
              help="Allow a --host other than loopback. The server has no authentication and can record "
                   "actions into the ledger: put it behind an authenticating proxy.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True, help="Logging on stderr (stdout is the protocol with stdio).")
@trust_options
@bootstrap_option
@home_option
def serve(transport: str, host: str, port: int, allow_remote: bool, log_level: str, trusted_keys: tuple[Path, ...],
          tsa_ca: Path | None, policy: Path | None, bootstrap: str | None, home: Path | None) -> None:
    """Serve the ledger over the Model Context Protocol (MCP).

    Tools: record_action, verify, search, replay, prove_inclusion, export_bundle; resources:
    ledgerstream://checkpoints and ledgerstream://alerts (docs/mcp.md). Kafka and the trust
    options are those of 'ledgerstream verify', resolved on each call, so the server may
    start before the dev stack. Exit status: 0 when the client disconnects (stdio), 130
    after Ctrl-C, 143 after SIGTERM, 2 usage or environment error.
    """
    from ledgerstream.mcp.server import serve as run
    from ledgerstream.mcp.server_config import ServeConfig
    from ledgerstream.core.verify import find_policy

    if transport == "http" and not is_loopback(host) and not allow_remote:
        fail(f"--host {host} is not a loopback address: anyone who reaches it could record actions into the "
             "ledger and read it; pass --allow-remote to do so anyway (behind an authenticating proxy)", EXIT_USAGE)
    home_dir = resolve_home(home)
    if tsa_ca is not None and not tsa_ca.is_file():
        fail(f"TSA CA {tsa_ca} does not exist", EXIT_USAGE)
    find_policy(home_dir, policy)  # a missing --policy file is a usage error now, not at the first call
    cfg = ServeConfig(home=home_dir, bootstrap_option=bootstrap, trusted_keys=trusted_keys, tsa_ca=tsa_ca,
                      policy=policy)
    if transport == "http":
        info(f"ledgerstream MCP server on http://{host}:{port}/mcp (streamable HTTP); Ctrl-C stops")
        if not is_loopback(host):
            info("warning: listening beyond loopback without authentication (--allow-remote)")
    run(cfg, transport="stdio" if transport == "stdio" else "http", host=host, port=port,
        log_level=log_level.upper())  # type: ignore[arg-type]
