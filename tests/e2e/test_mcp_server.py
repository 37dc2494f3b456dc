"""``ledgerstream mcp serve`` on the dev stack, driven by the MCP SDK's real client.

The server runs as a user's MCP client would start it (a subprocess speaking stdio, or
streamable HTTP on a free loopback port). Every answer is checked against something that
is not the server: the CLI's own ``--json`` output in a subprocess (verify, replay,
agents, show, checkpoints, alerts, prove), the independent RFC 9162 checker and the
minimal bundle verifier in tests/support, and hashlib for the bundle's SHA-256.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, TextIO

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult
from pydantic import AnyUrl

from tests.support import minimal_bundle_verifier, rfc9162_checker as rfc9162

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CLI = [sys.executable, "-m", "ledgerstream.cli.main"]
TOOLS = {"record_action", "verify", "search", "replay", "prove_inclusion", "export_bundle"}


def cli(env: dict, *args: str) -> Any:
    """The CLI's ``--json`` output: the oracle the server's answers must equal."""
    done = subprocess.run(CLI + list(args), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def settle(stack: dict, timeout: float = 90.0) -> None:
    """Wait until the latest checkpoint covers every entry and is timestamped.

    The signer checkpoints only while entries are pending, so from then on the ledger, its
    checkpoints and their anchors stay put, and the server and the CLI read the same thing.
    (Waiting only: the assertions compare against the CLI, not against this read.)"""
    from conftest import stack_home
    from ledgerstream.core.config import Topics
    from ledgerstream.core.config import home
    from ledgerstream.index.reads import trust_of
    from ledgerstream.tools.ledger_snapshot import load_ledger

    topics = Topics(**stack["topics"])
    deadline = time.monotonic() + timeout
    while True:
        with stack_home(stack):
            snap = load_ledger(stack["kafka"]["bootstrap"], topics, trust_of(home()))
        last = snap.checkpoints[-1] if snap.checkpoints else None
        if last is not None and last["tree_size"] == snap.tree.size and snap.anchors_for(last):
            return
        assert time.monotonic() < deadline, f"ledger did not settle: {snap.tree.size} entries"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def mcp_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A dev stack of this module's own: other e2e tests record approvals by approvers this
    stack's verify does not know on the shared one, and `verify` must be ok here."""
    from conftest import _run_dev_stack

    yield from _run_dev_stack(tmp_path_factory.mktemp("mcphome"))


@pytest.fixture(scope="module")
def ledger(mcp_stack: dict) -> dict:
    """The demo workload (2 agents, 40 events, cross-agent links), settled, with the CLI's view."""
    env = mcp_stack["env"]
    subprocess.run(CLI + ["demo", "--agents", "2", "--events", "40"], env=env, check=True, capture_output=True,
                   timeout=300)
    settle(mcp_stack)
    return {"env": env, "stack": mcp_stack, "checkpoint": cli(env, "checkpoints", "list", "--json")[-1],
            "agents": cli(env, "agents", "--json")}


@contextlib.asynccontextmanager
async def stdio_session(env: dict, errlog: TextIO) -> AsyncIterator[ClientSession]:
    """``mcp serve`` started as an MCP client starts it: a subprocess speaking stdio."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "ledgerstream.cli.main", "mcp", "serve"],
                                   env=env)
    async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


class Server:
    """The module's one stdio server, called from synchronous tests through an anyio portal."""

    def __init__(self, portal: BlockingPortal, session: ClientSession) -> None:
        self.portal, self.session = portal, session

    def call(self, name: str, args: dict | None = None) -> CallToolResult:
        return self.portal.call(self.session.call_tool, name, args or {})

    def tools(self) -> set[str]:
        return {t.name for t in self.portal.call(self.session.list_tools).tools}

    def read(self, uri: str) -> Any:
        return json.loads(self.portal.call(self.session.read_resource, AnyUrl(uri)).contents[0].text)


