"""The governing MCP proxy: a JSON-RPC relay between an MCP client (our stdin/stdout) and an
MCP server we start as a child process (its stdin/stdout), over the stdio transport.

Every line passes through byte for byte, in both directions: requests, responses and
notifications, including the server's own requests to the client (sampling, roots,
elicitation) and their answers. Only two things are looked at:

* a client's ``tools/call`` request is authorised and recorded (:mod:`.proxy_calls`)
  *before* it is forwarded; a refused call is answered by the proxy itself with a tool
  result ``isError: true`` (the MCP spec's "tool execution error", which the client hands
  to the model) and never reaches the server;
* the server's response to a forwarded call is recorded, then forwarded unchanged (and the
  ``initialize`` response names the server in the action types).

A call waiting for approvers waits on a thread of its own; everything else keeps flowing.
Recording never waits for Kafka (the Ledger journals to its spool). The proxy ends when the
server's stdout closes and exits with the server's status.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import signal
import threading
import time
from typing import Any, Callable, Sequence

from mcp import types

from ledgerstream.core.errors import LedgerstreamError
from ledgerstream.mcp.proxy_calls import ToolCall, ToolCallLedger
from ledgerstream.producers.adapters.base import action_type
from ledgerstream.producers.errors import PolicyDenied

log = logging.getLogger("ledgerstream.mcp.proxy")

CHUNK = 65536             # bytes read at a time from either side
MAX_MESSAGE = 32 * 1024 * 1024   # bytes of one unfinished JSON-RPC message held in memory
EOF_GRACE = 5.0           # seconds the server gets to exit after its stdin closed, before SIGTERM
TERM_GRACE = 2.0          # seconds it gets after SIGTERM, before SIGKILL (as the SDK's stdio client)
META_KEY = "ledgerstream/policy"   # _meta key of a refusal's result


class ServerStartError(LedgerstreamError):
    """The MCP server command could not be started."""


class LineSplitter:
    """Cuts a byte stream into newline-ended messages (MCP stdio: only "\\n" ends one), holding
    at most ``limit`` bytes of an unfinished message.

    A message longer than ``limit`` is never parsed. From the client it is dropped up to its
    newline and logged: an unparsed ``tools/call`` must not reach the server ungoverned. From
    the server it is passed on as it arrives, so large tool results still reach the client.
    Its call then counts as unanswered and is recorded so when the proxy exits."""

    def __init__(self, limit: int, *, pass_oversized: bool, side: str) -> None:
        self.limit, self.pass_oversized, self.side = limit, pass_oversized, side
        self._buffer = bytearray()
        self._oversized = False  # inside a message already known to be too long

    def feed(self, chunk: bytes) -> list[bytes]:
        """Complete messages (newline kept) and, when passing on, raw pieces of oversized ones."""
        out: list[bytes] = []
        while chunk:
            newline = chunk.find(b"\n")
            piece, chunk = (chunk, b"") if newline < 0 else (chunk[:newline + 1], chunk[newline + 1:])
            if self._oversized:
                if self.pass_oversized:
                    out.append(piece)
                self._oversized = newline < 0
                continue
            self._buffer += piece
            if piece.endswith(b"\n"):
                out.append(bytes(self._buffer))
                self._buffer.clear()
            elif len(self._buffer) > self.limit:
                log.error("a %s message is longer than %d bytes: %s without parsing it", self.side, self.limit,
                          "passed on" if self.pass_oversized else "dropped")
                if self.pass_oversized:
                    out.append(bytes(self._buffer))
                self._buffer.clear()
                self._oversized = True
        return out

    def rest(self) -> bytes:
        """What is left at end of stream (an unfinished message), unless it was oversized."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest


def parse(line: bytes) -> Any:
    """The JSON value of one message line, or None for anything else (passed on untouched)."""
    try:
        return json.loads(line)
    except ValueError:
        return None


def is_call(message: Any) -> bool:
    return isinstance(message, dict) and message.get("method") == "tools/call" and "id" in message


def refusal(call: ToolCall, denied: PolicyDenied | None, why: str, session_id: str) -> bytes:
    """The proxy's own answer to a call it did not forward: a CallToolResult with isError."""
    meta = {"decision": denied.decision if denied else "error", "rule": denied.rule if denied else None,
            "reason": denied.reason if denied else why, "event_id": call.event_id, "session_id": session_id,
            "action_type": call.action}
    result = types.CallToolResult(content=[types.TextContent(type="text", text=why)], isError=True,
                                  **{"_meta": {META_KEY: meta}})
    body = {"jsonrpc": "2.0", "id": call.request_id,
            "result": result.model_dump(mode="json", by_alias=True, exclude_none=True)}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def key(request_id: Any) -> str:
    """A hashable key for a JSON-RPC id of any JSON type (1 and "1" stay distinct)."""
    return json.dumps(request_id, sort_keys=True)


