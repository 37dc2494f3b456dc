"""Google ADK adapter against real google-adk: a Runner (InMemorySessionService) over an App
whose LlmAgent has a Python function tool and a canned ``BaseLlm`` (a function call, then the
answer), offline and without an API key. Expected values come from ADK's own events."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncGenerator

import pytest

pytest.importorskip("google.adk", reason="needs the adapters-google-adk extra")

from google.adk.agents import LlmAgent, RunConfig  # noqa: E402
from google.adk.agents.run_config import StreamingMode  # noqa: E402
from google.adk.apps import App  # noqa: E402
from google.adk.events import Event  # noqa: E402
from google.adk.models import BaseLlm, LlmRequest, LlmResponse  # noqa: E402
from google.adk.plugins.base_plugin import BasePlugin  # noqa: E402
from google.adk.runners import Runner  # noqa: E402
from google.adk.sessions import InMemorySessionService  # noqa: E402
from google.genai import types  # noqa: E402
from test_adapter_base import (break_ledger, assert_ends_complete_starts, assert_linked_graph, kinds,  # noqa: E402
                               offline_ledger, spool_events)  # noqa: F401

from ledgerstream.producers.adapters.google_adk import LedgerPlugin  # noqa: E402

pytestmark = pytest.mark.unit

QUESTION = "What is 6 times 7?"
USAGE = types.GenerateContentResponseUsageMetadata(prompt_token_count=10, candidates_token_count=5,
                                                   total_token_count=15)
BOOM = ValueError("no negative numbers")


class CannedLlm(BaseLlm):
    """Replies from a list (a list in it: streamed responses); an exception is raised, as a
    failing provider would."""

    replies: list[Any]

    async def generate_content_async(self, llm_request: LlmRequest,
                                     stream: bool = False) -> AsyncGenerator[LlmResponse, None]:
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        for response in reply if isinstance(reply, list) else [reply]:
            yield response


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    if a < 0 or b < 0:
        raise BOOM
    return a * b


def function_call(**args: int) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(
        function_call=types.FunctionCall(name="multiply", args=args))]), usage_metadata=USAGE)


ANSWER = LlmResponse(content=types.Content(role="model", parts=[types.Part(text="42")]), usage_metadata=USAGE,
                     finish_reason=types.FinishReason.STOP)


def run(plugin: LedgerPlugin, *replies: Any, config: RunConfig | None = None) -> list[Event]:
    """One invocation of the calculator app; ADK's events, as the caller sees them."""
    agent = LlmAgent(name="calculator", model=CannedLlm(model="canned-1", replies=list(replies)),
                     instruction="Multiply.", tools=[multiply])
    sessions = InMemorySessionService()
    runner = Runner(app=App(name="calc", root_agent=agent, plugins=[plugin]), session_service=sessions)

    async def go() -> list[Event]:
        session = await sessions.create_session(app_name="calc", user_id="u-1")
        message = types.Content(role="user", parts=[types.Part(text=QUESTION)])
        return [e async for e in runner.run_async(user_id="u-1", session_id=session.id, new_message=message,
                                                  run_config=config)]

    return asyncio.run(go())


