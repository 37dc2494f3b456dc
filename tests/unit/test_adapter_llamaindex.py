"""LlamaIndex adapter against real llama-index-core: a vector-index query engine on the
framework's ``MockLLM`` and ``MockEmbedding``, and a ``FunctionAgent`` on its
``MockFunctionCallingLLM`` (a tool call, then the answer), with the adapter on the root
instrumentation dispatcher; no network and no API key. LlamaIndex's own ``SimpleSpanHandler``
runs beside it as the independent count of spans."""
from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest

pytest.importorskip("llama_index.core", reason="needs the adapters-llamaindex extra")

from llama_index.core import Document, VectorStoreIndex  # noqa: E402
from llama_index.core.agent.workflow import FunctionAgent  # noqa: E402
from llama_index.core.base.llms.types import ToolCallBlock  # noqa: E402
from llama_index.core.embeddings import MockEmbedding  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler  # noqa: E402
from llama_index.core.llms import ChatMessage, MockLLM  # noqa: E402
from llama_index.core.llms.mock import MockFunctionCallingLLM  # noqa: E402
from test_adapter_base import (break_ledger, assert_ends_complete_starts, assert_linked_graph, kinds,  # noqa: E402
                               offline_ledger, spool_events)  # noqa: F401

from ledgerstream.producers.adapters.llamaindex import LedgerInstrumentation  # noqa: E402

pytestmark = [pytest.mark.unit,
              # FunctionAgent's step discovery (inspect.getmembers) touches deprecated pydantic attributes
              pytest.mark.filterwarnings("ignore::DeprecationWarning:inspect")]

QUESTION = "How long do refunds take?"
# the spans of a query a reader looks for (the rest are their internals: _query, _retrieve, ...)
PUBLIC = {"RetrieverQueryEngine.query", "VectorIndexRetriever.retrieve", "CompactAndRefine.synthesize"}


BOOM = ConnectionError("model unreachable")


class FailingLLM(MockLLM):
    """MockLLM whose completion fails, as an unreachable provider would."""

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise BOOM


@pytest.fixture(scope="module")
def index() -> VectorStoreIndex:
    return VectorStoreIndex.from_documents([Document(text="Refunds take 5 days."), Document(text="Shipping is free.")],
                                           embed_model=MockEmbedding(embed_dim=8))


@pytest.fixture()
def attach() -> Iterator[Any]:
    """attach(ledger, **options) -> (adapter, SimpleSpanHandler); both removed afterwards."""
    dispatcher = get_dispatcher()
    added: list[LedgerInstrumentation] = []
    before = list(dispatcher.span_handlers)

    def use(ledger: Any, **options: Any) -> tuple[LedgerInstrumentation, SimpleSpanHandler]:
        adapter = LedgerInstrumentation(ledger, **options).attach()
        added.append(adapter)
        simple = SimpleSpanHandler()
        dispatcher.add_span_handler(simple)
        return adapter, simple

    yield use
    for adapter in added:
        adapter.detach()
    dispatcher.span_handlers = before


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    if a < 0:
        raise ValueError("refusing negative numbers")
    return a * b


def make_agent(*replies: Any) -> FunctionAgent:
    queue = list(replies)

    def reply(messages: Any, **kwargs: Any) -> ChatMessage:
        item = queue.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    return FunctionAgent(tools=[multiply], llm=MockFunctionCallingLLM(response_generator=reply), name="calculator")


def tool_call(a: int, b: int) -> ChatMessage:
    return ChatMessage(role="assistant", blocks=[ToolCallBlock(tool_call_id="c1", tool_name="multiply",
                                                               tool_kwargs={"a": a, "b": b})])


ANSWER = ChatMessage(role="assistant", content="42")


def run(agent: FunctionAgent, question: str) -> Any:
    async def main() -> Any:
        return await agent.run(question)
    return asyncio.run(main())


def spans(simple: SimpleSpanHandler) -> int:
    return len(simple.completed_spans) + len(simple.dropped_spans)


def test_a_query_is_one_linked_graph_of_every_span(offline_ledger, attach, index) -> None:
    ledger, spool_dir = offline_ledger
    expected_nodes = [n.node.get_content() for n in index.as_retriever(similarity_top_k=1).retrieve(QUESTION)]
    adapter, simple = attach(ledger)
    response = index.as_query_engine(llm=MockLLM(max_tokens=8), similarity_top_k=1).query(QUESTION)

    events = spool_events(ledger, spool_dir)
    assert adapter.errors == 0
    assert kinds(events).count(("llm:call", "start")) == 1
    assert len([e for e in events if e["body"]["phase"] == "start"]) == spans(simple)
    assert_linked_graph(events)
    assert_ends_complete_starts(events)
    public = [(e["body"]["span"] if e["body"]["phase"] == "start" else e["action_type"], e["body"]["phase"])
              for e in events if e["action_type"].removeprefix("chain:") in PUBLIC or e["action_type"] == "llm:call"]
    assert public == [
        ("RetrieverQueryEngine.query", "start"), ("VectorIndexRetriever.retrieve", "start"),
        ("chain:VectorIndexRetriever.retrieve", "end"), ("CompactAndRefine.synthesize", "start"),
        ("MockLLM.complete", "start"), ("llm:call", "end"),
        ("chain:CompactAndRefine.synthesize", "end"), ("chain:RetrieverQueryEngine.query", "end"),
    ]
    body = {k: e["body"] for e, k in zip(events, kinds(events))}
    assert body["chain:RetrieverQueryEngine.query", "start"]["input"] == {"str_or_query_bundle": QUESTION}
    assert [n["node"]["text"] for n in body["chain:VectorIndexRetriever.retrieve", "end"]["output"]] == expected_nodes
    assert QUESTION in body["llm:call", "start"]["input"]["args"][0]          # the prompt sent to the LLM
    assert body["llm:call", "end"]["output"]["text"] == str(response)
    assert body["chain:RetrieverQueryEngine.query", "end"]["output"]["response"] == str(response)


