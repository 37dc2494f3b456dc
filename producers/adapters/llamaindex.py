"""LlamaIndex adapter: a span and event handler on LlamaIndex's instrumentation dispatcher.

LlamaIndex's instrumentation module (``llama_index.core.instrumentation``) is its tracing
hook: every instrumented method (query engines, retrievers, synthesizers, embeddings, LLMs,
tools, workflow and agent runs and their steps) is a *span* with its bound arguments, its
result or error, and its parent span; events (LLM, retrieval, query, ...) happen inside spans.
Attach the adapter to the root dispatcher once, and every span of the process is recorded::

    LedgerInstrumentation(ledger).attach()      # detach() removes it again

Each span records a start (its arguments as ``input``) and an end (its result as ``output``,
or the error): agent workflow runs (``FunctionAgent``, ``ReActAgent``, ``AgentWorkflow``)
``agent:run``, their workflow steps ``agent:step``, LLM calls (``chat``, ``complete`` and their
async and streaming forms) ``llm:call`` with the model and ``token_usage``, tool calls
``tool:<tool name>``, and every other span ``chain:<Class.method>`` (``RetrieverQueryEngine.query``,
``VectorIndexRetriever.retrieve``, ``CompactAndRefine.synthesize``, ...). A span links
``caused_by`` its parent span. A streaming LLM call ends when LlamaIndex reports its end event
(the stream was consumed), with the full response; a tool whose error LlamaIndex turns into a
result for the model (``ToolOutput.is_error``) ends as an error.
"""
from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING, Any

from llama_index.core.agent.workflow import AgentWorkflow, BaseWorkflowAgent
from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.instrumentation import Dispatcher, get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent
from llama_index.core.instrumentation.span import BaseSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index.core.tools.types import BaseTool
from pydantic import PrivateAttr

from ledgerstream.producers.action import jsonable
from ledgerstream.producers.adapters.base import LedgerAdapter, action_type, put, shielded, token_usage

if TYPE_CHECKING:
    from ledgerstream.producers.ledger import Ledger

_LLM_CALLS = {"chat", "achat", "stream_chat", "astream_chat", "complete", "acomplete", "stream_complete",
              "astream_complete"}
_NOT_INPUT = {"self", "ctx", "context", "init_state"}   # the instance, workflow context and state
_UUID = re.compile(r"-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")   # span ids are "<Class.method>-<uuid4>"


def _arguments(bound: inspect.BoundArguments) -> dict[str, Any]:
    """The call's arguments by name, ``**kwargs`` merged in (tool arguments arrive that way)."""
    arguments: dict[str, Any] = {}
    parameters = bound.signature.parameters
    for name, value in bound.arguments.items():
        if name in _NOT_INPUT:
            continue
        if parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update({key: _plain(item) for key, item in value.items()})
        else:
            arguments[name] = _plain(value)
    return arguments


