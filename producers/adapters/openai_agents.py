"""OpenAI Agents SDK adapter: a ``TracingProcessor`` that records traces and spans.

Register it with ``agents.add_trace_processor(LedgerTracingProcessor(ledger))`` (beside the
SDK's exporter) or ``agents.set_trace_processors([...])`` (instead of it). A trace records
``chain:<workflow name>``; agent spans ``agent:run``, turns ``agent:step``, handoffs
``agent:handoff``, generations and responses ``llm:call``, function tools ``tool:<name>``,
any other span ``chain:<type or name>``. A span links ``caused_by`` its parent span, or the
trace when it has none. Start events carry what the SDK knows at the start; end events the
span's exported data (inputs, outputs, usage as ``token_usage``) and its error.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from agents.tracing import TracingProcessor

from ledgerstream.producers.adapters.base import LedgerAdapter, action_type, put, shielded, token_usage

if TYPE_CHECKING:
    from agents.tracing import Span, Trace

    from ledgerstream.producers.ledger import Ledger

_FIXED = {"agent": "agent:run", "turn": "agent:step", "handoff": "agent:handoff", "generation": "llm:call",
          "response": "llm:call"}
_CONTENT = {"input", "output", "data", "model_config"}


def _action_type(span: "Span[Any]") -> str:
    data = span.span_data
    if data.type in _FIXED:
        return _FIXED[data.type]
    if data.type == "function":
        return action_type("tool", getattr(data, "name", None))
    return action_type("chain", data.type if data.type != "custom" else getattr(data, "name", None))


def _exported(span: "Span[Any]") -> dict[str, Any]:
    """The span's own export, flattened (custom spans nest theirs under ``data``)."""
    exported = dict(span.span_data.export() or {})
    exported.pop("type", None)
    nested = exported.pop("data", None)
    if isinstance(nested, dict) and exported.get("name") in ("task", "turn"):
        exported.pop("name")
        exported.update(nested)
        exported.pop("sdk_span_type", None)
    elif nested is not None:
        exported["data"] = nested
    payload: dict[str, Any] = {"token_usage": token_usage(exported.pop("usage", None))}
    for key, value in exported.items():
        if key in _CONTENT:
            put(payload, key, value)
        else:
            payload[key] = value
    return payload


def _at(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


class LedgerTracingProcessor(LedgerAdapter, TracingProcessor):
    """Records Agents SDK traces and spans (agents, turns, LLM calls, tools, handoffs) as linked
    ledger events."""

    framework = "openai-agents"

    def __init__(self, ledger: "Ledger", **options: Any) -> None:
        LedgerAdapter.__init__(self, ledger, **options)

    @shielded
    def on_trace_start(self, trace: "Trace") -> None:
        exported = trace.export() or {}
        payload = {"trace_id": trace.trace_id, "name": trace.name, "group_id": exported.get("group_id"),
                   "metadata": exported.get("metadata")}
        self.start_run(trace.trace_id, action_type("chain", trace.name), payload)

    @shielded
    def on_trace_end(self, trace: "Trace") -> None:
        self.end_run(trace.trace_id, {})

    @shielded
    def on_span_start(self, span: "Span[Any]") -> None:
        payload = {"trace_id": span.trace_id, **_exported(span)}
        self.start_run(span.span_id, _action_type(span), payload, parent_id=span.parent_id or span.trace_id,
                       at=_at(span.started_at))

    @shielded
    def on_span_end(self, span: "Span[Any]") -> None:
        self.end_run(span.span_id, _exported(span), error=span.error, at=_at(span.ended_at),
                     fallback_type=_action_type(span))

    def shutdown(self) -> None:
        """Nothing to release: the ledger belongs to the caller."""

    def force_flush(self) -> None:
        """Deliver what was recorded so far (bounded wait)."""
        try:
            self.ledger.flush()
        except Exception as exc:
            self._failed("force_flush", exc)