@pytest.fixture(scope="module")
def server(ledger: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with (tmp_path_factory.mktemp("mcp") / "server.log").open("w") as errlog, start_blocking_portal() as portal, \
            portal.wrap_async_context_manager(stdio_session(ledger["env"], errlog)) as session:
        yield Server(portal, session)


def ok(result: CallToolResult) -> dict:
    """A tool's structured result, checked to be the same JSON as its text content."""
    text = "\n".join(c.text for c in result.content if c.type == "text")
    assert not result.isError, text
    assert json.loads(text) == result.structuredContent
    return result.structuredContent


def error(result: CallToolResult) -> str:
    assert result.isError, result.structuredContent
    return "\n".join(c.text for c in result.content if c.type == "text")


def test_stdio_lists_exactly_the_tools_and_verify_equals_the_cli(ledger: dict, server: Server) -> None:
    assert server.tools() == TOOLS
    got, want = ok(server.call("verify")), cli(ledger["env"], "verify", "--json")
    for field in ("ok", "entries", "checkpoints", "timestamps", "errors", "warnings", "head", "last_checkpoint",
                  "pending_links"):
        assert got[field] == want[field], field
    assert got["ok"] is True and got["entries"] >= 40


def test_search_equals_replay_and_agents(ledger: dict, server: Server) -> None:
    replayed = cli(ledger["env"], "replay", "--json")["entries"]
    for agent in ledger["agents"]:
        got = ok(server.call("search", {"agent_id": agent["agent_id"], "limit": 1000}))
        want = [e for e in replayed if e["agent_id"] == agent["agent_id"]]
        assert [(e["seq"], e["event_id"], e["entry_hash"], e["action_type"]) for e in got["entries"]] == \
               [(e["seq"], e["event_id"], e["entry_hash"], e["action_type"]) for e in want]
        assert got["matched"] == agent["entries"] == len(want) and not got["truncated"]
        assert got["entries"][-1]["entry_hash"] == agent["chain_head"]
    by_glob = ok(server.call("search", {"action_type": "tool:*", "limit": 1000}))["entries"]
    assert [e["seq"] for e in by_glob] == [e["seq"] for e in replayed if e["action_type"].startswith("tool:")]
    assert by_glob
    newest = ok(server.call("search", {"limit": 5}))
    assert [e["seq"] for e in newest["entries"]] == [e["seq"] for e in replayed[-5:]]
    assert newest["matched"] == len(replayed) and newest["truncated"] is True


def test_record_action_is_found_by_search_and_show(ledger: dict, server: Server) -> None:
    rec = ok(server.call("record_action", {"agent_id": "mcp-e2e", "action_type": "tool:probe", "payload": {"n": 1},
                                           "session_id": "mcp-session-1", "wait_for_seq": 30}))
    assert rec["delivered"] is True and rec["sequenced"] is True, rec
    entries = ok(server.call("search", {"session_id": "mcp-session-1"}))["entries"]
    assert [(e["event_id"], e["seq"], e["agent_id"]) for e in entries] == [(rec["event_id"], rec["seq"], "mcp-e2e")]
    shown = cli(ledger["env"], "show", "--seq", str(rec["seq"]), "--json")
    assert shown["action"]["event_id"] == rec["event_id"]
    assert shown["action"]["session_id"] == "mcp-session-1" and shown["action"]["payload"] == {"n": 1}
    assert shown["entry_hash"] == entries[0]["entry_hash"]


def test_prove_inclusion_verifies_with_the_independent_rfc9162_checker(ledger: dict, server: Server) -> None:
    size, root = ledger["checkpoint"]["tree_size"], bytes.fromhex(ledger["checkpoint"]["root_hash"])
    for seq in (0, size - 1):
        p = ok(server.call("prove_inclusion", {"seq": seq, "tree_size": size}))
        assert (p["leaf_index"], p["tree_size"], bytes.fromhex(p["root_hash"])) == (seq, size, root)
        leaf = bytes.fromhex(p["leaf_hash"])
        assert leaf == rfc9162.hash_leaf(bytes.fromhex(p["entry_hash"]))
        path = [bytes.fromhex(h) for h in p["audit_path"]]
        rfc9162.verify_inclusion(leaf, seq, size, path, root)
        with pytest.raises(rfc9162.ProofFailed):
            rfc9162.verify_inclusion(leaf, seq, size, path[:-1] + [bytes(32)], root)
    assert ok(server.call("prove_inclusion", {"seq": 7})) == cli(ledger["env"], "prove", "inclusion", "--seq", "7",
                                                                  "--json")


def test_replay_follow_links_equals_the_cli(ledger: dict, server: Server) -> None:
    agent = ledger["agents"][0]["agent_id"]
    got = ok(server.call("replay", {"agent_id": agent, "follow_links": True, "limit": 1000}))
    want = cli(ledger["env"], "replay", "--agent", agent, "--follow-links", "--json")
    assert [(e["seq"], e["selected_by"], e["ok"], e["checks"]) for e in got["entries"]] == \
           [(e["seq"], e["selected_by"], e["ok"], e["checks"]) for e in want["entries"]]
    assert any(e["selected_by"] == "link" for e in got["entries"])  # the closure reached the other agent
    assert (got["ok"], got["summary"], got["selection"]) == (want["ok"], want["summary"], want["selection"])
    assert got["truncated"] is False


def test_export_bundle_writes_a_bundle_the_minimal_verifier_accepts(ledger: dict, server: Server,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "evidence.zip"
    agent = ledger["agents"][0]
    doc = ok(server.call("export_bundle", {"out_path": str(out), "agent_id": agent["agent_id"]}))
    assert doc["path"] == str(out) and doc["bundle_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert doc["entries"] == agent["entries"]
    assert minimal_bundle_verifier.verify(out) == []
    assert "already exists" in error(server.call("export_bundle", {"out_path": str(out)}))


def test_resources_equal_checkpoints_list_and_alerts(ledger: dict, server: Server) -> None:
    settle(ledger["stack"])  # an earlier test recorded an action: let its checkpoint be anchored
    checkpoints = server.read("ledgerstream://checkpoints")
    assert checkpoints == cli(ledger["env"], "checkpoints", "list", "--json") and checkpoints
    assert server.read("ledgerstream://alerts") == cli(ledger["env"], "alerts", "--json")


def test_bad_arguments_are_tool_errors_and_the_server_keeps_serving(server: Server) -> None:
    assert "no entry with seq 1000000000" in error(server.call("prove_inclusion", {"seq": 10**9}))
    assert "tree size 1000000000 must be" in error(server.call("prove_inclusion", {"seq": 3, "tree_size": 10**9}))
    assert "bad time 'last tuesday'" in error(server.call("replay", {"since": "last tuesday"}))
    assert server.tools() == TOOLS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streamable_http_lists_tools_and_verifies(ledger: dict, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "http.log").open("w")
    proc = subprocess.Popen(CLI + ["mcp", "serve", "--transport", "http", "--port", str(port)], env=ledger["env"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "http.log").read_text()
                time.sleep(0.2)

        async def main() -> tuple[Any, Any]:
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write, _), \
                    ClientSession(read, write) as session:
                await session.initialize()
                return (await session.list_tools()).tools, await session.call_tool("verify", {})

        tools, result = anyio.run(main)
        assert {t.name for t in tools} == TOOLS
        got, want = ok(result), cli(ledger["env"], "verify", "--json")
        assert (got["ok"], got["entries"], got["head"]) == (True, want["entries"], want["head"])
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