def exit_status(returncode: int) -> int:
    """A child's return code as a shell exit status (killed by signal N: 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


class McpProxy:
    """One proxied stdio connection: the child server, the two relays and the tool calls."""

    def __init__(self, command: Sequence[str], calls: ToolCallLedger, *, learn_server_name: bool = True) -> None:
        self.command = list(command)
        self.calls = calls
        self.learn_server_name = learn_server_name
        self._initialize_id: Any = None
        self._pending: dict[Any, ToolCall] = {}    # forwarded, awaiting the server's response
        self._waiting: dict[Any, ToolCall] = {}    # awaiting approvers, not forwarded yet
        self._tasks: set[asyncio.Future] = set()
        self._child: asyncio.subprocess.Process | None = None
        self._out = _Writer(1)

    async def run(self) -> int:
        """Relay until the server exits; returns its exit status. ServerStartError if it cannot start."""
        try:
            self._child = await asyncio.create_subprocess_exec(
                *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise ServerStartError(f"cannot start MCP server {self.command[0]!r}: {exc.strerror or exc}") from exc
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        self._out.start()
        from_client = asyncio.ensure_future(self._from_client(_read_in_thread(0, loop)))
        from_client.add_done_callback(self._client_relay_ended)
        try:
            await self._from_server()
            returncode = await self._reap()
        finally:
            from_client.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            self._settle("the MCP server exited before responding")
            self._out.close(TERM_GRACE)
        return exit_status(returncode)

    # --- client -> server ------------------------------------------------------------------------
    async def _from_client(self, chunks: asyncio.Queue) -> None:
        splitter = LineSplitter(MAX_MESSAGE, pass_oversized=False, side="client")
        while (chunk := await chunks.get()) is not None:
            for line in splitter.feed(chunk):
                await self._client_line(line)
        if rest := splitter.rest():
            await self._client_line(rest)
        log.debug("client closed its end; closing the server's stdin")
        self._child.stdin.close()
        self._later(self._escalate())

    async def _client_line(self, line: bytes) -> None:
        message = parse(line)
        if isinstance(message, list) and any(is_call(m) for m in message):
            for part in message:   # a batch with tool calls is split: each call is governed alone
                await self._client_message(part, json.dumps(part, separators=(",", ":")).encode() + b"\n")
            return
        await self._client_message(message, line)

    async def _client_message(self, message: Any, raw: bytes) -> None:
        if is_call(message):
            call = self.calls.open(message["id"], message.get("params"))
            if self.calls.needs_approval(call):
                self._waiting[key(call.request_id)] = call
                self._later(self._govern(call, raw, on_thread=True))
            else:
                await self._govern(call, raw, on_thread=False)
            return
        if isinstance(message, dict):
            if message.get("method") == "initialize" and "id" in message:
                self._initialize_id = message["id"]
            elif message.get("method") == "notifications/cancelled":
                self._cancelled(message.get("params"))
        await self._to_server(raw)

    async def _govern(self, call: ToolCall, raw: bytes, *, on_thread: bool) -> None:
        """Authorise ``call`` (recording its request) and forward it, or answer it ourselves."""
        try:
            if on_thread:
                await _on_daemon_thread(self.calls.authorize, call)
            else:
                self.calls.authorize(call)
        except PolicyDenied as denied:
            self._out.put(refusal(call, denied, f"Refused by ledgerstream policy: {denied}",
                                  self.calls.session_id))
            return
        except Exception as exc:   # not recorded means not forwarded: the proxy fails closed
            log.error("could not record %s (request %r); not forwarded: %s", call.action, call.request_id, exc)
            self._out.put(refusal(call, None, f"ledgerstream proxy could not record {call.action}: {exc}",
                                  self.calls.session_id))
            return
        finally:
            self._waiting.pop(key(call.request_id), None)
        if call.cancelled is not None:
            self.calls.finish(call, None, missing=f"cancelled by the client before it was forwarded: {call.cancelled}")
            return
        call.forwarded_at = time.perf_counter()
        self._pending[key(call.request_id)] = call
        await self._to_server(raw)

    def _cancelled(self, params: Any) -> None:
        if isinstance(params, dict):
            target = key(params.get("requestId"))
            call = self._waiting.get(target) or self._pending.get(target)
            if call is not None:
                call.cancelled = str(params.get("reason") or "no reason given")

    async def _to_server(self, raw: bytes) -> None:
        try:
            self._child.stdin.write(raw)
            await self._child.stdin.drain()
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            log.debug("server stdin closed; dropped a client message of %d bytes", len(raw))

    # --- server -> client ------------------------------------------------------------------------
    async def _from_server(self) -> None:
        splitter = LineSplitter(MAX_MESSAGE, pass_oversized=True, side="server")
        while chunk := await self._child.stdout.read(CHUNK):
            for line in splitter.feed(chunk):
                self._server_line(line)
        if rest := splitter.rest():
            self._server_line(rest)

    def _server_line(self, line: bytes) -> None:
        message = parse(line)
        for part in message if isinstance(message, list) else (message,):
            if isinstance(part, dict) and "method" not in part and "id" in part:
                self._response(part)
        self._out.put(line)

    def _response(self, message: dict[str, Any]) -> None:
        call = self._pending.pop(key(message["id"]), None)
        if call is not None:
            try:
                self.calls.finish(call, message)
            except Exception:
                self.calls.ledger.count_error()
                log.exception("could not record the response to %s (request %r)", call.action, call.request_id)
        elif message["id"] == self._initialize_id and self.learn_server_name:
            info = (message.get("result") or {}).get("serverInfo") or {}
            if isinstance(info, dict) and isinstance(info.get("name"), str) and info["name"]:
                self.calls.server = info["name"]
                log.info("tool calls of MCP server %r are recorded as %s:<tool>", info["name"],
                         action_type("mcp", info["name"]))

    # --- shutdown --------------------------------------------------------------------------------
    def _client_relay_ended(self, task: asyncio.Future) -> None:
        """A failure in the client relay ends the proxy (loudly) rather than leaving it hung."""
        if not task.cancelled() and task.exception() is not None:
            log.error("the client relay failed; stopping the server", exc_info=task.exception())
            self._stop()

    def _stop(self) -> None:
        """SIGTERM/SIGINT: pass SIGTERM to the server; its exit ends the relay."""
        if self._child.returncode is None:
            self._child.send_signal(signal.SIGTERM)
            self._later(self._escalate(terminated=True))

    async def _escalate(self, terminated: bool = False) -> None:
        """Give the server time to exit: EOF_GRACE, then SIGTERM and TERM_GRACE, then SIGKILL."""
        steps = ((TERM_GRACE, signal.SIGKILL),) if terminated else \
            ((EOF_GRACE, signal.SIGTERM), (TERM_GRACE, signal.SIGKILL))
        for grace, step in steps:
            try:
                await asyncio.wait_for(asyncio.shield(self._child.wait()), grace)
                return
            except asyncio.TimeoutError:
                log.warning("MCP server %d did not exit; sending %s", self._child.pid, step.name)
                self._child.send_signal(step)

    async def _reap(self) -> int:
        """The server closed its stdout: wait for it to exit (escalating if it lingers)."""
        if self._child.returncode is None:
            await self._escalate()
        return await self._child.wait()

    def _settle(self, why: str) -> None:
        """Record every call still open so that none goes unrecorded."""
        for call in list(self._pending.values()):
            self._record_safely(self.calls.finish, call, None, missing=why)
        for call in list(self._waiting.values()):
            self._record_safely(self.calls.abandon, call, "the MCP connection closed while the call awaited approval")
        self._pending.clear()
        self._waiting.clear()

    def _record_safely(self, record: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            record(*args, **kwargs)
        except Exception:
            self.calls.ledger.count_error()
            log.exception("could not record an unfinished tool call")

    def _later(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _Writer:
    """Writes lines to a file descriptor from a thread of its own, in order, so that a slow
    reader never stalls the relay (pipes, ttys and files alike)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledgerstream-mcp-out", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, data: bytes) -> None:
        self._queue.put(data)

    def close(self, timeout: float) -> None:
        """Write what is queued (within ``timeout``) and stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self.fd, view):]
            except OSError as exc:   # the client went away; keep draining so put() never blocks
                log.debug("client stdout closed: %s", exc)


def _read_in_thread(fd: int, loop: asyncio.AbstractEventLoop) -> asyncio.Queue:
    """Chunks read from ``fd`` by a daemon thread (None at end of file): works for pipes,
    ttys and files, and never keeps the process alive."""
    chunks: asyncio.Queue = asyncio.Queue()

    def run() -> None:
        while True:
            try:
                chunk = os.read(fd, CHUNK)
            except OSError:
                chunk = b""
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, chunk or None)
            except RuntimeError:   # the loop is gone
                return
            if not chunk:
                return

    threading.Thread(target=run, name="ledgerstream-mcp-in", daemon=True).start()
    return chunks


async def _on_daemon_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on a daemon thread (an approval wait must not hold the process at exit,
    as the default executor's threads would)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(result)

    def run() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (fn(*args), None)
        except BaseException as exc:
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:   # the proxy has ended
            pass

    threading.Thread(target=run, name="ledgerstream-mcp-approval", daemon=True).start()
    return await future
