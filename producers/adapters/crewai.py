"""CrewAI adapter: an event-bus listener that records every scoped CrewAI event.

CrewAI pairs each ``*_started`` event with its ``*_completed``/``*_failed`` event
(``started_event_id``) and nests scopes (``parent_event_id``); those ids give the links.
Crews record ``chain:crew``, tasks ``chain:task``, flows ``chain:flow`` and
``chain:flow_method``, agents ``agent:run``, LLM calls ``llm:<provider>``, tools (also MCP
tools) ``tool:<name>``, other scopes (memory, knowledge, reasoning, ...) ``chain:<kind>``.

The handlers are coroutines on purpose: CrewAI runs synchronous handlers on a pool of ten
threads, in no particular order, but async ones on its single event-loop thread in emission
order, so a parent is always recorded before its children. Call :meth:`flush` after
``kickoff()`` (CrewAI delivers the last events after it returns).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import crewai.events.event_types  # noqa: F401  (defines every event class we subscribe to)
from crewai.events import BaseEventListener, crewai_event_bus
from crewai.events.base_events import BaseEvent
from crewai.events.event_context import SCOPE_ENDING_EVENTS, SCOPE_STARTING_EVENTS

from ledgerstream.producers.adapters.base import LedgerAdapter, action_type, put, shielded, token_usage

if TYPE_CHECKING:
    from crewai.events.event_bus import CrewAIEventsBus

    from ledgerstream.producers.ledger import Ledger

_ERROR = ("failed", "error")
_CHAINS = {"crew_kickoff": "crew", "method_execution": "flow_method"}
_TEXT = ("crew_name", "flow_name", "method_name", "task_name", "task_id", "agent_role", "tool_name",
         "tool_class", "run_attempts", "from_cache", "model", "call_id", "finish_reason", "response_id",
         "total_tokens")
_CONTENT = ("inputs", "context", "task_prompt", "messages", "tool_args", "params", "query", "output",
            "response", "result")


def scoped_event_types() -> list[type[BaseEvent]]:
    """Every CrewAI event class that opens or closes a scope."""
    scoped = SCOPE_STARTING_EVENTS | SCOPE_ENDING_EVENTS
    found, todo = [], list(BaseEvent.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        field = cls.model_fields.get("type")
        if field is not None and field.default in scoped:
            found.append(cls)
    return found


def _action_type(kind: str, event: BaseEvent, source: Any) -> str:
    if kind == "llm_call":
        return action_type("llm", getattr(source, "provider", None) or "call")
    if kind in ("tool_usage", "mcp_tool_execution"):
        return action_type("tool", getattr(event, "tool_name", None))
    if kind in ("agent_execution", "lite_agent_execution"):
        return "agent:run"
    return action_type("chain", _CHAINS.get(kind, kind))


class LedgerEventListener(LedgerAdapter, BaseEventListener):
    """Records CrewAI crew, task, agent, flow, LLM and tool scopes as linked ledger events.

    Creating it subscribes it to CrewAI's global event bus; :meth:`close` unsubscribes.
    """

    framework = "crewai"

    def __init__(self, ledger: "Ledger", **options: Any) -> None:
        LedgerAdapter.__init__(self, ledger, **options)
        self._subscribed: list[tuple[type[BaseEvent], Callable[..., Any]]] = []
        BaseEventListener.__init__(self)

    def setup_listeners(self, crewai_event_bus: "CrewAIEventsBus") -> None:
        for cls in scoped_event_types():
            crewai_event_bus.on(cls)(self._on_event)
            self._subscribed.append((cls, self._on_event))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until the bus has handed every event emitted so far to its listeners."""
        return crewai_event_bus.flush(timeout)

    def close(self) -> None:
        """Stop listening."""
        for cls, handler in self._subscribed:
            crewai_event_bus.off(cls, handler)
        self._subscribed.clear()

    async def _on_event(self, source: Any, event: BaseEvent) -> None:
        self._handle(source, event)

    @shielded
    def _handle(self, source: Any, event: BaseEvent) -> None:
        kind, _, phase = event.type.rpartition("_")
        payload: dict[str, Any] = {"event": event.type, "crew_agent_id": getattr(event, "agent_id", None)}
        for name in _TEXT:
            payload[name] = getattr(event, name, None)
        agent, task = getattr(event, "agent", None), getattr(event, "task", None)
        payload["agent_role"] = payload["agent_role"] or getattr(agent, "role", None)
        payload["task_name"] = payload["task_name"] or getattr(task, "name", None) or getattr(task, "description", None)
        for name in _CONTENT:
            if name != "messages" or phase == "started":   # LLM ends repeat the prompt
                put(payload, name, getattr(event, name, None))
        payload["token_usage"] = token_usage(getattr(event, "usage", None))
        at = event.timestamp.timestamp()
        if phase == "started":
            self.start_run(event.event_id, _action_type(kind, event, source), payload,
                           parent_id=event.parent_event_id, at=at)
            return
        error = None
        if phase in _ERROR:
            error_type = getattr(event, "error_type", None)
            raw = getattr(event, "error", None)
            error = raw if isinstance(raw, BaseException) else \
                {"type": getattr(error_type, "__name__", None), "message": raw}
        self.end_run(event.started_event_id, payload, error=error, at=at,
                     fallback_type=_action_type(kind, event, source))
