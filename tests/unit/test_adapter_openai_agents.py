"""OpenAI Agents SDK adapter against real openai-agents: Runner.run_sync with an Agent whose
model is a canned ``Model`` (one function tool call, then the answer); tracing on, the SDK's
OpenAI exporter replaced, no network and no API key."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("agents", reason="needs the adapters-openai-agents extra")

from agents import Agent, Runner, function_tool  # noqa: E402
from agents.items import ModelResponse  # noqa: E402
from agents.models.interface import Model  # noqa: E402
from agents.tracing import generation_span, set_trace_processors  # noqa: E402
from agents.usage import Usage  # noqa: E402
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText  # noqa: E402
from test_adapter_base import (break_ledger, assert_ends_complete_starts, assert_linked_graph, kafka_events,  # noqa: E402
                               kinds, offline_ledger, spool_events)  # noqa: F401

import ledgerstream  # noqa: E402
from ledgerstream.producers.adapters.openai_agents import LedgerTracingProcessor  # noqa: E402


class CannedModel(Model):
    """Answers from a list inside a generation span, as the SDK's own models do."""

    def __init__(self, outputs: list[Any]) -> None:
        self.outputs = outputs

    async def get_response(self, system_instructions: Any, input: Any, model_settings: Any, tools: Any,
                           output_schema: Any, handoffs: Any, tracing: Any, **kwargs: Any) -> ModelResponse:
        with generation_span(model="canned-1", model_config={}, disabled=tracing.is_disabled()) as span:
            output = self.outputs.pop(0)
            if isinstance(output, BaseException):
                span.set_error({"message": str(output), "data": None})
                raise output
            span.span_data.input = input if isinstance(input, list) else [{"role": "user", "content": input}]
            span.span_data.output = [item.model_dump() for item in output]
            span.span_data.usage = {"input_tokens": 10, "output_tokens": 5}
            return ModelResponse(output=output, usage=Usage(requests=1, input_tokens=10, output_tokens=5,
                                                            total_tokens=15), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


@function_tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def make_agent(*outputs: Any) -> Agent:
    return Agent(name="calculator", instructions="Multiply.", model=CannedModel(list(outputs)), tools=[multiply])


TOOL_CALL = [ResponseFunctionToolCall(id="fc_1", call_id="call_1", name="multiply", arguments='{"a": 6, "b": 7}',
                                      type="function_call", status="completed")]
ANSWER = [ResponseOutputMessage(id="msg_1", type="message", role="assistant", status="completed",
                                content=[ResponseOutputText(type="output_text", text="42", annotations=[])])]


@pytest.fixture()
def processors(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """use(ledger) -> our processor as the only one (so nothing is exported to OpenAI)."""
    monkeypatch.delenv("OPENAI_AGENTS_DISABLE_TRACING", raising=False)

    def use(ledger: Any) -> LedgerTracingProcessor:
        processor = LedgerTracingProcessor(ledger)
        set_trace_processors([processor])
        return processor

    yield use
    set_trace_processors([])


def run_types(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Recorded kinds without the SDK's task/turn wrapper spans (newer SDKs only)."""
    return [k for k in kinds(events) if k[0] not in ("chain:task", "agent:step")]


@pytest.mark.integration
def test_a_run_with_a_function_call_is_one_linked_graph_in_kafka(bootstrap: str, topics, tmp_path: Path,
                                                                ls_home: Path, processors) -> None:
    ledger = ledgerstream.connect(agent_id="oa-agent", bootstrap=bootstrap, topics=topics,
                                  spool_dir=tmp_path / "spool", adapter="openai-agents")
    processor = processors(ledger)
    try:
        assert Runner.run_sync(make_agent(TOOL_CALL, ANSWER), "What is 6 times 7?").final_output == "42"
        events = kafka_events(ledger, bootstrap, topics)
    finally:
        ledger.close()

    assert run_types(events) == [
        ("chain:Agent_workflow", "start"), ("agent:run", "start"),
        ("llm:call", "start"), ("llm:call", "end"), ("tool:multiply", "start"), ("tool:multiply", "end"),
        ("llm:call", "start"), ("llm:call", "end"),
        ("agent:run", "end"), ("chain:Agent_workflow", "end"),
    ]
    assert processor.errors == 0
    by_id = assert_linked_graph(events)
    assert_ends_complete_starts(events)
    body = {k: e["body"] for e, k in zip(events, kinds(events))}
    assert body["agent:run", "start"]["name"] == "calculator"
    assert body["agent:run", "end"]["tools"] == ["multiply"]
    assert body["tool:multiply", "end"]["input"] == '{"a": 6, "b": 7}' and body["tool:multiply", "end"]["output"] == "42"
    llm_end = body["llm:call", "end"]
    assert llm_end["model"] == "canned-1" and llm_end["token_usage"] == \
        {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    assert llm_end["output"][0]["content"][0]["text"] == "42"      # the last generation: the answer
    trace_id = body["chain:Agent_workflow", "start"]["trace_id"]
    assert all(e["body"].get("trace_id", trace_id) == trace_id for e in events)
    node = by_id[events[kinds(events).index(("tool:multiply", "start"))]["links"][0]["event_id"]]
    while node["action_type"] != "agent:run":
        node = by_id[node["links"][0]["event_id"]]


@pytest.mark.unit
def test_the_frameworks_exception_propagates_unchanged_and_is_recorded(offline_ledger, processors) -> None:
    ledger, spool_dir = offline_ledger
    processor = processors(ledger)
    boom = ConnectionError("model unreachable")
    with pytest.raises(ConnectionError) as raised:
        Runner.run_sync(make_agent(boom), "What is 6 times 7?")
    assert raised.value is boom

    events = spool_events(ledger, spool_dir)
    assert ("llm:call", "error") in kinds(events)
    assert kinds(events)[-1] == ("chain:Agent_workflow", "end")
    error = next(e["body"]["error"] for e in events if e["body"]["phase"] == "error")
    assert error == {"type": "Error", "message": "model unreachable"}
    assert_linked_graph(events)
    assert_ends_complete_starts(events)
    assert processor.errors == 0


@pytest.mark.unit
@pytest.mark.parametrize("failure", ["closed", "record_raises"])
def test_an_adapter_failure_never_breaks_the_run(offline_ledger, processors, monkeypatch: pytest.MonkeyPatch,
                                                 failure: str) -> None:
    ledger, _ = offline_ledger
    processor = processors(ledger)
    break_ledger(ledger, failure, monkeypatch)
    assert Runner.run_sync(make_agent(TOOL_CALL, ANSWER), "What is 6 times 7?").final_output == "42"
    assert processor.errors >= 10     # every start and end of the run was refused
    processor.force_flush()
