"""``ledgerstream mcp``: the ledger over the Model Context Protocol (docs/mcp.md).

``serve`` is an MCP server whose tools read and write the ledger; ``proxy`` sits between an
MCP client and any MCP server and records (and governs) every tool call.
"""
from __future__ import annotations

import click

from ledgerstream.cli.mcp_proxy import proxy
from ledgerstream.cli.mcp_serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def mcp() -> None:
    """The ledger over the Model Context Protocol (MCP): a server and a governing proxy."""


mcp.add_command(serve)
mcp.add_command(proxy)
