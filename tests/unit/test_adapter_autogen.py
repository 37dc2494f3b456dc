"""AutoGen AgentChat adapter against real autogen-agentchat: an AssistantAgent with a function
tool whose model is autogen-ext's ReplayChatCompletionClient (a tool call, then the answer),
offline and without an API key. Expected values come from AgentChat's own TaskResult."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("autogen_agentchat", reason="needs the adapters-autogen extra")
pytest.importorskip("autogen_ext.models.replay", reason="needs autogen-ext (ReplayChatCompletionClient)")

from autogen_agentchat.agents import AssistantAgent  # noqa: E402
from autogen_agentchat.base import TaskResult  # noqa: E402
from autogen_agentchat.conditions import TextMentionTermination  # noqa: E402
from autogen_agentchat.messages import ToolCallExecutionEvent, ToolCallRequestEvent  # noqa: E402
from autogen_agentchat.teams import RoundRobinGroupChat  # noqa: E402
from autogen_core import FunctionCall  # noqa: E402
from autogen_core.models import CreateResult, ModelInfo, RequestUsage  # noqa: E402
from autogen_ext.models.replay import ReplayChatCompletionClient  # noqa: E402
from test_adapter_base import (break_ledger, assert_ends_complete_starts, assert_linked_graph, kinds,  # noqa: E402
                               offline_ledger, spool_events)  # noqa: F401

from ledgerstream.producers.adapters.autogen import LedgerStreamRecorder  # noqa: E402

pytestmark = pytest.mark.unit

MODEL_INFO = ModelInfo(vision=False, function_calling=True, json_output=False, family="unknown",
                       structured_output=False)


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def divide(a: int, b: int) -> float:
    """Divide two integers."""
    return a / b


def call(name: str, arguments: str) -> CreateResult:
    return CreateResult(finish_reason="function_calls",
                        content=[FunctionCall(id="call_1", name=name, arguments=arguments)],
                        usage=RequestUsage(prompt_tokens=10, completion_tokens=5), cached=False)


def make_agent(*answers: Any, tool: Any = multiply) -> AssistantAgent:
    client = ReplayChatCompletionClient(list(answers), model_info=MODEL_INFO)
    return AssistantAgent("calculator", model_client=client, tools=[tool], reflect_on_tool_use=True)


def run(recorder: LedgerStreamRecorder, agent: AssistantAgent) -> TaskResult:
    return asyncio.run(recorder.run(agent, task="What is 6 times 7?"))


def one(result: TaskResult, kind: type) -> Any:
    (message,) = [m for m in result.messages if isinstance(m, kind)]
    return message


def test_a_run_with_a_tool_call_is_one_linked_graph(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    recorder = LedgerStreamRecorder(ledger)
    result = run(recorder, make_agent(call("multiply", '{"a": 6, "b": 7}'), "42"))
    assert result.messages[-1].content == "42"

    events = spool_events(ledger, spool_dir)
    assert kinds(events) == [
        ("agent:run", "start"),
        ("llm:call", "start"), ("llm:call", "end"), ("tool:multiply", "start"), ("tool:multiply", "end"),
        ("llm:call", "start"), ("llm:call", "end"),
        ("agent:run", "end"),
    ]
    assert recorder.errors == 0
    by_id = assert_linked_graph(events)
    assert_ends_complete_starts(events)
    body = {k: e["body"] for e, k in zip(events, kinds(events))}
    request, execution = one(result, ToolCallRequestEvent), one(result, ToolCallExecutionEvent)
    (requested,), (executed,) = request.content, execution.content
    tool_start, tool_end = body["tool:multiply", "start"], body["tool:multiply", "end"]
    assert (tool_start["arguments"], tool_start["call_id"]) == (requested.arguments, requested.id)
    assert (tool_end["output"], executed.content) == ("42", "42")
    assert body["agent:run", "start"]["name"] == "calculator"
    assert body["agent:run", "start"]["task"] == "What is 6 times 7?"
    assert body["agent:run", "end"]["output"] == "42"
    assert body["agent:run", "end"]["messages"] == len(result.messages)
    # the tool call is caused by the model call that asked for it, whose usage AgentChat reported
    asked = by_id[events[3]["links"][0]["event_id"]]
    assert asked["action_type"] == "llm:call" and asked["body"]["run_id"] == request.id
    assert body["llm:call", "end"]["token_usage"]["input_tokens"] == result.messages[-1].models_usage.prompt_tokens
    assert events[2]["body"]["token_usage"] == {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    assert events[2]["body"]["output"] == [{"id": "call_1", "name": "multiply", "arguments": '{"a": 6, "b": 7}'}]


def test_a_team_run_is_recorded_under_the_teams_name(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    team = RoundRobinGroupChat([make_agent(call("multiply", '{"a": 6, "b": 7}'), "42")], name="maths",
                               termination_condition=TextMentionTermination("42", sources=["calculator"]))

    async def consume() -> list[Any]:      # as Console does
        return [item async for item in LedgerStreamRecorder(ledger).run_stream(team, task="What is 6 times 7?")]

    items = asyncio.run(consume())
    result = items[-1]
    assert isinstance(result, TaskResult) and result.stop_reason

    events = spool_events(ledger, spool_dir)
    assert kinds(events) == [
        ("chain:maths", "start"),
        ("llm:call", "start"), ("llm:call", "end"), ("tool:multiply", "start"), ("tool:multiply", "end"),
        ("llm:call", "start"), ("llm:call", "end"),
        ("chain:maths", "end"),
    ]
    assert events[-1]["body"]["stop_reason"] == result.stop_reason
    assert events[0]["body"]["runner_type"] == "RoundRobinGroupChat"
    assert {e["body"]["agent"] for e in events if e["action_type"] == "llm:call" and "agent" in e["body"]} == \
        {"calculator"}
    assert_linked_graph(events)
    assert_ends_complete_starts(events)


def test_a_tool_exception_is_recorded_as_an_error_and_the_run_goes_on(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    recorder = LedgerStreamRecorder(ledger)
    result = run(recorder, make_agent(call("divide", '{"a": 6, "b": 0}'), "cannot divide by zero", tool=divide))
    (executed,) = one(result, ToolCallExecutionEvent).content
    assert executed.is_error        # AgentChat caught the ZeroDivisionError and told the model

    events = spool_events(ledger, spool_dir)
    assert ("tool:divide", "error") in kinds(events) and kinds(events)[-1] == ("agent:run", "end")
    error = next(e["body"] for e in events if e["body"]["phase"] == "error")
    assert error["error"] == {"type": "ToolError", "message": executed.content}
    assert "division by zero" in executed.content
    assert_linked_graph(events)
    assert_ends_complete_starts(events)


def test_the_frameworks_exception_propagates_unchanged_and_is_recorded(offline_ledger) -> None:
    with pytest.raises(Exception) as direct:       # what AgentChat raises without the recorder
        asyncio.run(make_agent().run(task="What is 6 times 7?"))
    ledger, spool_dir = offline_ledger
    recorder = LedgerStreamRecorder(ledger)
    with pytest.raises(type(direct.value)) as raised:
        run(recorder, make_agent())
    assert str(raised.value) == str(direct.value)

    events = spool_events(ledger, spool_dir)
    assert kinds(events) == [("agent:run", "start"), ("agent:run", "error")]
    assert events[-1]["body"]["error"] == {"type": type(direct.value).__name__, "message": str(direct.value)}
    assert_ends_complete_starts(events)
    assert recorder.errors == 0


@pytest.mark.parametrize("option", ["redact", "hash_only"])
def test_redaction_and_hash_only_apply_to_every_event(offline_ledger, option: str) -> None:
    ledger, spool_dir = offline_ledger
    recorder = LedgerStreamRecorder(ledger, **({"redact": ["arguments", "output"]} if option == "redact"
                                               else {"hash_only": True}), session="s-autogen")
    run(recorder, make_agent(call("multiply", '{"a": 6, "b": 7}'), "42"))
    events = spool_events(ledger, spool_dir)
    assert len(events) == 8 and all(e["session_id"] == "s-autogen" for e in events)
    if option == "hash_only":
        assert all(e["payload"] is None and e["payload_hash"] for e in events)
        return
    tool_start, tool_end = (e["body"] for e in events if e["action_type"] == "tool:multiply")
    assert tool_start["arguments"] == "[REDACTED]" and tool_start["arguments_bytes"] > 0
    assert tool_end["output"] == "[REDACTED]" and events[-1]["body"]["output"] == "[REDACTED]"


@pytest.mark.parametrize("failure", ["closed", "record_raises"])
def test_an_adapter_failure_never_breaks_the_run(offline_ledger, monkeypatch: pytest.MonkeyPatch,
                                                 failure: str) -> None:
    ledger, _ = offline_ledger
    recorder = LedgerStreamRecorder(ledger)
    break_ledger(ledger, failure, monkeypatch)
    result = run(recorder, make_agent(call("multiply", '{"a": 6, "b": 7}'), "42"))
    assert result.messages[-1].content == "42" and result.stop_reason is None
    assert recorder.errors >= 8     # every start and every end was refused


def test_the_enclosing_ledger_session_applies(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    with ledger.session("support-call") as session:
        run(LedgerStreamRecorder(ledger), make_agent(call("multiply", '{"a": 6, "b": 7}'), "42"))
    events = spool_events(ledger, spool_dir)
    assert len(events) == 8 and {e["session_id"] for e in events} == {session.session_id}