def test_an_agent_run_with_a_tool_call_is_one_linked_graph(offline_ledger, attach) -> None:
    ledger, spool_dir = offline_ledger
    adapter, simple = attach(ledger)
    result = run(make_agent(tool_call(6, 7), ANSWER), "What is 6 times 7?")
    assert str(result) == "42"

    events = spool_events(ledger, spool_dir)
    assert adapter.errors == 0
    assert len([e for e in events if e["body"]["phase"] == "start"]) == spans(simple)
    by_id = assert_linked_graph(events)
    assert_ends_complete_starts(events)
    main = [k for k in kinds(events) if k[0] in ("agent:run", "llm:call") or k[0].startswith("tool:")]
    assert main == [("agent:run", "start"), ("llm:call", "start"), ("llm:call", "end"), ("tool:multiply", "start"),
                    ("tool:multiply", "end"), ("llm:call", "start"), ("llm:call", "end"), ("agent:run", "end")]
    body = {k: e["body"] for e, k in zip(events, kinds(events))}
    assert body["agent:run", "start"]["name"] == "calculator"
    assert body["agent:run", "start"]["input"]["start_event"]["user_msg"] == "What is 6 times 7?"
    assert body["tool:multiply", "start"]["input"] == {"a": 6, "b": 7}
    assert body["tool:multiply", "end"]["output"]["raw_output"] == multiply(6, 7)
    assert body["llm:call", "end"]["output"]["message"]["blocks"][0]["text"] == "42"   # the streamed answer
    tool_start = events[kinds(events).index(("tool:multiply", "start"))]
    step = by_id[tool_start["links"][0]["event_id"]]
    assert step["action_type"] == "agent:step" and step["body"]["span"] == "BaseWorkflowAgent.call_tool"
    assert by_id[step["links"][0]["event_id"]]["action_type"] == "agent:run"


def test_a_failing_tool_is_recorded_as_an_error_and_the_agent_goes_on(offline_ledger, attach) -> None:
    ledger, spool_dir = offline_ledger
    adapter, _ = attach(ledger)
    with ledger.session(session_id="ticket-7"):
        assert str(run(make_agent(tool_call(-6, 7), ANSWER), "What is -6 times 7?")) == "42"   # the model sees it

    events = spool_events(ledger, spool_dir)
    assert {e["session_id"] for e in events} == {"ticket-7"}      # the enclosing ledger.session() applies
    errors = {t: e["body"]["error"] for e, (t, phase) in zip(events, kinds(events)) if phase == "error"}
    assert errors == {"tool:multiply": {"type": "ValueError", "message": "refusing negative numbers"}}
    assert_linked_graph(events)
    assert_ends_complete_starts(events)
    assert adapter.errors == 0


def test_the_frameworks_exception_propagates_unchanged_and_is_recorded(offline_ledger, attach, index) -> None:
    ledger, spool_dir = offline_ledger
    adapter, simple = attach(ledger)
    with pytest.raises(ConnectionError) as raised:
        index.as_query_engine(llm=FailingLLM(), similarity_top_k=1).query(QUESTION)
    assert raised.value is BOOM

    events = spool_events(ledger, spool_dir)
    errors = [(t, e["body"]["error"]) for e, (t, phase) in zip(events, kinds(events)) if phase == "error"]
    assert len(errors) == len(simple.dropped_spans) and errors[0][0] == "llm:call"
    assert {(error["type"], error["message"]) for _, error in errors} == {("ConnectionError", "model unreachable")}
    assert errors[-1][0] == "chain:RetrieverQueryEngine.query"
    assert_linked_graph(events)
    assert_ends_complete_starts(events)
    assert adapter.errors == 0


def test_redact_and_hash_only_apply_to_every_event(offline_ledger, attach, index) -> None:
    ledger, spool_dir = offline_ledger
    adapter, _ = attach(ledger, redact=["input", "output"], session="s-li")
    index.as_query_engine(llm=MockLLM(max_tokens=8), similarity_top_k=1).query(QUESTION)
    adapter.detach()
    hashed, simple = attach(ledger, hash_only=True)
    run(make_agent(ANSWER), "secret")
    events = spool_events(ledger, spool_dir)
    shown = [e for e in events if e["payload"] is not None]
    assert all(e["body"].get(key, "[REDACTED]") == "[REDACTED]" for e in shown for key in ("input", "output"))
    assert all(e["body"]["input_bytes"] > 0 for e in shown if e["body"]["phase"] == "start")
    assert {e["session_id"] for e in shown} == {"s-li"}
    hidden = [e for e in events if e["payload"] is None]
    assert len(hidden) == 2 * spans(simple) and all(len(e["payload_hash"]) == 32 for e in hidden)


@pytest.mark.parametrize("failure", ["closed", "record_raises"])
def test_an_adapter_failure_never_breaks_the_query_or_the_agent(offline_ledger, attach, index,
                                                                monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    ledger, _ = offline_ledger
    adapter, simple = attach(ledger)
    break_ledger(ledger, failure, monkeypatch)
    assert str(index.as_query_engine(llm=MockLLM(max_tokens=2), similarity_top_k=1).query(QUESTION)) == "text text"
    assert str(run(make_agent(tool_call(6, 7), ANSWER), "What is 6 times 7?")) == "42"
    assert adapter.errors == spans(simple)    # every start was refused; the ends of unrecorded starts are skipped
