"""``ledgerstream mcp serve`` without Kafka: the SDK's own client over in-memory streams.

What needs no broker: the tool list and schemas, argument validation, the errors a missing
Kafka gives (tool errors, never a dead server), offline recording into the spool, and the
refusal to listen beyond loopback. The e2e file drives the real stack over stdio and HTTP.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Awaitable, Callable

import anyio
import pytest
from click.testing import CliRunner
from mcp import ClientSession
from mcp.shared.exceptions import McpError
from mcp.shared.memory import create_connected_server_and_client_session
from pydantic import AnyUrl

from ledgerstream.cli.mcp_serve import is_loopback, serve
from ledgerstream.mcp.server import build_server
from ledgerstream.mcp.server_config import ServeConfig
from ledgerstream.mcp.tools_record import Recorder

pytestmark = pytest.mark.unit

TOOLS = {"record_action", "verify", "search", "replay", "prove_inclusion", "export_bundle"}


def in_memory(home: Path, body: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    """Run ``body`` against a server for ``home`` through the SDK's in-memory client session."""
    cfg = ServeConfig(home=home)
    recorder = Recorder(cfg)

    async def main() -> Any:
        async with create_connected_server_and_client_session(build_server(cfg, recorder)) as session:
            return await body(session)

    try:
        return anyio.run(main)
    finally:
        recorder.close()


def text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


def test_lists_exactly_the_ledger_tools_and_resources(ls_home: Path) -> None:
    async def body(session: ClientSession) -> tuple[Any, Any]:
        return (await session.list_tools()).tools, (await session.list_resources()).resources

    tools, resources = in_memory(ls_home, body)
    assert {t.name for t in tools} == TOOLS
    assert all(t.description and t.outputSchema for t in tools)
    by_name = {t.name: t for t in tools}
    assert by_name["record_action"].inputSchema["required"] == ["agent_id", "action_type"]
    assert by_name["prove_inclusion"].inputSchema["required"] == ["seq"]
    assert by_name["verify"].annotations.readOnlyHint is True
    assert by_name["record_action"].annotations.readOnlyHint is False
    assert {str(r.uri) for r in resources} == {"ledgerstream://checkpoints", "ledgerstream://alerts"}


def test_without_kafka_every_read_is_a_tool_error_and_the_server_stays_up(ls_home: Path) -> None:
    async def body(session: ClientSession) -> list[Any]:
        results = [await session.call_tool(name, args) for name, args in (
            ("verify", {}), ("search", {"agent_id": "a"}), ("prove_inclusion", {"seq": 0}))]
        results.append(await session.list_tools())  # still answering
        return results

    *errors, still = in_memory(ls_home, body)
    for result in errors:
        assert result.isError and "no Kafka bootstrap" in text(result), text(result)
    assert {t.name for t in still.tools} == TOOLS


def test_without_kafka_a_resource_read_is_an_mcp_error(ls_home: Path) -> None:
    async def body(session: ClientSession) -> str:
        with pytest.raises(McpError) as caught:
            await session.read_resource(AnyUrl("ledgerstream://checkpoints"))
        return str(caught.value)

    assert "no Kafka bootstrap" in in_memory(ls_home, body)


@pytest.mark.parametrize("name, args, message", [
    ("prove_inclusion", {"seq": -1}, "greater than or equal to 0"),
    ("search", {"limit": 0}, "greater than or equal to 1"),
    ("search", {"since": "yesterday"}, "bad time 'yesterday'"),
    ("search", {"agent_id": " "}, "must not be empty"),
    ("replay", {"seq_range": "9..1"}, "empty seq range"),
    ("record_action", {"agent_id": "a", "action_type": "bad type!"}, "malformed action_type"),
    ("record_action", {"agent_id": "a", "action_type": "tool:x", "wait_for_seq": 600}, "less than or equal to 60"),
    ("record_action", {"action_type": "tool:x"}, "agent_id"),
])
def test_bad_arguments_are_tool_errors_with_a_reason(ls_home: Path, name: str, args: dict, message: str) -> None:
    async def body(session: ClientSession) -> Any:
        return await session.call_tool(name, args)

    result = in_memory(ls_home, body)
    assert result.isError and message in text(result), text(result)


def test_export_refuses_to_overwrite_a_file(ls_home: Path, tmp_path: Path) -> None:
    existing = tmp_path / "evidence.zip"
    existing.write_bytes(b"keep me")

    async def body(session: ClientSession) -> Any:
        return await session.call_tool("export_bundle", {"out_path": str(existing)})

    result = in_memory(ls_home, body)
    assert result.isError and "already exists" in text(result)
    assert existing.read_bytes() == b"keep me"


def test_record_action_without_kafka_is_kept_in_the_agent_spool(ls_home: Path) -> None:
    async def body(session: ClientSession) -> Any:
        return await session.call_tool("record_action", {"agent_id": "offline-bot", "action_type": "tool:lookup",
                                                         "payload": {"q": "x"}, "wait_for_seq": 5})

    result = in_memory(ls_home, body)
    assert not result.isError, text(result)
    doc = result.structuredContent
    assert doc["delivered"] is False and doc["spooled"] is True and doc["seq"] is None
    segments = [p for p in (ls_home / "spool" / "offline-bot").iterdir() if p.is_file() and p.stat().st_size]
    assert any(doc["event_id"].encode() in p.read_bytes() for p in segments), segments


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("example.com", False),
])
def test_loopback_is_127_0_0_0_slash_8_and_ipv6_localhost(host: str, loopback: bool) -> None:
    # RFC 1122 3.2.1.3 (127.0.0.0/8) and RFC 4291 2.5.3 (::1)
    assert is_loopback(host) is loopback


def test_listening_beyond_loopback_needs_allow_remote() -> None:
    result = CliRunner().invoke(serve, ["--transport", "http", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "--allow-remote" in result.output and "loopback" in result.output
