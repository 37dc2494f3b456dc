"""Haystack adapter against real haystack-ai: a Pipeline of the built-in ChatPromptBuilder
and Agent, whose canned chat generator asks for one tool call, traced offline."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")   # no usage pings from Pipeline.run

pytest.importorskip("haystack", reason="needs the adapters-haystack extra")

from haystack import Pipeline, component, tracing  # noqa: E402
from haystack.components.agents import Agent  # noqa: E402
from haystack.components.builders import ChatPromptBuilder  # noqa: E402
from haystack.core.errors import PipelineRuntimeError  # noqa: E402
from haystack.dataclasses import ChatMessage, ToolCall  # noqa: E402
from haystack.tools import Tool  # noqa: E402
from test_adapter_base import (break_ledger, assert_ends_complete_starts, assert_linked_graph, kafka_events,  # noqa: E402
                               kinds, offline_ledger, spool_events)  # noqa: F401

import ledgerstream  # noqa: E402
from ledgerstream.producers.adapters.haystack import LedgerTracer  # noqa: E402


@component
class CannedChatGenerator:
    """Replies from a list; raises an exception instance found there."""

    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies

    @component.output_types(replies=list[ChatMessage])
    def run(self, messages: list[ChatMessage], tools: Any = None) -> dict[str, list[ChatMessage]]:
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return {"replies": [reply]}


def multiply(a: int, b: int) -> int:
    return a * b


MULTIPLY = Tool(name="multiply", description="Multiply two integers.", function=multiply,
                parameters={"type": "object", "required": ["a", "b"],
                            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}})
TOOL_CALL = ChatMessage.from_assistant(tool_calls=[ToolCall(tool_name="multiply", arguments={"a": 6, "b": 7}, id="c1")])


def make_pipeline(*replies: Any) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component("prompt", ChatPromptBuilder(template=[ChatMessage.from_user("What is {{a}} times {{b}}?")],
                                                       required_variables="*"))
    pipeline.add_component("agent", Agent(chat_generator=CannedChatGenerator(list(replies)), tools=[MULTIPLY]))
    pipeline.connect("prompt.prompt", "agent.messages")
    return pipeline


@pytest.fixture()
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """enable(ledger) -> LedgerTracer, with content tracing on; tracing is off again afterwards."""
    monkeypatch.setattr(tracing.tracer, "is_content_tracing_enabled", True)

    def enable(ledger: Any) -> LedgerTracer:
        tracer = LedgerTracer(ledger)
        tracing.enable_tracing(tracer)
        return tracer

    yield enable
    tracing.disable_tracing()


EXPECTED = [
    ("chain:pipeline", "start"),
    ("chain:prompt", "start"), ("chain:prompt", "end"),
    ("chain:agent", "start"), ("agent:run", "start"),
    ("agent:step", "start"), ("llm:call", "start"), ("llm:call", "end"),
    ("tool:multiply", "start"), ("tool:multiply", "end"), ("agent:step", "end"),
    ("agent:step", "start"), ("llm:call", "start"), ("llm:call", "end"), ("agent:step", "end"),
    ("agent:run", "end"), ("chain:agent", "end"),
    ("chain:pipeline", "end"),
]


@pytest.mark.integration
def test_a_pipeline_with_an_agent_tool_call_is_one_linked_graph_in_kafka(bootstrap: str, topics, tmp_path: Path,
                                                                        ls_home: Path, traced) -> None:
    ledger = ledgerstream.connect(agent_id="hs-agent", bootstrap=bootstrap, topics=topics,
                                  spool_dir=tmp_path / "spool", adapter="haystack")
    tracer = traced(ledger)
    try:
        result = make_pipeline(TOOL_CALL, ChatMessage.from_assistant("42")).run({"prompt": {"a": 6, "b": 7}})
        assert result["agent"]["last_message"].text == "42"
        events = kafka_events(ledger, bootstrap, topics)
    finally:
        ledger.close()

    assert kinds(events) == EXPECTED
    assert tracer.errors == 0
    by_id = assert_linked_graph(events)
    assert_ends_complete_starts(events)
    body = {k: e["body"] for e, k in zip(events, kinds(events))}
    assert body["chain:pipeline", "start"]["pipeline_input_data"] == {"prompt": {"a": 6, "b": 7}}
    assert body["chain:prompt", "end"]["component_output"]["prompt"][0]["content"] == [{"text": "What is 6 times 7?"}]
    assert body["chain:agent", "start"]["component_type"] == "Agent"
    assert body["tool:multiply", "start"]["tool_name"] == "multiply"
    assert body["tool:multiply", "end"]["agent_step_tool_input"] == {"a": 6, "b": 7}
    assert body["tool:multiply", "end"]["agent_step_tool_output"] == 42
    assert body["llm:call", "end"]["agent_step_llm_output"]["replies"][0]["content"] == [{"text": "42"}]
    assert "component_input_spec" not in body["chain:agent", "start"]
    tool_start = events[EXPECTED.index(("tool:multiply", "start"))]
    assert by_id[tool_start["links"][0]["event_id"]]["action_type"] == "agent:step"


@pytest.mark.unit
def test_the_frameworks_exception_propagates_unchanged_and_is_recorded(offline_ledger, traced) -> None:
    ledger, spool_dir = offline_ledger
    tracer = traced(ledger)
    boom = ConnectionError("model unreachable")
    with pytest.raises(PipelineRuntimeError) as raised:
        make_pipeline(boom).run({"prompt": {"a": 6, "b": 7}})
    assert raised.value.__cause__ is boom

    events = spool_events(ledger, spool_dir)
    errors = {t: e["body"]["error"] for e, (t, phase) in zip(events, kinds(events)) if phase == "error"}
    assert list(errors) == ["llm:call", "agent:step", "agent:run", "chain:agent", "chain:pipeline"]
    assert errors["llm:call"] == {"type": "ConnectionError", "message": "model unreachable"}
    assert errors["chain:pipeline"]["type"] == "PipelineRuntimeError"
    assert_linked_graph(events)
    assert_ends_complete_starts(events)
    assert tracer.errors == 0


@pytest.mark.unit
@pytest.mark.parametrize("failure", ["closed", "record_raises"])
def test_an_adapter_failure_never_breaks_the_pipeline(offline_ledger, traced, monkeypatch: pytest.MonkeyPatch,
                                                      failure: str) -> None:
    ledger, _ = offline_ledger
    tracer = traced(ledger)
    break_ledger(ledger, failure, monkeypatch)
    result = make_pipeline(TOOL_CALL, ChatMessage.from_assistant("42")).run({"prompt": {"a": 6, "b": 7}})
    assert result["agent"]["last_message"].text == "42"
    assert tracer.errors == len([k for k in EXPECTED if k[1] == "start"])   # ends of unrecorded starts: skipped
    with pytest.raises(PipelineRuntimeError):
        make_pipeline(ValueError("still raised")).run({"prompt": {"a": 6, "b": 7}})
