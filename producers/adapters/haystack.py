"""Haystack adapter: a ``haystack.tracing.Tracer`` whose spans are recorded in the ledger.

Enable it with ``haystack.tracing.enable_tracing(LedgerTracer(ledger))``. Pipeline runs
record ``chain:pipeline``, components ``chain:<component name>`` (generators ``llm:call``),
agents ``agent:run`` and ``agent:step``, an agent's LLM calls ``llm:call`` and its tool calls
``tool:<name>``; each span is linked ``caused_by`` its parent span. The tags Haystack sets
when a span opens go in the start event, those set while it runs (component inputs and
outputs: Haystack sets them only with content tracing on, ``HAYSTACK_CONTENT_TRACING_ENABLED
=true``) in the end event, under their names without the ``haystack.`` prefix and with ``_``
for ``.`` (``component_output``), so ``redact=["component_output"]`` works.
"""
from __future__ import annotations

import contextlib
import uuid
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Iterator

from haystack.tracing import Span, Tracer

from ledgerstream.producers.adapters.base import LedgerAdapter, action_type, put, shielded

if TYPE_CHECKING:
    from ledgerstream.producers.ledger import Ledger

_SCHEMA_TAGS = {"haystack.component.input_spec", "haystack.component.output_spec"}  # sockets, not the action
_FIXED = {"haystack.pipeline.run": "chain:pipeline", "haystack.agent.run": "agent:run",
          "haystack.agent.step": "agent:step", "haystack.agent.step.llm": "llm:call",
          "haystack.chat_generator.run": "llm:call"}


class LedgerSpan(Span):
    """One Haystack span: its tags, split into those known at the start and those set later."""

    def __init__(self, operation_name: str, tags: dict[str, Any]) -> None:
        self.operation_name = operation_name
        self.span_id = uuid.uuid4().hex
        self.tags = dict(tags)
        self.start_tags = frozenset(self.tags)

    def set_tag(self, key: str, value: Any) -> None:
        self.tags[key] = value


def _action_type(span: LedgerSpan) -> str:
    name, tags = span.operation_name, span.tags
    if name in _FIXED:
        return _FIXED[name]
    if name == "haystack.agent.step.tool":
        return action_type("tool", tags.get("haystack.tool.name"))
    if name == "haystack.component.run":
        if str(tags.get("haystack.component.type", "")).endswith("Generator"):
            return "llm:call"
        return action_type("chain", tags.get("haystack.component.name"))
    return action_type("chain", name)


def _plain(value: Any) -> Any:
    """Haystack objects (ChatMessage, Document, Tool, ...) as their own ``to_dict()`` form."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, type):
        try:
            return to_dict()
        except Exception:   # not serialisable this way: the generic view will do
            return value
    return value


def _tags(span: LedgerSpan, *, at_start: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for key, value in span.tags.items():
        if key in _SCHEMA_TAGS or (key in span.start_tags) != at_start:
            continue
        put(payload, key.removeprefix("haystack.").replace(".", "_"), _plain(value))
    return payload


class LedgerTracer(LedgerAdapter, Tracer):
    """Records Haystack pipeline, component, agent, LLM and tool spans as linked ledger events."""

    framework = "haystack"

    def __init__(self, ledger: "Ledger", **options: Any) -> None:
        LedgerAdapter.__init__(self, ledger, **options)
        self._current: ContextVar[LedgerSpan | None] = ContextVar(f"ledgerstream_haystack_{id(self)}", default=None)

    @contextlib.contextmanager
    def trace(self, operation_name: str, tags: dict[str, Any] | None = None,
              parent_span: Span | None = None) -> Iterator[Span]:
        span = LedgerSpan(operation_name, tags or {})
        parent = parent_span if isinstance(parent_span, LedgerSpan) else self._current.get()
        self._start(span, parent)
        token = self._current.set(span)
        try:
            yield span
        except BaseException as exc:
            self._end(span, exc)
            raise
        else:
            self._end(span, None)
        finally:
            with contextlib.suppress(ValueError):   # a generator closed in another context
                self._current.reset(token)

    def current_span(self) -> Span | None:
        return self._current.get()

    @shielded
    def _start(self, span: LedgerSpan, parent: LedgerSpan | None) -> None:
        payload = {"operation": span.operation_name, **_tags(span, at_start=True)}
        self.start_run(span.span_id, _action_type(span), payload, parent_id=parent and parent.span_id)

    @shielded
    def _end(self, span: LedgerSpan, error: BaseException | None) -> None:
        self.end_run(span.span_id, _tags(span, at_start=False), error=error)
