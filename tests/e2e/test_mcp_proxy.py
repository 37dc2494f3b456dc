"""``ledgerstream mcp proxy`` driven by the MCP SDK's real client, as an MCP host runs it.

The oracle for what a client must see is a direct session with the same server (no
ledgerstream in between); the oracle for the ledger is other CLI commands (``replay``,
``show``, ``verify``, ``sync``, ``approvals``) and, for the payload commitment, hashlib
and the ``rfc8785`` package. Servers: tests/support/mcp_tool_server.py (written with the
SDK) and the published ``mcp-server-time``.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import rfc8785

mcp = pytest.importorskip("mcp")
from mcp import ClientSession, StdioServerParameters, types  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

from ledgerstream.core.wire import codec  # noqa: E402
from ledgerstream.core.approvals import ApproverSet, verify_approvals  # noqa: E402
from ledgerstream.producers.topic_reader import read_all  # noqa: E402
from ledgerstream.stack.kafka import free_port  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOOL_SERVER = [sys.executable, str(Path(__file__).parents[1] / "support" / "mcp_tool_server.py")]
TIME_SERVER = [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]
TAG_PAYLOAD = b"ledgerstream/v1/payload\x00"    # docs/spec.md, section 2
CLI = [sys.executable, "-m", "ledgerstream.cli.main"]


# --- helpers ---------------------------------------------------------------------------------------

def cli(env: dict, *args: str, ok: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL)
    if ok is not None:
        assert proc.returncode == ok, (args, proc.returncode, proc.stdout, proc.stderr[-3000:])
    return proc


def proxied(agent: str, *options: str, server: list[str] = TOOL_SERVER) -> list[str]:
    return [*CLI, "mcp", "proxy", "--agent-id", agent, *options, "--", *server]


@asynccontextmanager
async def connect(argv: list[str], env: dict, errlog: Path) -> AsyncIterator[tuple[ClientSession, Any]]:
    """An initialised SDK client session with the stdio server ``argv``."""
    with open(errlog, "a", encoding="utf-8") as err:
        params = StdioServerParameters(command=argv[0], args=argv[1:], env=env)
        async with stdio_client(params, errlog=err) as (read, write):
            async with ClientSession(read, write) as session:
                yield session, await session.initialize()


def proxy_session_id(errlog: Path) -> str:
    match = re.search(r"session (mcp-[0-9a-f-]+)", errlog.read_text())
    assert match, errlog.read_text()
    return match.group(1)


def replay(env: dict, agent: str, count: int, timeout: float = 30.0) -> list[dict]:
    """The agent's entries once ``count`` of them are in the ledger (replayed and re-verified)."""
    deadline = time.monotonic() + timeout
    while True:
        doc = json.loads(cli(env, "replay", "--agent", agent, "--json", ok=None).stdout or "{}")
        entries = doc.get("entries") or []
        if len(entries) >= count or time.monotonic() > deadline:
            assert len(entries) == count, (count, entries)
            assert doc["ok"] is True and all(e["ok"] for e in entries), doc
            return entries
        time.sleep(0.5)


def wait_for_actions(dev_stack: dict, agent: str, count: int, timeout: float = 30.0) -> list[dict]:
    """The agent's events on the actions topic (what the proxy produced), once there are ``count``."""
    deadline = time.monotonic() + timeout
    while True:
        found = [rec for rec in (codec.decode(m.value(), expect="ActionEvent")[1] for m in
                                 read_all(dev_stack["kafka"]["bootstrap"], dev_stack["topics"]["actions"]))
                 if rec["agent_id"] == agent]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) == count, found
            return found
        time.sleep(0.3)


def show(env: dict, seq: int) -> dict:
    return json.loads(cli(env, "show", "--seq", str(seq), "--json").stdout)


