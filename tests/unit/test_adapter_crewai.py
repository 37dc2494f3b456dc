"""CrewAI adapter against real crewai: a Crew with one Agent and Task whose LLM (a canned
BaseLLM that emits the same events as CrewAI's own providers) calls a tool, offline."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

# CrewAI phones home (telemetry, trace upload, version check) unless told not to.
for _var in ("CREWAI_DISABLE_TELEMETRY", "CREWAI_DISABLE_TRACKING", "CREWAI_DISABLE_VERSION_CHECK", "CREWAI_TESTING"):
    os.environ.setdefault(_var, "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

pytest.importorskip("crewai", reason="needs the adapters-crewai extra")

from crewai import Agent, Crew, Task  # noqa: E402
from crewai.events.types.llm_events import LLMCallType  # noqa: E402
from crewai.llms.base_llm import BaseLLM, llm_call_context  # noqa: E402
from crewai.tools import tool  # noqa: E402
from test_adapter_base import (break_ledger, assert_ends_complete_starts, assert_linked_graph, kafka_events,  # noqa: E402
                               kinds, offline_ledger, spool_events)  # noqa: F401

import ledgerstream  # noqa: E402
from ledgerstream.producers.adapters.crewai import LedgerEventListener  # noqa: E402


class CannedLLM(BaseLLM):
    """Replies from a list, reporting each call on the event bus like CrewAI's providers."""

    answers: list[Any]

    def call(self, messages: Any, tools: Any = None, callbacks: Any = None, available_functions: Any = None,
             from_task: Any = None, from_agent: Any = None, response_model: Any = None) -> str:
        with llm_call_context():
            self._emit_call_started_event(messages=messages, tools=tools, from_task=from_task, from_agent=from_agent)
            answer = self.answers.pop(0)
            if isinstance(answer, BaseException):
                self._emit_call_failed_event(error=str(answer), from_task=from_task, from_agent=from_agent)
                raise answer
            self._emit_call_completed_event(response=answer, call_type=LLMCallType.LLM_CALL, from_task=from_task,
                                            from_agent=from_agent, messages=messages,
                                            usage={"prompt_tokens": 10, "completion_tokens": 5})
            return answer

    def supports_function_calling(self) -> bool:
        return False   # the ReAct text protocol: "Action: ... Action Input: ..."


@tool("multiply")
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def make_crew(*answers: Any) -> Crew:
    llm = CannedLLM(model="canned-1", provider="canned", answers=list(answers))
    agent = Agent(role="calculator", goal="multiply numbers", backstory="good at maths", llm=llm,
                  tools=[multiply], max_retry_limit=0, verbose=False)
    task = Task(description="What is 6 times 7?", expected_output="a number", agent=agent)
    return Crew(agents=[agent], tasks=[task], verbose=False)


TOOL_CALL = 'Thought: I should multiply\nAction: multiply\nAction Input: {"a": 6, "b": 7}'
FINAL = "Thought: I now know the final answer\nFinal Answer: 42"


@pytest.fixture()
def listeners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[LedgerEventListener]]:
    """Listeners created by a test, unsubscribed from CrewAI's global bus afterwards; CrewAI's
    kickoff database goes to the test's folder, not the user's."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    made: list[LedgerEventListener] = []
    yield made
    for listener in made:
        listener.flush()
        listener.close()


def listen(listeners: list[LedgerEventListener], ledger: Any) -> LedgerEventListener:
    listener = LedgerEventListener(ledger)
    listeners.append(listener)
    return listener


def recorded_types(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The run's events minus CrewAI's internal executor flow (present in some versions)."""
    return [k for k in kinds(events) if not k[0].startswith("chain:flow")]


@pytest.mark.integration
def test_a_crew_run_with_a_tool_call_is_one_linked_graph_in_kafka(bootstrap: str, topics, tmp_path: Path,
                                                                 ls_home: Path, listeners) -> None:
    ledger = ledgerstream.connect(agent_id="crew-agent", bootstrap=bootstrap, topics=topics,
                                  spool_dir=tmp_path / "spool", adapter="crewai")
    listener = listen(listeners, ledger)
    try:
        assert make_crew(TOOL_CALL, FINAL).kickoff().raw == "42"
        assert listener.flush()
        events = kafka_events(ledger, bootstrap, topics)
    finally:
        ledger.close()

    assert recorded_types(events) == [
        ("chain:crew", "start"), ("chain:task", "start"), ("agent:run", "start"),
        ("llm:canned", "start"), ("llm:canned", "end"),
        ("tool:multiply", "start"), ("tool:multiply", "end"),
        ("llm:canned", "start"), ("llm:canned", "end"),
        ("agent:run", "end"), ("chain:task", "end"), ("chain:crew", "end"),
    ]
    assert listener.errors == 0
    by_id = assert_linked_graph(events)
    assert_ends_complete_starts(events)
    body = {k: e["body"] for e, k in zip(events, kinds(events))}
    assert body["tool:multiply", "start"]["tool_args"] == '{"a": 6, "b": 7}'   # as the LLM wrote it
    assert body["tool:multiply", "end"]["output"] == "42"
    assert body["llm:canned", "end"]["token_usage"] == {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    assert body["llm:canned", "start"]["model"] == "canned-1" and body["llm:canned", "start"]["messages_bytes"] > 0
    assert body["chain:task", "start"]["task_name"] == "What is 6 times 7?"
    assert body["agent:run", "start"]["agent_role"] == "calculator"
    assert body["chain:crew", "end"]["output"]["raw"] == "42"
    # the tool call links (through the executor's scopes) up to the agent run
    node = by_id[events[kinds(events).index(("tool:multiply", "start"))]["links"][0]["event_id"]]
    while node["action_type"] != "agent:run":
        node = by_id[node["links"][0]["event_id"]]
    assert node["body"]["phase"] == "start"


@pytest.mark.unit
def test_the_frameworks_exception_propagates_unchanged_and_is_recorded(offline_ledger, listeners) -> None:
    ledger, spool_dir = offline_ledger
    listener = listen(listeners, ledger)
    boom = RuntimeError("llm down")
    with pytest.raises(RuntimeError) as raised:
        make_crew(boom).kickoff()
    assert raised.value is boom
    assert listener.flush()

    events = spool_events(ledger, spool_dir)
    types = recorded_types(events)
    assert types[0] == ("chain:crew", "start") and types[-1] == ("chain:crew", "error")
    assert ("llm:canned", "error") in types and ("chain:task", "error") in types
    assert events[-1]["body"]["error"]["message"] == "llm down"
    assert_linked_graph(events)
    assert_ends_complete_starts(events)
    assert listener.errors == 0


@pytest.mark.unit
@pytest.mark.parametrize("failure", ["closed", "record_raises"])
def test_an_adapter_failure_never_breaks_the_crew(offline_ledger, listeners, monkeypatch: pytest.MonkeyPatch,
                                                  failure: str) -> None:
    ledger, _ = offline_ledger
    listener = listen(listeners, ledger)
    break_ledger(ledger, failure, monkeypatch)
    assert make_crew(TOOL_CALL, FINAL).kickoff().raw == "42"
    assert listener.flush()
    assert listener.errors >= 12   # every start and every end was refused