def test_a_run_with_a_tool_call_is_one_linked_graph(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    plugin = LedgerPlugin(ledger)
    adk_events = run(plugin, function_call(a=6, b=7), ANSWER)
    assert adk_events[-1].content.parts[0].text == "42"

    events = spool_events(ledger, spool_dir)
    assert kinds(events) == [
        ("chain:calc", "start"), ("agent:run", "start"),
        ("llm:call", "start"), ("llm:call", "end"), ("tool:multiply", "start"), ("tool:multiply", "end"),
        ("llm:call", "start"), ("llm:call", "end"),
        ("agent:run", "end"), ("chain:calc", "end"),
    ]
    assert plugin.errors == 0
    by_id = assert_linked_graph(events)
    assert_ends_complete_starts(events)
    body = {k: e["body"] for e, k in zip(events, kinds(events))}
    (called,) = [c for e in adk_events for c in e.get_function_calls()]
    (answered,) = [r for e in adk_events for r in e.get_function_responses()]
    tool_start, tool_end = body["tool:multiply", "start"], body["tool:multiply", "end"]
    assert (tool_start["arguments"], tool_start["call_id"]) == (called.args, called.id)
    assert answered.response == {"result": tool_end["output"]} and tool_end["output"] == 42   # ADK wraps non-dicts
    invocation = body["chain:calc", "start"]
    assert invocation["invocation_id"] == adk_events[-1].invocation_id and invocation["user_id"] == "u-1"
    assert invocation["input"]["parts"] == [{"text": QUESTION}]
    assert body["agent:run", "start"]["name"] == "calculator"
    first_call = events[2]["body"]
    assert first_call["model"] == "canned-1" and first_call["tools"] == ["multiply"]
    assert first_call["messages"][0]["parts"][0]["text"] == QUESTION
    assert events[3]["body"]["token_usage"] == {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    assert body["llm:call", "end"]["output"]["parts"] == [{"text": "42"}]
    assert body["llm:call", "end"]["finish_reason"] == types.FinishReason.STOP.value == "STOP"
    # the tool call is caused by the model call that asked for it, inside the agent's run
    asked = by_id[events[4]["links"][0]["event_id"]]
    assert asked["event_id"] == events[2]["event_id"]
    assert by_id[asked["links"][0]["event_id"]]["action_type"] == "agent:run"


def test_a_tool_exception_propagates_unchanged_and_is_recorded(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    plugin = LedgerPlugin(ledger)
    with pytest.raises(ValueError) as raised:
        run(plugin, function_call(a=-6, b=7), ANSWER)
    assert raised.value is BOOM

    events = spool_events(ledger, spool_dir)
    assert kinds(events)[:6] == [("chain:calc", "start"), ("agent:run", "start"), ("llm:call", "start"),
                                 ("llm:call", "end"), ("tool:multiply", "start"), ("tool:multiply", "error")]
    assert events[5]["body"]["error"] == {"type": "ValueError", "message": "no negative numbers"}
    assert events[5]["body"]["call_id"] == events[4]["body"]["call_id"]
    assert_linked_graph(events)
    assert_ends_complete_starts(events)
    assert plugin.errors == 0


@pytest.mark.skipif(not hasattr(BasePlugin, "on_run_error_callback"), reason="google-adk 1.x has no run error hooks")
def test_with_adks_error_hooks_an_aborted_invocation_ends_every_run_in_error(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    with pytest.raises(ValueError):
        run(LedgerPlugin(ledger), function_call(a=-6, b=7), ANSWER)
    events = spool_events(ledger, spool_dir)
    assert kinds(events)[-3:] == [("tool:multiply", "error"), ("agent:run", "error"), ("chain:calc", "error")]
    assert {e["body"]["error"]["message"] for e in events[-3:]} == {"no negative numbers"}
    assert_ends_complete_starts(events)


def test_a_model_exception_propagates_unchanged_and_is_recorded(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    plugin = LedgerPlugin(ledger)
    down = ConnectionError("model unreachable")
    with pytest.raises(ConnectionError) as raised:
        run(plugin, down)
    assert raised.value is down

    events = spool_events(ledger, spool_dir)
    assert kinds(events)[:4] == [("chain:calc", "start"), ("agent:run", "start"), ("llm:call", "start"),
                                 ("llm:call", "error")]
    assert events[3]["body"]["error"] == {"type": "ConnectionError", "message": "model unreachable"}
    assert_linked_graph(events)
    assert_ends_complete_starts(events)


def test_a_model_response_with_an_error_code_ends_the_call_in_error(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    blocked = LlmResponse(error_code="SAFETY", error_message="response blocked")
    adk_events = run(LedgerPlugin(ledger), blocked)
    assert adk_events[-1].error_code == "SAFETY"     # ADK hands it on as an event, no exception

    events = spool_events(ledger, spool_dir)
    llm_end = next(e["body"] for e in events if e["action_type"] == "llm:call" and e["body"]["phase"] != "start")
    assert llm_end["phase"] == "error" and llm_end["error"] == {"type": "SAFETY", "message": "response blocked"}
    assert kinds(events)[-1] == ("chain:calc", "end")
    assert_linked_graph(events)


def test_a_streamed_answer_ends_the_model_call_once_with_the_complete_response(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    chunks = [LlmResponse(content=types.Content(role="model", parts=[types.Part(text=t)]), partial=True)
              for t in ("4", "2")]
    streamed = [*chunks, ANSWER]
    adk_events = run(LedgerPlugin(ledger), streamed, config=RunConfig(streaming_mode=StreamingMode.SSE))
    assert [e.partial for e in adk_events] == [True, True, None]    # ADK passed the chunks on

    events = spool_events(ledger, spool_dir)
    assert kinds(events) == [("chain:calc", "start"), ("agent:run", "start"), ("llm:call", "start"),
                             ("llm:call", "end"), ("agent:run", "end"), ("chain:calc", "end")]
    assert events[3]["body"]["output"]["parts"] == [{"text": "42"}]
    assert_ends_complete_starts(events)


@pytest.mark.parametrize("option", ["redact", "hash_only"])
def test_redaction_and_hash_only_apply_to_every_event(offline_ledger, option: str) -> None:
    ledger, spool_dir = offline_ledger
    plugin = LedgerPlugin(ledger, **({"redact": ["arguments", "output", "messages", "input"]} if option == "redact"
                                     else {"hash_only": True}), session="s-adk")
    run(plugin, function_call(a=6, b=7), ANSWER)
    events = spool_events(ledger, spool_dir)
    assert len(events) == 10 and all(e["session_id"] == "s-adk" for e in events)
    if option == "hash_only":
        assert all(e["payload"] is None and e["payload_hash"] for e in events)
        return
    for event in events:
        for field in ("arguments", "output", "messages", "input"):
            if field in event["body"]:
                assert event["body"][field] == "[REDACTED]"
    tool_start = next(e["body"] for e in events if e["action_type"] == "tool:multiply")
    assert tool_start["arguments"] == "[REDACTED]" and tool_start["name"] == "multiply"


@pytest.mark.parametrize("failure", ["closed", "record_raises"])
def test_an_adapter_failure_never_breaks_the_run(offline_ledger, monkeypatch: pytest.MonkeyPatch,
                                                 failure: str) -> None:
    ledger, _ = offline_ledger
    plugin = LedgerPlugin(ledger)
    break_ledger(ledger, failure, monkeypatch)
    adk_events = run(plugin, function_call(a=6, b=7), ANSWER)
    assert adk_events[-1].content.parts[0].text == "42"
    assert [r.response for e in adk_events for r in e.get_function_responses()] == [{"result": 42}]
    assert plugin.errors >= 8     # every start and, unlinked, every end but the model calls' was refused


def test_the_enclosing_ledger_session_applies(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    with ledger.session("support-call") as session:
        run(LedgerPlugin(ledger), function_call(a=6, b=7), ANSWER)
    events = spool_events(ledger, spool_dir)
    assert len(events) == 10 and {e["session_id"] for e in events} == {session.session_id}
