"""Pydantic AI adapter: an OpenTelemetry span processor fed by Pydantic AI's own instrumentation.

Pydantic AI's documented observability hook is its OpenTelemetry instrumentation
(``InstrumentationSettings``, what Logfire builds on): it opens a span for every agent run,
model request and tool execution, with the prompts, replies, tool arguments and results,
token usage and errors as attributes. Recording those spans needs no change to the agent, its
model or its tools, and works the same with ``run``, ``run_sync``, ``iter`` and streaming; the
alternatives (a capability or hooks object, event-stream handlers, a wrapper model or toolset)
are newer, change between releases, or see only part of a run. Enable it per agent or for all::

    adapter = LedgerSpanProcessor(ledger)
    agent.instrument = adapter.instrumentation()      # or Agent.instrument_all(adapter.instrumentation())

``instrumentation()`` uses a tracer provider of its own, so the spans reach the ledger and no
exporter; to keep exporting elsewhere, add the processor to your provider instead
(``provider.add_span_processor(adapter)``, then ``InstrumentationSettings(tracer_provider=provider)``).

Agent runs record ``agent:run``, model requests ``llm:call``, tool executions ``tool:<name>``,
any other span ``chain:<span name>``; each links ``caused_by`` its parent span. Attributes set
when a span opens go in the start event, the rest in the end event, content under the
contract's names (``input``/``output`` for tool arguments/results and run results,
``messages``/``output`` for model requests) and usage as ``token_usage``; other attributes
stay under ``attributes``.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.trace import StatusCode
from pydantic_ai.models.instrumented import InstrumentationSettings

from ledgerstream.producers.adapters.base import LedgerAdapter, action_type, put, shielded, token_usage

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from ledgerstream.producers.ledger import Ledger

# span attribute -> payload field, for content (JSON text is decoded); both data formats
_CONTENT = {
    "gen_ai.tool.call.arguments": "input", "tool_arguments": "input",
    "gen_ai.tool.call.result": "output", "tool_response": "output",
    "gen_ai.input.messages": "messages", "gen_ai.output.messages": "output",
    "gen_ai.system_instructions": "instructions", "final_result": "output",
    "pydantic_ai.all_messages": "messages", "all_messages_events": "messages",
    "model_request_parameters": "request_parameters", "gen_ai.tool.definitions": "tool_definitions",
}
_USAGE = ("gen_ai.usage.", "gen_ai.aggregated_usage.")
_OPERATIONS = {"invoke_agent": "agent:run", "chat": "llm:call"}


def _action_type(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    operation = attributes.get("gen_ai.operation.name")
    if operation in _OPERATIONS:
        return _OPERATIONS[str(operation)]
    if operation == "execute_tool" or "gen_ai.tool.name" in attributes:
        return action_type("tool", attributes.get("gen_ai.tool.name"))
    if "agent_name" in attributes:   # the run span of older data formats
        return "agent:run"
    return action_type("chain", span.name)


def _decoded(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _payload(span: ReadableSpan, keys: Any) -> dict[str, Any]:
    """The span's attributes named in ``keys``, in the contract's shape."""
    attributes = span.attributes or {}
    payload: dict[str, Any] = {}
    usage: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key in keys:
        value = attributes[key]
        if key in _CONTENT:
            put(payload, _CONTENT[key], _decoded(value))
        elif key.startswith(_USAGE):
            usage[key.rsplit(".", 1)[-1]] = value
        elif key in ("gen_ai.request.model", "model_name"):
            payload["model"] = value
        elif key in ("gen_ai.agent.name", "gen_ai.tool.name"):
            payload["name"] = value
        elif not key.startswith("logfire."):
            rest[key] = value
    payload["token_usage"] = token_usage(usage) if usage else None
    if rest:
        payload["attributes"] = rest
    return payload


def _error(span: ReadableSpan) -> dict[str, str] | None:
    if span.status.status_code is not StatusCode.ERROR:
        return None
    for event in reversed(span.events):
        if event.name == "exception" and event.attributes:
            return {"type": str(event.attributes.get("exception.type", "Error")).rsplit(".", 1)[-1],
                    "message": str(event.attributes.get("exception.message", ""))}
    return {"type": "Error", "message": span.status.description or ""}


def _hex(span_id: int) -> str:
    return format(span_id, "016x")


class LedgerSpanProcessor(LedgerAdapter, SpanProcessor):
    """Records Pydantic AI agent runs, model requests and tool calls as linked ledger events."""

    framework = "pydantic-ai"

    def __init__(self, ledger: "Ledger", **options: Any) -> None:
        LedgerAdapter.__init__(self, ledger, **options)
        self._start_keys: dict[int, frozenset[str]] = {}

    def instrumentation(self, **settings: Any) -> InstrumentationSettings:
        """Pydantic AI instrumentation whose spans come here (``settings`` as for
        ``InstrumentationSettings``, e.g. ``include_content=False``)."""
        provider = TracerProvider()
        provider.add_span_processor(self)
        return InstrumentationSettings(tracer_provider=provider, **settings)

    @shielded
    def on_start(self, span: Span, parent_context: "Context | None" = None) -> None:
        context = span.get_span_context()
        keys = frozenset(span.attributes or {})
        self._start_keys[context.span_id] = keys
        payload = {"trace_id": format(context.trace_id, "032x"), "span_name": span.name, **_payload(span, keys)}
        self.start_run(_hex(context.span_id), _action_type(span), payload,
                       parent_id=_hex(span.parent.span_id) if span.parent else None,
                       at=(span.start_time or 0) / 1e9 or None)

    @shielded
    def on_end(self, span: ReadableSpan) -> None:
        context = span.get_span_context()
        started = self._start_keys.pop(context.span_id, frozenset())
        keys = [k for k in (span.attributes or {}) if k not in started]
        self.end_run(_hex(context.span_id), _payload(span, keys), error=_error(span),
                     at=(span.end_time or 0) / 1e9 or None, fallback_type=_action_type(span))

    def shutdown(self) -> None:
        """Nothing to release: the ledger belongs to the caller."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Deliver what was recorded so far (bounded wait)."""
        try:
            return self.ledger.flush(timeout_millis / 1000) == 0
        except Exception as exc:
            self._failed("force_flush", exc)
            return False