def commitment_ok(action: dict) -> bool:
    """SHA-256(TAG_PAYLOAD || salt || JCS(payload)), recomputed without ledgerstream."""
    digest = hashlib.sha256(TAG_PAYLOAD + bytes.fromhex(action["payload_salt"]) + rfc8785.dumps(action["payload"]))
    return digest.hexdigest() == action["payload_hash"]


def by_phase(entries: list[dict], action_type: str) -> dict[str, dict]:
    found = {e["payload"]["phase"]: e for e in entries if e["action_type"] == action_type}
    assert len(found) == len([e for e in entries if e["action_type"] == action_type]), entries
    return found


def executed(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture()
def stack_env(dev_stack, tmp_path) -> dict:
    return {**dev_stack["env"], "MCP_TOOL_LOG": str(tmp_path / "executed.jsonl")}


# --- through the proxy, against the dev stack -----------------------------------------------------

def test_calls_pass_unchanged_and_are_recorded(stack_env, tmp_path):
    agent, errlog = "mcp-proxy-e2e", tmp_path / "stderr.log"
    calls = [("add", {"a": 2, "b": 40}), ("fail", {"message": "boom"}),
             ("echo", {"text": "héllo ✓ \"quoted\"\nline"})]

    async def run(argv: list[str]) -> tuple[Any, types.ListToolsResult, list[types.CallToolResult]]:
        async with connect(argv, stack_env, errlog) as (session, init):
            return init, await session.list_tools(), [await session.call_tool(n, a) for n, a in calls]

    init, tools, direct = asyncio.run(run(TOOL_SERVER))
    _, via_tools, via = asyncio.run(run(proxied(agent)))
    assert via_tools == tools and via == direct
    assert direct[0].structuredContent == {"result": 42} and direct[1].isError is True

    session_id = proxy_session_id(errlog)
    entries = replay(stack_env, agent, count=6)
    assert {e["session_id"] for e in entries} == {session_id}
    previous_request = None
    for (name, arguments), result in zip(calls, direct):
        action = f"mcp:{init.serverInfo.name}:{name}"
        phases = by_phase(entries, action)
        request, response = phases["request"], phases.get("response") or phases["error"]
        assert request["payload"]["arguments"] == arguments and request["payload"]["tool"] == name
        assert request["seq"] < response["seq"]
        assert response["links"] == [{"agent_id": agent, "event_id": request["event_id"], "relation": "completes"}]
        assert types.CallToolResult.model_validate(response["payload"]["result"]) == result
        expected_links = [] if previous_request is None else [
            {"agent_id": agent, "event_id": previous_request, "relation": "follows"}]
        assert request["links"] == expected_links
        previous_request = request["event_id"]
    assert commitment_ok(show(stack_env, request["seq"])["action"])    # the last request: the echo
    failed = by_phase(entries, f"mcp:{init.serverInfo.name}:fail")["error"]["payload"]["error"]
    assert failed == {"type": "ToolError", "message": direct[1].content[0].text}
    assert json.loads(cli(stack_env, "verify", "--json").stdout)["ok"] is True


def test_denied_call_never_reaches_the_server(stack_env, tmp_path):
    agent, errlog, log = "mcp-proxy-deny", tmp_path / "stderr.log", Path(stack_env["MCP_TOOL_LOG"])
    policy = tmp_path / "policy.yaml"
    policy.write_text('rules:\n  - match: "mcp:*:delete_user"\n    decision: deny\n    reason: humans delete users\n')

    async def run() -> list[types.CallToolResult]:
        async with connect(proxied(agent, "--policy", str(policy)), stack_env, errlog) as (session, _):
            return [await session.call_tool("echo", {"text": "before"}),
                    await session.call_tool("delete_user", {"user_id": "u-42"}),
                    await session.call_tool("echo", {"text": "after"})]

    before, denied, after = asyncio.run(run())
    assert [r.content[0].text for r in (before, after)] == ["before", "after"]
    assert denied.isError is True and "humans delete users" in denied.content[0].text
    refusal = denied.meta["ledgerstream/policy"]
    assert (refusal["decision"], refusal["rule"]) == ("deny", "mcp:*:delete_user")
    assert [c["tool"] for c in executed(log)] == ["echo", "echo"]   # the server never saw it

    entries = replay(stack_env, agent, count=5)   # 2 echo calls x 2 events + the refusal
    (refused,) = [e for e in entries if e["action_type"].endswith(":delete_user")]
    assert refused["event_id"] == refusal["event_id"] and refused["payload"]["arguments"] == {"user_id": "u-42"}
    assert show(stack_env, refused["seq"])["action"]["policy"] == {
        "decision": "deny", "rule": "mcp:*:delete_user", "reason": "humans delete users"}


def test_published_time_server_is_recorded(stack_env, tmp_path):
    agent, errlog = "mcp-proxy-time", tmp_path / "stderr.log"

    async def run(argv: list[str]) -> tuple[Any, types.CallToolResult]:
        async with connect(argv, stack_env, errlog) as (session, init):
            return init, await session.call_tool("get_current_time", {"timezone": "UTC"})

    init, direct = asyncio.run(run(TIME_SERVER))
    _, via = asyncio.run(run(proxied(agent, server=TIME_SERVER)))
    assert via.isError is False
    got, want = json.loads(via.content[0].text), json.loads(direct.content[0].text)
    assert got.keys() == want.keys() and got["timezone"] == "UTC"
    assert abs(datetime.fromisoformat(got["datetime"]) - datetime.now(timezone.utc)).total_seconds() < 60

    phases = by_phase(replay(stack_env, agent, count=2), f"mcp:{init.serverInfo.name}:get_current_time")
    assert phases["request"]["payload"]["arguments"] == {"timezone": "UTC"}
    assert types.CallToolResult.model_validate(phases["response"]["payload"]["result"]) == via


def test_approvals_are_awaited_while_other_calls_flow(stack_env, dev_stack, tmp_path):
    """2-of-2 approvals: the call waits, other calls go on; a call the client cancels while
    it waits is never forwarded; a call still waiting when the client leaves is recorded."""
    agent, errlog, log = "mcp-proxy-approve", tmp_path / "stderr.log", Path(stack_env["MCP_TOOL_LOG"])
    for name in ("alice", "bob"):
        cli(stack_env, "keys", "generate", "--out", str(tmp_path / f"{name}.pem"))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({
        "rules": [{"match": "mcp:*:add", "decision": "require_approval", "reason": "sums need two people"}],
        "approvals": {"m": 2, "timeout": 60, "approvers": {"alice": "alice.pem.pub", "bob": "bob.pem.pub"}}}))
    seen: set[str] = set()

    def next_request() -> dict:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = json.loads(cli(stack_env, "approvals", "list", "--json").stdout)
            mine = [r for r in listed if r["agent_id"] == agent and r["request_id"] not in seen]
            if mine:
                seen.add(mine[0]["request_id"])
                return mine[0]
            time.sleep(0.5)
        raise AssertionError("no approval request from the proxy")

    def approve(request: dict) -> None:
        for name in ("alice", "bob"):
            cli(stack_env, "approve", request["request_id"], "--key", str(tmp_path / f"{name}.pem"))

    async def run() -> tuple[types.CallToolResult, types.CallToolResult, float, list[dict]]:
        async with connect(proxied(agent, "--policy", str(policy)), stack_env, errlog) as (session, _):
            waiting = asyncio.ensure_future(session.call_tool("add", {"a": 40, "b": 2}))
            first = await asyncio.to_thread(next_request)
            started = time.monotonic()
            meanwhile = await session.call_tool("echo", {"text": "meanwhile"})
            took = time.monotonic() - started
            assert not waiting.done() and [c["tool"] for c in executed(log)] == ["echo"]
            await asyncio.to_thread(approve, first)
            added = await asyncio.wait_for(waiting, 60)

            cancelled = asyncio.ensure_future(session.call_tool("add", {"a": 1, "b": 1}))
            second = await asyncio.to_thread(next_request)
            await session.send_notification(types.ClientNotification(types.CancelledNotification(
                params=types.CancelledNotificationParams(requestId=json.loads(second["payload"])["request_id"],
                                                         reason="user gave up"))))
            await asyncio.to_thread(approve, second)
            await asyncio.to_thread(wait_for_actions, dev_stack, agent, 6)   # the cancelled call's outcome
            cancelled.cancel()

            left = asyncio.ensure_future(session.call_tool("add", {"a": 2, "b": 2}))
            third = await asyncio.to_thread(next_request)
            left.cancel()
            return added, meanwhile, took, [first, second, third]

    added, meanwhile, took, requests = asyncio.run(run())
    assert meanwhile.content[0].text == "meanwhile" and took < 5
    assert added.isError is False and added.structuredContent == {"result": 42}
    assert [json.loads(r["payload"])["arguments"] for r in requests] == [{"a": 40, "b": 2}, {"a": 1, "b": 1},
                                                                        {"a": 2, "b": 2}]
    assert [c["tool"] for c in executed(log)] == ["echo", "add"]    # neither later add ran

    replay(stack_env, agent, count=7)
    adds = [r for r in wait_for_actions(dev_stack, agent, 7) if r["action_type"].endswith(":add")]
    assert [r["event_id"] for r in adds if json.loads(r["payload"])["phase"] == "request"] == \
        [r["event_id"] for r in requests]
    approved, done, approved2, cancelled, abandoned = adds
    approvers = ApproverSet.from_config(json.loads(policy.read_text())["approvals"], tmp_path)
    for request in (approved, approved2):
        assert request["policy"]["decision"] == "approved"
        verify_approvals(request, approvers.approvers, approvers.m)
        assert sorted(a["approver_id"] for a in request["approvals"]) == ["alice", "bob"]
    assert done["links"] == [{"agent_id": agent, "event_id": approved["event_id"], "relation": "completes"}]
    assert done["policy"]["decision"] == "allow" and json.loads(done["payload"])["phase"] == "response"
    assert cancelled["links"] == [{"agent_id": agent, "event_id": approved2["event_id"], "relation": "completes"}]
    assert json.loads(cancelled["payload"])["error"]["type"] == "Cancelled"
    assert abandoned["policy"]["decision"] == "approval_timeout" and abandoned["approvals"] == []


