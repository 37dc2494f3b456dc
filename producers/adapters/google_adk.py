"""Google ADK adapter: a ``BasePlugin`` that records invocations, agents, model and tool calls.

Register it once, for every agent of an app: ``App(name=..., root_agent=agent,
plugins=[LedgerPlugin(ledger)])`` (or ``Runner(..., plugins=[...])``). Plugins are ADK's own
hook for cross-cutting observers: ADK calls them around every agent, model call and tool call
of every agent in the runner, including their errors, before the agents' own callbacks.

A runner invocation records ``chain:<app name>``; each agent run ``agent:run``, linked
``caused_by`` its parent agent's run (else the invocation); each model call ``llm:call``,
caused by the agent's run; each tool call ``tool:<name>``, caused by the model call that asked
for it. The start events carry the user message, the request's contents and tool names, the
tool's arguments; the end events the response (the last one when ADK streams), token usage
and finish reason, the tool's result. A model response with an ``error_code`` and an exception
from the model or a tool end the call in phase ``error``.

Every callback returns ``None``, so the plugin never changes what ADK does: a value returned by
a plugin would replace the request, response or result, and an exception would become ADK's
``RuntimeError``. When an exception aborts an invocation, google-adk 2 calls the plugin's
``on_agent_error_callback`` and ``on_run_error_callback``, which end the agent runs and the
invocation in phase ``error``; google-adk 1.x has no such hook, so there the failing model or
tool call's error event is the last record and the agent and invocation starts keep no end.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.adk.plugins.base_plugin import BasePlugin

from ledgerstream.producers.adapters.base import LedgerAdapter, action_type, put, shielded, token_usage

if TYPE_CHECKING:
    from google.adk.agents.base_agent import BaseAgent
    from google.adk.agents.callback_context import CallbackContext
    from google.adk.agents.invocation_context import InvocationContext
    from google.adk.models.llm_request import LlmRequest
    from google.adk.models.llm_response import LlmResponse
    from google.adk.tools.base_tool import BaseTool
    from google.adk.tools.tool_context import ToolContext

    from ledgerstream.producers.ledger import Ledger


def _dump(value: Any) -> Any:
    """A google-genai model without its unset fields (they are most of them)."""
    return value.model_dump(mode="json", exclude_none=True) if value is not None else None


def _agent_run(invocation_id: str, agent_name: str) -> str:
    return f"{invocation_id}/{agent_name}"


def _model_call(agent_run: str) -> str:
    """ADK gives a model call no id; an agent makes one call at a time, so its run names it."""
    return f"{agent_run}/llm"


class LedgerPlugin(LedgerAdapter, BasePlugin):
    """Records ADK invocations, agent runs, model calls and tool calls as linked ledger events."""

    framework = "google-adk"

    def __init__(self, ledger: "Ledger", *, name: str = "ledgerstream", **options: Any) -> None:
        LedgerAdapter.__init__(self, ledger, **options)
        BasePlugin.__init__(self, name)

    # --- ADK's callbacks (each returns None: observe, never alter) --------------------------
    async def before_run_callback(self, *, invocation_context: "InvocationContext") -> None:
        self._invocation_started(invocation_context)

    async def after_run_callback(self, *, invocation_context: "InvocationContext") -> None:
        self._ended(invocation_context.invocation_id, action_type("chain", invocation_context.app_name))

    async def on_run_error_callback(self, *, invocation_context: "InvocationContext", error: Exception) -> None:
        """Called by google-adk 2 (1.x has no run error hook)."""
        self._ended(invocation_context.invocation_id, action_type("chain", invocation_context.app_name), error)

    async def before_agent_callback(self, *, agent: "BaseAgent", callback_context: "CallbackContext") -> None:
        self._agent_started(agent, callback_context)

    async def after_agent_callback(self, *, agent: "BaseAgent", callback_context: "CallbackContext") -> None:
        self._ended(_agent_run(callback_context.invocation_id, agent.name), "agent:run")

    async def on_agent_error_callback(self, *, agent: "BaseAgent", callback_context: "CallbackContext",
                                      error: Exception) -> None:
        """Called by google-adk 2 (1.x has no agent error hook)."""
        self._ended(_agent_run(callback_context.invocation_id, agent.name), "agent:run", error)

    async def before_model_callback(self, *, callback_context: "CallbackContext",
                                    llm_request: "LlmRequest") -> None:
        self._model_started(callback_context, llm_request)

    async def after_model_callback(self, *, callback_context: "CallbackContext",
                                   llm_response: "LlmResponse") -> None:
        if not llm_response.partial:   # streamed chunks precede the final response
            self._model_ended(callback_context, llm_response, None)

    async def on_model_error_callback(self, *, callback_context: "CallbackContext", llm_request: "LlmRequest",
                                      error: Exception) -> None:
        self._model_ended(callback_context, None, error)

    async def before_tool_callback(self, *, tool: "BaseTool", tool_args: dict[str, Any],
                                   tool_context: "ToolContext") -> None:
        self._tool_started(tool, tool_args, tool_context)

    async def after_tool_callback(self, *, tool: "BaseTool", tool_args: dict[str, Any], tool_context: "ToolContext",
                                  result: dict[str, Any]) -> None:
        self._tool_ended(tool, tool_context, result, None)

    async def on_tool_error_callback(self, *, tool: "BaseTool", tool_args: dict[str, Any],
                                     tool_context: "ToolContext", error: Exception) -> None:
        self._tool_ended(tool, tool_context, None, error)

    # --- recording --------------------------------------------------------------------------
    @shielded
    def _invocation_started(self, context: "InvocationContext") -> None:
        payload: dict[str, Any] = {"invocation_id": context.invocation_id, "app_name": context.app_name,
                                   "user_id": context.user_id, "adk_session_id": context.session.id,
                                   "agent": context.agent.name}
        put(payload, "input", _dump(context.user_content))
        self.start_run(context.invocation_id, action_type("chain", context.app_name), payload)

    @shielded
    def _agent_started(self, agent: "BaseAgent", context: "CallbackContext") -> None:
        invocation = context.invocation_id
        parent = agent.parent_agent
        parent_run = _agent_run(invocation, parent.name) if parent is not None else None
        payload = {"name": agent.name, "description": agent.description or None, "agent_type": type(agent).__name__}
        self.start_run(_agent_run(invocation, agent.name), "agent:run", payload,
                       parent_id=parent_run if self.event_of(parent_run) else invocation)

    @shielded
    def _model_started(self, context: "CallbackContext", request: "LlmRequest") -> None:
        agent_run = _agent_run(context.invocation_id, context.agent_name)
        payload: dict[str, Any] = {"agent": context.agent_name, "model": request.model,
                                   "tools": sorted(request.tools_dict) or None}
        put(payload, "messages", [_dump(content) for content in request.contents])
        self.start_run(_model_call(agent_run), "llm:call", payload, parent_id=agent_run)

    @shielded
    def _model_ended(self, context: "CallbackContext", response: "LlmResponse | None", error: Exception | None) -> None:
        payload: dict[str, Any] = {}
        failure: Any = error
        if response is not None:
            usage = response.usage_metadata
            payload["finish_reason"] = getattr(response.finish_reason, "value", None)
            payload["token_usage"] = usage and token_usage({
                "input_tokens": usage.prompt_token_count, "output_tokens": usage.candidates_token_count,
                "total_tokens": usage.total_token_count})
            put(payload, "output", _dump(response.content))
            if response.error_code is not None:
                failure = {"type": response.error_code, "message": response.error_message}
        self.end_run(_model_call(_agent_run(context.invocation_id, context.agent_name)), payload, error=failure)

    @shielded
    def _tool_started(self, tool: "BaseTool", args: dict[str, Any], context: "ToolContext") -> None:
        agent_run = _agent_run(context.invocation_id, context.agent_name)
        asked_by = _model_call(agent_run)   # the agent's latest model call
        payload: dict[str, Any] = {"agent": context.agent_name, "name": tool.name,
                                   "call_id": context.function_call_id}
        put(payload, "arguments", args)
        self.start_run(context.function_call_id, action_type("tool", tool.name), payload,
                       parent_id=asked_by if self.event_of(asked_by) else agent_run)

    @shielded
    def _tool_ended(self, tool: "BaseTool", context: "ToolContext", result: Any, error: Exception | None) -> None:
        payload: dict[str, Any] = {"call_id": context.function_call_id}
        put(payload, "output", result)
        self.end_run(context.function_call_id, payload, error=error, fallback_type=action_type("tool", tool.name))

    @shielded
    def _ended(self, run_id: str, fallback_type: str, error: Exception | None = None) -> None:
        self.end_run(run_id, {}, error=error, fallback_type=fallback_type)
