"""What the MCP proxy writes to the ledger: every ``tools/call`` of one proxied connection.

A call leaves two linked events of type ``mcp:<server>:<tool>`` in the connection's session:

* the **request** (tool, arguments, JSON-RPC id), recorded *before* the call is forwarded,
  with the policy decision (and the approvals, when a rule required them); it ``follows``
  the previous call's request in the session, so a session reads as one chain;
* the **response** (the server's result or error, ``duration_ms``), which ``completes`` its
  request.

A denied call (or one whose approval was refused or timed out) leaves only its request
event, recorded by the Ledger with the refusing decision, and is never forwarded. This is
the producer library's ``Ledger.authorize``/``Ledger.record`` pair, as ``@ledger.action``
uses it, so payloads are redacted, canonicalised and committed (salted) the same way.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from ledgerstream.producers import context
from ledgerstream.producers.adapters.base import action_type, clip, put
from ledgerstream.producers.context import Link
from ledgerstream.producers.errors import PolicyDenied
from ledgerstream.producers.ledger import Ledger, Prepared
from ledgerstream.producers.policy import REQUIRE_APPROVAL
from ledgerstream.producers.uuid7 import uuid7

FOLLOWS = "follows"        # a call's request -> the previous call's request in the session
COMPLETES = "completes"    # a call's response -> its own request


@dataclass
class ToolCall:
    """One ``tools/call`` from the client, from its request event to its response event."""

    request_id: Any                 # the JSON-RPC id (the server's response carries it back)
    tool: str
    action: str                     # mcp:<server>:<tool>
    arguments: Any
    event_id: str                   # the request event's id (fixed before authorising)
    policy: dict[str, Any] | None = None
    forwarded_at: float | None = None   # perf_counter when it went to the server
    cancelled: str | None = None        # the client's reason, if it cancelled the call


def tool_error(message: dict[str, Any]) -> dict[str, Any] | None:
    """The error a JSON-RPC response reports: a protocol error, or a result with ``isError``."""
    error = message.get("error")
    if isinstance(error, dict):
        return {"type": "JSONRPCError", "code": error.get("code"), "message": clip(str(error.get("message")))}
    result = message.get("result")
    if isinstance(result, dict) and result.get("isError") is True:
        texts = [c.get("text") for c in result.get("content") or [] if isinstance(c, dict) and c.get("type") == "text"]
        return {"type": "ToolError", "message": clip("\n".join(t for t in texts if isinstance(t, str)))}
    return None


class ToolCallLedger:
    """Records the tool calls of one MCP session for one agent (thread-safe: approvals are
    awaited on worker threads)."""

    def __init__(self, ledger: Ledger, session_id: str, server: str) -> None:
        self.ledger = ledger
        self.session_id = session_id
        self.server = server
        self._lock = threading.Lock()
        self._last_request: str | None = None   # newest request event already recorded

    def open(self, request_id: Any, params: Any) -> ToolCall:
        """A call for the parameters of a ``tools/call`` request (nothing recorded yet)."""
        params = params if isinstance(params, dict) else {}
        tool = str(params.get("name") or "")
        return ToolCall(request_id, tool, action_type(action_type("mcp", self.server), tool),
                        params.get("arguments"), uuid7())

    def needs_approval(self, call: ToolCall) -> bool:
        """Whether authorising ``call`` waits for approvers (then run :meth:`authorize` off the loop)."""
        policy = self.ledger.policy
        return policy is not None and policy.evaluate(call.action).decision == REQUIRE_APPROVAL

    def authorize(self, call: ToolCall) -> None:
        """Apply the policy and record the request event; raises ``PolicyDenied`` (already
        recorded by the Ledger) when the call must not be forwarded. May block for approvals."""
        prepared = self._prepare(self._request(call))
        with self._lock:
            links = (Link(self.ledger.agent_id, self._last_request, FOLLOWS),) if self._last_request else ()
        where = context.placement(self.ledger.agent_id)
        try:
            policy, approvals = self.ledger.authorize(call.action, prepared, call.event_id, where, links,
                                                      self.session_id)
        except PolicyDenied:
            self._recorded(call.event_id)   # a refusal is recorded under the call's event id
            raise
        self.ledger.record(call.action, prepared, event_id=call.event_id, where=where, links=links,
                           session=self.session_id, policy=policy, approvals=approvals)
        self._recorded(call.event_id)
        if approvals:   # as @ledger.action: the outcome is allowed by the approved request
            policy = {"decision": "allow", "rule": policy["rule"], "reason": f"approved in {call.event_id}"}
        call.policy = policy

    def abandon(self, call: ToolCall, reason: str) -> str:
        """Record the request of a call whose approval was still awaited when the connection
        closed: it was never forwarded (decision ``approval_timeout``). Should the approval
        thread still record its outcome, the signer keeps the first event of that id."""
        verdict = self.ledger.policy.evaluate(call.action)
        return self.ledger.record(call.action, self._prepare(self._request(call)), event_id=call.event_id,
                                  session=self.session_id,
                                  policy=verdict.as_record("approval_timeout", reason))

    def finish(self, call: ToolCall, message: dict[str, Any] | None, *, missing: str | None = None) -> str:
        """Record the response event: ``message`` is the server's JSON-RPC response, or None
        with ``missing`` saying why no response came (connection closed, cancelled)."""
        payload: dict[str, Any] = {"phase": "response", "server": self.server, "tool": call.tool,
                                   "request_id": call.request_id}
        if call.forwarded_at is not None:
            payload["duration_ms"] = round((time.perf_counter() - call.forwarded_at) * 1000, 3)
        if message is None:
            payload["phase"] = "error"
            payload["error"] = {"type": "Cancelled" if call.cancelled else "NoResponse",
                                "message": clip(missing or "no response")}
        else:
            error = tool_error(message)
            if error is not None:
                payload["phase"] = "error"
                payload["error"] = error
            put(payload, "result", message.get("result"))
        return self.ledger.record(call.action, self._prepare(payload),
                                  links=(Link(self.ledger.agent_id, call.event_id, COMPLETES),),
                                  session=self.session_id, policy=call.policy)

    def _request(self, call: ToolCall) -> dict[str, Any]:
        return {"phase": "request", "server": self.server, "tool": call.tool, "request_id": call.request_id,
                "arguments": call.arguments}

    def _recorded(self, event_id: str) -> None:
        with self._lock:
            self._last_request = event_id

    def _prepare(self, payload: dict[str, Any]) -> Prepared:
        """The Ledger's redaction and commitment; an oversized payload keeps its event with
        the reason instead of the detail (as the adapters do)."""
        try:
            return self.ledger.prepare(payload)
        except (TypeError, ValueError) as exc:
            keep = {k: payload[k] for k in ("phase", "server", "tool", "request_id") if k in payload}
            return self.ledger.prepare({**keep, "unrecordable": clip(str(exc))})
