"""smolagents adapter against real smolagents: a ToolCallingAgent whose model is a canned
``Model`` (tool calls, then the final_answer tool), with the ledger's step callback registered
for every step type; no network and no API key."""
from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("smolagents", reason="needs the adapters-smolagents extra")

from smolagents import Model, ToolCallingAgent, tool  # noqa: E402
from smolagents.memory import MemoryStep  # noqa: E402
from smolagents.models import ChatMessage, ChatMessageToolCall, ChatMessageToolCallFunction, MessageRole  # noqa: E402
from smolagents.monitoring import LogLevel, TokenUsage  # noqa: E402
from smolagents.utils import AgentGenerationError  # noqa: E402
from test_adapter_base import (break_ledger, assert_ends_complete_starts, assert_linked_graph, kinds,  # noqa: E402
                               offline_ledger, spool_events)  # noqa: F401

from ledgerstream.producers.adapters.smolagents import LedgerStepCallback  # noqa: E402

pytestmark = pytest.mark.unit


class CannedModel(Model):
    """Replies from a list; raises an exception instance found there."""

    def __init__(self, replies: list[Any]) -> None:
        super().__init__(model_id="canned-1")
        self.replies = replies

    def generate(self, messages: Any, stop_sequences: Any = None, response_format: Any = None,
                 tools_to_call_from: Any = None, **kwargs: Any) -> ChatMessage:
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: the first factor
        b: the second factor
    """
    return a * b


@tool
def divide(a: int, b: int) -> float:
    """Divide two integers.

    Args:
        a: the dividend
        b: the divisor
    """
    return a / b


def call(name: str, arguments: dict[str, Any], call_id: str) -> ChatMessage:
    function = ChatMessageToolCallFunction(name=name, arguments=arguments)
    return ChatMessage(role=MessageRole.ASSISTANT, content=None,
                       tool_calls=[ChatMessageToolCall(function=function, id=call_id, type="function")],
                       token_usage=TokenUsage(input_tokens=10, output_tokens=5))


ANSWER = call("final_answer", {"answer": "42"}, "c2")


def make_agent(ledger: Any, *replies: Any, planning_interval: int | None = None,
               **options: Any) -> tuple[ToolCallingAgent, LedgerStepCallback]:
    callback = LedgerStepCallback(ledger, **options)
    agent = ToolCallingAgent(tools=[multiply, divide], model=CannedModel(list(replies)), name="calculator",
                             step_callbacks={MemoryStep: callback}, planning_interval=planning_interval,
                             verbosity_level=LogLevel.OFF)
    return agent, callback


STEP = [("agent:step", "start"), ("llm:call", "start"), ("llm:call", "end")]


def test_a_run_with_a_tool_call_is_one_linked_graph(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    agent, callback = make_agent(ledger, call("multiply", {"a": 6, "b": 7}, "c1"), ANSWER)
    assert agent.run("What is 6 times 7?") == "42"

    events = spool_events(ledger, spool_dir)
    assert kinds(events) == [
        ("agent:run", "start"),
        *STEP, ("tool:multiply", "start"), ("tool:multiply", "end"), ("agent:step", "end"),
        *STEP, ("tool:final_answer", "start"), ("tool:final_answer", "end"), ("agent:step", "end"),
        ("agent:run", "end"),
    ]
    assert callback.errors == 0
    by_id = assert_linked_graph(events)
    assert_ends_complete_starts(events)
    body = {k: e["body"] for e, k in zip(events, kinds(events))}
    run = body["agent:run", "start"]
    assert (run["name"], run["model"], run["task"]) == ("calculator", "canned-1", "What is 6 times 7?")
    assert run["tools"] == sorted(agent.tools)
    assert body["tool:multiply", "start"]["input"] == {"a": 6, "b": 7}
    assert body["tool:multiply", "end"]["output"] == "42"      # smolagents' observation of multiply(6, 7)
    assert body["llm:call", "end"]["token_usage"] == {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    assert body["llm:call", "end"]["output"]["tool_calls"][0]["function"]["name"] == "final_answer"
    assert body["llm:call", "start"]["messages"][-1]["role"] == "tool-response"   # the last turn: multiply's result
    assert body["agent:run", "end"]["output"] == "42" and body["agent:run", "end"]["duration_ms"] > 0
    assert body["agent:step", "end"]["is_final_answer"] is True
    tool_start = events[kinds(events).index(("tool:multiply", "start"))]
    assert by_id[tool_start["links"][0]["event_id"]]["action_type"] == "agent:step"
    assert agent.memory.steps[1].timing.start_time * 1_000_000 == pytest.approx(events[1]["occurred_at"], abs=1)


def test_a_failing_tool_is_recorded_as_an_error_and_the_agent_goes_on(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    agent, callback = make_agent(ledger, call("divide", {"a": 1, "b": 0}, "c1"), ANSWER)
    assert agent.run("What is 1 / 0?") == "42"      # smolagents shows the error to the model
    failed = agent.memory.steps[1].error

    events = spool_events(ledger, spool_dir)
    errors = {t: e["body"]["error"] for e, (t, phase) in zip(events, kinds(events)) if phase == "error"}
    assert list(errors) == ["tool:divide", "agent:step"]
    assert errors["tool:divide"] == {"type": type(failed).__qualname__, "message": str(failed)}
    assert "division by zero" in errors["tool:divide"]["message"]
    assert kinds(events)[-1] == ("agent:run", "end")
    assert_linked_graph(events)
    assert_ends_complete_starts(events)
    assert callback.errors == 0


def test_a_planning_step_is_a_step_of_the_run(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    plan = ChatMessage(role=MessageRole.ASSISTANT, content="1. Answer 42.")
    agent, callback = make_agent(ledger, plan, ANSWER, planning_interval=5)
    assert agent.run("What is 6 times 7?") == "42"
    events = spool_events(ledger, spool_dir)
    assert kinds(events) == [("agent:run", "start"),
                             *STEP, ("agent:step", "end"),
                             *STEP, ("tool:final_answer", "start"), ("tool:final_answer", "end"), ("agent:step", "end"),
                             ("agent:run", "end")]
    assert events[1]["body"]["step_type"] == "planning" and events[4]["body"]["plan"] == agent.memory.steps[1].plan
    assert_linked_graph(events)
    assert_ends_complete_starts(events)
    assert callback.errors == 0


def test_a_model_failure_propagates_unchanged_and_ends_the_run_as_an_error(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    boom = ConnectionError("model unreachable")
    callback = LedgerStepCallback(ledger)
    agent = ToolCallingAgent(tools=[], model=CannedModel([boom]), verbosity_level=LogLevel.OFF)
    callback.attach(agent)
    with pytest.raises(AgentGenerationError) as raised:
        agent.run("What is 6 times 7?")
    assert raised.value.__cause__ is boom

    events = spool_events(ledger, spool_dir)
    assert kinds(events) == [("agent:run", "start"), ("agent:step", "start"), ("llm:call", "start"),
                             ("llm:call", "error"), ("agent:step", "error"), ("agent:run", "error")]
    assert {e["body"]["error"]["message"] for e in events[3:]} == {str(raised.value)}
    assert events[-1]["body"]["error"]["type"] == "AgentGenerationError"
    assert_linked_graph(events)
    assert_ends_complete_starts(events)
    assert callback.errors == 0


def test_each_run_of_one_agent_is_its_own_graph_in_the_enclosing_session(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    agent, _ = make_agent(ledger, ANSWER, call("final_answer", {"answer": "7"}, "c3"))
    assert agent.run("first") == "42"
    with ledger.session(session_id="ticket-7"):
        assert agent.run("second") == "7"
    events = spool_events(ledger, spool_dir)
    second = kinds(events).index(("agent:run", "start"), 1)
    assert second == len(events) // 2
    assert_linked_graph(events[:second])
    assert_linked_graph(events[second:])
    assert events[second]["body"]["task"] == "second"
    assert [e["session_id"] for e in events] == [None] * second + ["ticket-7"] * second


def test_redact_and_hash_only_apply_to_every_event(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    agent, _ = make_agent(ledger, call("multiply", {"a": 6, "b": 7}, "c1"), ANSWER, redact=["input", "messages"],
                          session="s-smol")
    agent.run("What is 6 times 7?")
    hashed, _ = make_agent(ledger, ANSWER, hash_only=True)
    hashed.run("secret task")
    events = spool_events(ledger, spool_dir)
    redacted = [e for e in events if e["payload"] is not None]
    tool_start = next(e["body"] for e in redacted if kinds([e]) == [("tool:multiply", "start")])
    assert tool_start["input"] == "[REDACTED]" and tool_start["input_bytes"] == len('{"a":6,"b":7}')
    assert all(e["body"].get("messages", "[REDACTED]") == "[REDACTED]" for e in redacted)
    assert {e["session_id"] for e in redacted} == {"s-smol"}
    hashed_events = [e for e in events if e["payload"] is None]
    assert len(hashed_events) == len(events) - len(redacted) == 8
    assert all(len(e["payload_hash"]) == 32 for e in hashed_events)


@pytest.mark.parametrize("failure", ["closed", "record_raises"])
def test_an_adapter_failure_never_breaks_the_agent(offline_ledger, monkeypatch: pytest.MonkeyPatch,
                                                   failure: str) -> None:
    ledger, _ = offline_ledger
    agent, callback = make_agent(ledger, call("multiply", {"a": 6, "b": 7}, "c1"), ANSWER)
    break_ledger(ledger, failure, monkeypatch)
    assert agent.run("What is 6 times 7?") == "42"
    steps = [step for step in agent.memory.steps if type(step).__name__ == "ActionStep"]
    assert callback.errors == len(steps) == 2   # each action step gave up at its first event; the end of
    #                                            the run, whose start was refused, is skipped
