"""AutoGen AgentChat adapter: records a run from the stream of messages AgentChat yields.

Use it where you would call ``run`` or ``run_stream`` on an agent or a team::

    recorder = LedgerStreamRecorder(ledger)
    result = await recorder.run(agent, task="refund order 42?")   # as agent.run(task=...)
    await Console(recorder.run_stream(team, task="plan a trip"))   # as team.run_stream(...)

Why the message stream: it is AgentChat's own observation point (``Console`` reads it), it is
the same for agents and teams, and it carries, in order, what an audit needs: the task, each
model call's result with its token usage (``models_usage``), every tool call with its call id
and arguments (``ToolCallRequestEvent``), every tool result with ``is_error``
(``ToolCallExecutionEvent``), handoffs, the stop reason, and the exception that ends a run.
autogen-core's other two mechanisms each miss part of it: its OpenTelemetry spans (agent and
tool spans) carry no arguments or results and need an OpenTelemetry SDK provider installed
process-wide; its event logger (``autogen_core.EVENT_LOGGER_NAME``) reports model calls only
from some model clients, tool calls only when they succeed, and no run boundaries.

A run records ``agent:run`` (an agent) or ``chain:<team name>`` (a team); each message that
carries ``models_usage`` is the result of one model call by its ``source`` agent and records
``llm:call``; each requested tool call ``tool:<name>`` (linked ``caused_by`` the model call
that requested it); each handoff an ``agent:handoff`` point event. AgentChat reports a model
call only when it returns, so its start is recorded then, timed at the run's previous message
(when the agent turned to the model): its ``duration_ms`` is an upper bound. A tool that
raised ends in phase ``error`` (AgentChat hands the model the error text and goes on); an
exception out of the run ends the run in phase ``error`` and reaches the caller unchanged.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncGenerator, Sequence

from autogen_agentchat.base import Team, TaskResult
from autogen_agentchat.messages import (BaseAgentEvent, BaseChatMessage, HandoffMessage,
                                        ModelClientStreamingChunkEvent, ToolCallExecutionEvent,
                                        ToolCallRequestEvent)

from ledgerstream.producers.adapters.base import LedgerAdapter, action_type, put, shielded, token_usage

if TYPE_CHECKING:
    from autogen_agentchat.base import TaskRunner
    from autogen_core import FunctionCall
    from autogen_core.models import FunctionExecutionResult

Item = BaseAgentEvent | BaseChatMessage | TaskResult
Task = str | BaseChatMessage | Sequence[BaseChatMessage] | None


@dataclass
class _Stream:
    """One run being recorded: its run id, when it last yielded a message, its token usage."""

    run_id: str
    action_type: str
    last_at: float
    usage: dict[str, int] = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})


def _content(message: BaseAgentEvent | BaseChatMessage) -> Any:
    return message.model_dump(mode="json").get("content")


class LedgerStreamRecorder(LedgerAdapter):
    """Runs an AgentChat agent or team and records what its message stream shows as linked
    ledger events; yields and returns exactly what AgentChat does."""

    framework = "autogen"

    async def run(self, runner: "TaskRunner", *, task: Task = None, **kwargs: Any) -> TaskResult:
        """``runner.run(task=...)``, recorded: the recorded stream, consumed (as ``Team.run`` does)."""
        result: TaskResult | None = None
        async for item in self.run_stream(runner, task=task, **kwargs):
            if isinstance(item, TaskResult):
                result = item
        if result is None:
            raise AssertionError("The stream should have returned the final result.")
        return result

    async def run_stream(self, runner: "TaskRunner", *, task: Task = None,
                         **kwargs: Any) -> AsyncGenerator[Item, None]:
        """``runner.run_stream(task=..., **kwargs)``, each item recorded before it is passed on."""
        kind = action_type("chain", getattr(runner, "name", None)) if isinstance(runner, Team) else "agent:run"
        stream = _Stream(uuid.uuid4().hex, kind, time.time())
        self._started(stream, runner, task)
        try:
            async for item in runner.run_stream(task=task, **kwargs):
                self._observe(stream, item)
                yield item
        except GeneratorExit:       # the caller stopped reading: not a failure of the run
            self._ended(stream, {"closed_early": True})
            raise
        except BaseException as exc:
            self._ended(stream, {}, error=exc)
            raise

    # --- recording --------------------------------------------------------------------------
    @shielded
    def _started(self, stream: _Stream, runner: "TaskRunner", task: Task) -> None:
        payload: dict[str, Any] = {"name": getattr(runner, "name", None),
                                   "description": getattr(runner, "description", None),
                                   "runner_type": type(runner).__name__}
        put(payload, "task", task)
        self.start_run(stream.run_id, stream.action_type, payload, at=stream.last_at)

    @shielded
    def _observe(self, stream: _Stream, item: Item) -> None:
        if isinstance(item, TaskResult):
            self._finished(stream, item)
            return
        if isinstance(item, ModelClientStreamingChunkEvent):   # parts of a model call still running
            return
        now = time.time()
        if getattr(item, "models_usage", None) is not None:
            self._model_call_started(stream, item)
            self._model_call_ended(stream, item, now)
        if isinstance(item, ToolCallRequestEvent):
            for call in item.content:
                self._tool_started(stream, item, call, now)
        elif isinstance(item, ToolCallExecutionEvent):
            for result in item.content:
                self._tool_ended(stream, result, now)
        elif isinstance(item, HandoffMessage):
            self._handoff(stream, item)
        stream.last_at = now

    @shielded
    def _model_call_started(self, stream: _Stream, message: BaseAgentEvent | BaseChatMessage) -> None:
        self.start_run(message.id, "llm:call", {"agent": message.source}, parent_id=stream.run_id,
                       at=stream.last_at)

    @shielded
    def _model_call_ended(self, stream: _Stream, message: BaseAgentEvent | BaseChatMessage, now: float) -> None:
        usage = message.models_usage
        stream.usage["prompt_tokens"] += usage.prompt_tokens
        stream.usage["completion_tokens"] += usage.completion_tokens
        payload: dict[str, Any] = {"message_type": message.type, "token_usage": token_usage(usage)}
        put(payload, "output", _content(message))
        self.end_run(message.id, payload, at=now, fallback_type="llm:call")

    @shielded
    def _tool_started(self, stream: _Stream, request: ToolCallRequestEvent, call: FunctionCall, now: float) -> None:
        payload: dict[str, Any] = {"agent": request.source, "name": call.name, "call_id": call.id}
        put(payload, "arguments", call.arguments)   # the JSON text the model wrote
        parent = request.id if self.event_of(request.id) else stream.run_id
        self.start_run(f"{stream.run_id}:{call.id}", action_type("tool", call.name), payload, parent_id=parent,
                       at=now)

    @shielded
    def _tool_ended(self, stream: _Stream, result: FunctionExecutionResult, now: float) -> None:
        payload: dict[str, Any] = {"call_id": result.call_id}
        put(payload, "output", result.content)
        error = {"type": "ToolError", "message": result.content} if result.is_error else None
        self.end_run(f"{stream.run_id}:{result.call_id}", payload, error=error, at=now,
                     fallback_type=action_type("tool", result.name))

    @shielded
    def _handoff(self, stream: _Stream, message: HandoffMessage) -> None:
        payload: dict[str, Any] = {"agent": message.source, "target": message.target}
        put(payload, "content", message.content)
        self.record_event("agent:handoff", payload, parent_id=stream.run_id)

    @shielded
    def _finished(self, stream: _Stream, result: TaskResult) -> None:
        payload: dict[str, Any] = {"stop_reason": result.stop_reason, "messages": len(result.messages),
                                   "token_usage": token_usage(stream.usage) if any(stream.usage.values()) else None}
        if result.messages:
            put(payload, "output", _content(result.messages[-1]))
        self.end_run(stream.run_id, payload, fallback_type=stream.action_type)

    @shielded
    def _ended(self, stream: _Stream, payload: dict[str, Any], error: BaseException | None = None) -> None:
        self.end_run(stream.run_id, payload, error=error, fallback_type=stream.action_type)