def _plain(value: Any) -> Any:
    """A JSON view of one argument; an object that has none is named by its type."""
    try:
        return jsonable(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _usage(response: Any) -> dict[str, int] | None:
    raw = getattr(response, "raw", None)
    usage = raw.get("usage") if isinstance(raw, dict) else getattr(raw, "usage", None)
    return token_usage(usage) or token_usage(getattr(response, "additional_kwargs", None))


def _streaming(result: Any) -> bool:
    return inspect.isgenerator(result) or inspect.isasyncgen(result)


class LedgerInstrumentation(LedgerAdapter):
    """Records LlamaIndex spans (queries, retrievals, LLM calls, tools, agent runs and steps)
    as linked ledger events."""

    framework = "llamaindex"

    def __init__(self, ledger: "Ledger", **options: Any) -> None:
        super().__init__(ledger, **options)
        self.span_handler = _SpanHandler(self)
        self.event_handler = _EventHandler(self)
        self._streams: set[str] = set()      # LLM spans whose result is a stream not yet consumed
        self._dispatcher: Dispatcher | None = None

    def attach(self, dispatcher: Dispatcher | None = None) -> "LedgerInstrumentation":
        """Register on ``dispatcher`` (default: the root one, which sees every span)."""
        self._dispatcher = dispatcher or get_dispatcher()
        self._dispatcher.add_span_handler(self.span_handler)
        self._dispatcher.add_event_handler(self.event_handler)
        return self

    def detach(self) -> None:
        """Stop recording (LlamaIndex has no remove call: the handler lists are edited)."""
        if self._dispatcher is not None:
            self._dispatcher.span_handlers = [h for h in self._dispatcher.span_handlers if h is not self.span_handler]
            self._dispatcher.event_handlers = [h for h in self._dispatcher.event_handlers
                                               if h is not self.event_handler]
            self._dispatcher = None

    def _action_type(self, name: str, instance: Any, parent_id: str | None) -> str:
        method = name.rsplit(".", 1)[-1]
        if isinstance(instance, BaseTool):
            return action_type("tool", instance.metadata.get_name())
        if isinstance(instance, BaseLLM) and method in _LLM_CALLS:
            return "llm:call"
        if isinstance(instance, (BaseWorkflowAgent, AgentWorkflow)) and method == "run":
            return "agent:run"
        if instance is None and parent_id is not None:   # a workflow step, run inside its workflow's span
            if self._kind(parent_id) == "agent:run":
                return "agent:step"
        return action_type("chain", name)

    def _kind(self, span_id: str) -> str | None:
        """The action type recorded for the start of ``span_id``, if it was recorded."""
        with self._lock:
            run = self._runs.get(span_id)
        return run.action_type if run else None

    @shielded
    def _enter(self, id_: str, bound: inspect.BoundArguments, instance: Any, parent_id: str | None) -> None:
        name = _UUID.sub("", id_)
        action = self._action_type(name, instance, parent_id)
        payload: dict[str, Any] = {"span": name}
        if action == "llm:call":
            payload["model"] = getattr(getattr(instance, "metadata", None), "model_name", None)
        elif action == "agent:run":
            payload["name"] = getattr(instance, "name", None) or type(instance).__name__
        put(payload, "input", _arguments(bound))
        self.start_run(id_, action, payload, parent_id=parent_id)

    @shielded
    def _exit(self, id_: str, result: Any) -> None:
        if self._kind(id_) == "llm:call" and _streaming(result):
            self._streams.add(id_)     # ends with LlamaIndex's end event, once the stream is consumed
            return
        self._end(id_, result)

    @shielded
    def _drop(self, id_: str, error: BaseException | None) -> None:
        self._streams.discard(id_)
        self.end_run(id_, error=error or RuntimeError("span dropped"))

    @shielded
    def _event(self, event: BaseEvent) -> None:
        if isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)) and event.span_id in self._streams:
            self._streams.discard(event.span_id)
            self._end(event.span_id, event.response)

    def _end(self, id_: str, result: Any) -> None:
        kind = self._kind(id_) or ""
        payload: dict[str, Any] = {}
        error = None
        if kind == "llm:call":
            payload["token_usage"] = _usage(result)
        elif kind.startswith("tool:") and getattr(result, "is_error", False):
            error = getattr(result, "exception", None) or {"type": "ToolError", "message": str(result)}
        put(payload, "output", _plain(result))
        self.end_run(id_, payload, error=error)


class _SpanHandler(BaseSpanHandler[BaseSpan]):
    """LlamaIndex's span-handler interface, forwarding to the adapter."""

    _adapter: LedgerInstrumentation = PrivateAttr()

    def __init__(self, adapter: LedgerInstrumentation) -> None:
        super().__init__()
        self._adapter = adapter

    @classmethod
    def class_name(cls) -> str:
        return "LedgerSpanHandler"

    def new_span(self, id_: str, bound_args: inspect.BoundArguments, instance: Any = None,
                 parent_span_id: str | None = None, tags: dict[str, Any] | None = None, **kwargs: Any) -> BaseSpan:
        self._adapter._enter(id_, bound_args, instance, parent_span_id)
        return BaseSpan(id_=id_, parent_id=parent_span_id)

    def prepare_to_exit_span(self, id_: str, bound_args: inspect.BoundArguments, instance: Any = None,
                             result: Any = None, **kwargs: Any) -> BaseSpan | None:
        self._adapter._exit(id_, result)
        return self.open_spans.get(id_)

    def prepare_to_drop_span(self, id_: str, bound_args: inspect.BoundArguments, instance: Any = None,
                             err: BaseException | None = None, **kwargs: Any) -> BaseSpan | None:
        self._adapter._drop(id_, err)
        return self.open_spans.get(id_)


class _EventHandler(BaseEventHandler):
    """LlamaIndex's event-handler interface: ends streaming LLM calls."""

    _adapter: LedgerInstrumentation = PrivateAttr()

    def __init__(self, adapter: LedgerInstrumentation) -> None:
        super().__init__()
        self._adapter = adapter

    @classmethod
    def class_name(cls) -> str:
        return "LedgerEventHandler"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self._adapter._event(event)