def test_kafka_unreachable_calls_succeed_and_are_spooled(stack_env, dev_stack, tmp_path):
    agent, errlog, spool = "mcp-proxy-offline", tmp_path / "stderr.log", tmp_path / "spool"
    dead = {**stack_env, "LEDGERSTREAM_BOOTSTRAP": f"127.0.0.1:{free_port()}"}

    async def run() -> list[float]:
        async with connect(proxied(agent, "--spool", str(spool)), dead, errlog) as (session, _):
            times = []
            for a in range(3):
                started = time.monotonic()
                assert (await session.call_tool("add", {"a": a, "b": 1})).structuredContent == {"result": a + 1}
                times.append(time.monotonic() - started)
            return times

    assert max(asyncio.run(run())) < 1.0
    assert (spool / agent).is_dir()
    synced = json.loads(cli(stack_env, "sync", "--spool", str(spool), "--json").stdout)
    assert (synced["sent"], synced["remaining"]) == (6, 0)
    entries = replay(stack_env, agent, count=6)
    assert sorted(e["payload"]["arguments"]["a"] for e in entries if e["payload"]["phase"] == "request") == [0, 1, 2]


# --- the raw protocol and the child process (no Kafka needed) ---------------------------------------

@pytest.fixture()
def offline_env(ls_home, tmp_path) -> dict:
    return {**os.environ, "LEDGERSTREAM_HOME": str(ls_home), "MCP_TOOL_LOG": str(tmp_path / "executed.jsonl")}


