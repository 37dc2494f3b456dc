"""Pydantic AI adapter against real pydantic-ai: an Agent on the framework's own
``FunctionModel`` (a tool call, then the answer) and ``TestModel``, instrumented with the
ledger's span processor; no network and no API key."""
from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("pydantic_ai", reason="needs the adapters-pydantic-ai extra")

from pydantic_ai import Agent  # noqa: E402
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart  # noqa: E402
from pydantic_ai.models.function import AgentInfo, FunctionModel  # noqa: E402
from pydantic_ai.models.test import TestModel  # noqa: E402
from test_adapter_base import (break_ledger, assert_ends_complete_starts, assert_linked_graph, kinds,  # noqa: E402
                               offline_ledger, spool_events)  # noqa: F401

from ledgerstream.producers.adapters.pydantic_ai import LedgerSpanProcessor  # noqa: E402

pytestmark = pytest.mark.unit


def canned(*replies: Any) -> FunctionModel:
    """A model answering from a list: a ModelResponse, or an exception to raise."""
    queue = list(replies)

    def reply(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        item = queue.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    return FunctionModel(reply, model_name="canned-1")


TOOL_CALL = ModelResponse(parts=[ToolCallPart("multiply", {"a": 6, "b": 7}, tool_call_id="c1")])
ANSWER = ModelResponse(parts=[TextPart("42")])


def make_agent(ledger: Any, model: Any, **options: Any) -> tuple[Agent, LedgerSpanProcessor]:
    processor = LedgerSpanProcessor(ledger, **options)
    agent = Agent(model, name="calculator", instructions="Multiply.")

    @agent.tool_plain
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        if a < 0:
            raise ValueError("refusing negative numbers")
        return a * b

    agent.instrument = processor.instrumentation()
    return agent, processor


def test_a_run_with_a_tool_call_is_one_linked_graph(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    agent, processor = make_agent(ledger, canned(TOOL_CALL, ANSWER))
    result = agent.run_sync("What is 6 times 7?")
    assert result.output == "42"

    events = spool_events(ledger, spool_dir)
    assert kinds(events) == [
        ("agent:run", "start"),
        ("llm:call", "start"), ("llm:call", "end"),
        ("tool:multiply", "start"), ("tool:multiply", "end"),
        ("llm:call", "start"), ("llm:call", "end"),
        ("agent:run", "end"),
    ]
    assert processor.errors == 0
    by_id = assert_linked_graph(events)
    assert_ends_complete_starts(events)
    body = {k: e["body"] for e, k in zip(events, kinds(events))}
    assert body["agent:run", "start"]["name"] == "calculator" and body["agent:run", "start"]["model"] == "canned-1"
    assert body["tool:multiply", "start"]["input"] == {"a": 6, "b": 7}
    assert body["tool:multiply", "end"]["output"] == "42"     # as Pydantic AI serialises the result
    llm_end = body["llm:call", "end"]                      # the last model request: the answer
    assert llm_end["output"][0]["parts"][0]["content"] == "42"
    assert llm_end["messages"][0]["parts"][0]["content"] == "What is 6 times 7?"
    assert llm_end["model"] == "canned-1" and body["llm:call", "start"]["span_name"] == "chat canned-1"
    usage = result.usage
    assert body["agent:run", "end"]["token_usage"] == {"input_tokens": usage.input_tokens,
                                                       "output_tokens": usage.output_tokens,
                                                       "total_tokens": usage.input_tokens + usage.output_tokens}
    assert body["agent:run", "end"]["output"] == "42"
    assert {e["body"]["trace_id"] for e in events if e["body"]["phase"] == "start"} == \
        {body["agent:run", "start"]["trace_id"]}
    tool_start = events[kinds(events).index(("tool:multiply", "start"))]
    assert by_id[tool_start["links"][0]["event_id"]]["action_type"] == "agent:run"


def test_the_test_model_run_is_recorded_in_the_enclosing_session(offline_ledger) -> None:
    """Pydantic AI's TestModel calls every tool once, then answers with the tool results."""
    ledger, spool_dir = offline_ledger
    agent, _ = make_agent(ledger, TestModel())
    with ledger.session(session_id="ticket-7"):
        output = agent.run_sync("Multiply something.").output
    events = spool_events(ledger, spool_dir)
    assert {e["session_id"] for e in events} == {"ticket-7"}
    tool_end = next(e["body"] for e, k in zip(events, kinds(events)) if k == ("tool:multiply", "end"))
    assert output == f'{{"multiply":{tool_end["output"]}}}'
    assert kinds(events)[0] == ("agent:run", "start") and kinds(events)[-1] == ("agent:run", "end")
    assert_linked_graph(events)


def test_a_failing_tool_propagates_unchanged_and_is_recorded(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    agent, processor = make_agent(ledger, canned(ModelResponse(parts=[ToolCallPart("multiply", {"a": -6, "b": 7})])))
    with pytest.raises(ValueError, match="refusing negative numbers"):
        agent.run_sync("What is -6 times 7?")

    events = spool_events(ledger, spool_dir)
    errors = {t: e["body"]["error"] for e, (t, phase) in zip(events, kinds(events)) if phase == "error"}
    assert list(errors) == ["tool:multiply", "agent:run"]
    assert errors["tool:multiply"] == {"type": "ValueError", "message": "refusing negative numbers"}
    assert_linked_graph(events)
    assert_ends_complete_starts(events)
    assert processor.errors == 0


def test_a_failing_model_propagates_unchanged_and_is_recorded(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    boom = ConnectionError("model unreachable")
    agent, _ = make_agent(ledger, canned(boom))
    with pytest.raises(ConnectionError) as raised:
        agent.run_sync("What is 6 times 7?")
    assert raised.value is boom
    events = spool_events(ledger, spool_dir)
    assert kinds(events) == [("agent:run", "start"), ("llm:call", "start"), ("llm:call", "error"),
                             ("agent:run", "error")]
    assert events[2]["body"]["error"] == {"type": "ConnectionError", "message": "model unreachable"}
    assert_ends_complete_starts(events)


def test_redact_and_hash_only_apply_to_every_event(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    agent, _ = make_agent(ledger, canned(TOOL_CALL, ANSWER), redact=["input", "messages"], session="s-pai")
    agent.run_sync("What is 6 times 7?")
    hashed, _ = make_agent(ledger, canned(ANSWER), hash_only=True)
    hashed.run_sync("secret")
    events = spool_events(ledger, spool_dir)
    shown = [e for e in events if e["payload"] is not None]
    tool_start = next(e["body"] for e in shown if kinds([e]) == [("tool:multiply", "start")])
    assert tool_start["input"] == "[REDACTED]" and tool_start["input_bytes"] == len('{"a":6,"b":7}')
    assert all(e["body"].get("messages", "[REDACTED]") == "[REDACTED]" for e in shown)
    assert {e["session_id"] for e in shown} == {"s-pai"}
    hidden = [e for e in events if e["payload"] is None]
    assert len(hidden) == 4 and all(len(e["payload_hash"]) == 32 for e in hidden)   # run and model request


@pytest.mark.parametrize("failure", ["closed", "record_raises"])
def test_an_adapter_failure_never_breaks_the_run(offline_ledger, monkeypatch: pytest.MonkeyPatch,
                                                 failure: str) -> None:
    ledger, _ = offline_ledger
    agent, processor = make_agent(ledger, canned(TOOL_CALL, ANSWER))
    break_ledger(ledger, failure, monkeypatch)
    assert agent.run_sync("What is 6 times 7?").output == "42"
    assert processor.errors == 8      # each start and end of the 4 spans (run, 2 requests, tool) was refused
    processor.force_flush()
