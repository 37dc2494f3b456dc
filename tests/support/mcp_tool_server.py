"""A small MCP server written with the official SDK (FastMCP), for the proxy tests.

Run as ``python tests/support/mcp_tool_server.py`` (stdio). Every tool call it actually
executes is appended as one JSON line ``{"tool", "arguments"}`` to the file named by
``$MCP_TOOL_LOG`` (if set), so a test can tell what reached the server.
"""
from __future__ import annotations

import json
import os

from mcp.server.fastmcp import FastMCP

NAME = "ledgerstream-test-tools"

server = FastMCP(NAME)


def _executed(tool: str, **arguments: object) -> None:
    path = os.environ.get("MCP_TOOL_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    _executed("echo", text=text)
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    _executed("add", a=a, b=b)
    return a + b


@server.tool()
def fail(message: str) -> str:
    """Raise an error with the given message."""
    _executed("fail", message=message)
    raise ValueError(message)


@server.tool()
def delete_user(user_id: str) -> str:
    """Delete a user (the tests' policies deny it)."""
    _executed("delete_user", user_id=user_id)
    return f"deleted {user_id}"


if __name__ == "__main__":
    server.run("stdio")