INIT = (b'{"jsonrpc": "2.0",  "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", '
        b'"capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}\n'
        b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')


def answers(proc: subprocess.Popen, lines: list[bytes], ids: set) -> dict[Any, bytes]:
    """Write ``lines`` to a stdio server and collect its raw output line per JSON-RPC id."""
    proc.stdin.write(b"".join(lines))
    proc.stdin.flush()
    found: dict[Any, bytes] = {}
    while not ids <= found.keys():
        line = proc.stdout.readline()
        assert line, f"server closed its stdout; got answers to {sorted(found, key=str)}"
        found[json.loads(line).get("id")] = line
    return found


def exchange(argv: list[str], env: dict, lines: list[bytes], ids: set) -> dict[Any, bytes]:
    """``answers`` from a server started for it, which must then exit 0 when its stdin closes."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        found = answers(proc, lines, ids)
        proc.stdin.close()
        assert proc.wait(20) == 0
    finally:
        proc.kill()
    return found


def test_messages_pass_byte_for_byte_and_batches_are_governed(offline_env, tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"rules": [{"match": "mcp:*:delete_user", "decision": "deny"}]}))
    common = [INIT, b'{"jsonrpc":"2.0","id":"list","method":"tools/list"}\n',
              b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}\n']
    denied = {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
              "params": {"name": "delete_user", "arguments": {"user_id": "x"}}}
    echo = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "b"}}}

    direct = exchange(TOOL_SERVER, offline_env, [*common, json.dumps(echo).encode() + b"\n"], {1, "list", 3, 5})
    via = exchange(proxied("raw", "--policy", str(policy), "--spool", str(tmp_path / "spool")), offline_env,
                   [*common, json.dumps([denied, echo]).encode() + b"\n"], {1, "list", 3, 4, 5})
    assert {i: via[i] for i in direct} == direct      # the server's bytes, unchanged
    refusal = json.loads(via[4])["result"]
    assert refusal["isError"] is True and refusal["_meta"]["ledgerstream/policy"]["rule"] == "mcp:*:delete_user"
    assert [c["tool"] for c in executed(Path(offline_env["MCP_TOOL_LOG"]))] == ["add", "echo", "add", "echo"]


def test_server_that_cannot_start_is_a_usage_error(offline_env):
    proc = cli(offline_env, "mcp", "proxy", "--", "/nonexistent/mcp-server", ok=2)
    assert "cannot start MCP server '/nonexistent/mcp-server'" in proc.stderr and "Traceback" not in proc.stderr
    assert cli(offline_env, "mcp", "proxy", ok=2).stderr   # no command at all


def test_exit_status_and_stderr_are_the_servers(offline_env):
    child = "import sys; sys.stderr.write('child says hi\\n'); sys.exit(3)"
    proc = cli(offline_env, "mcp", "proxy", "--", sys.executable, "-c", child, ok=3)
    assert "child says hi" in proc.stderr


def test_sigterm_ends_the_proxy_and_keeps_the_records(offline_env, tmp_path):
    spool = tmp_path / "spool"
    proc = subprocess.Popen(proxied("sigterm", "--spool", str(spool)), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=offline_env)
    try:
        call = b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}\n'
        assert json.loads(answers(proc, [INIT, call], {1, 2})[2])["result"]["structuredContent"] == {"result": 3}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 128 + signal.SIGTERM     # the server's status: SIGTERM was passed on
    finally:
        proc.kill()
        proc.communicate()
    left = cli(offline_env, "sync", "--spool", str(spool), "--bootstrap", f"127.0.0.1:{free_port()}",
               "--timeout", "1", "--json", ok=1)
    assert json.loads(left.stdout)["remaining"] == 2      # request + response, kept for delivery
