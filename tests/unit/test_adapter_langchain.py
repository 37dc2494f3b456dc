"""LangChain adapter against real langchain-core: a prompt | fake chat model | agent step
chain whose model asks for a tool call, recorded in Kafka, offline and while failing."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core", reason="needs the adapters-langchain extra")

from langchain_core.agents import AgentAction, AgentFinish  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_core.runnables import Runnable, RunnableLambda  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from test_adapter_base import (break_ledger, assert_ends_complete_starts, assert_linked_graph, kafka_events,  # noqa: E402
                               kinds, offline_ledger, spool_events)  # noqa: F401

import ledgerstream  # noqa: E402
from ledgerstream.producers.adapters.langchain import LedgerCallbackHandler  # noqa: E402


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@tool
def explode(a: int, b: int) -> int:
    """Always fails."""
    raise ValueError("the tool broke")


def make_chain(tool_name: str = "multiply") -> Runnable:
    """prompt -> model asking for one tool call -> an agent step that runs the tool."""
    call = AIMessage(content="", tool_calls=[{"name": tool_name, "args": {"a": 6, "b": 7}, "id": "call_1"}],
                     usage_metadata={"input_tokens": 12, "output_tokens": 3, "total_tokens": 15})
    model = GenericFakeChatModel(messages=iter([call]))
    tools = {"multiply": multiply, "explode": explode}

    def agent_step(message: AIMessage, run_manager: Any) -> dict[str, Any]:
        results = []
        for tc in message.tool_calls:
            run_manager.on_agent_action(AgentAction(tool=tc["name"], tool_input=tc["args"], log="calling"))
            results.append(tools[tc["name"]].invoke(tc["args"]))
        answer = {"output": f"{results[0]}"}
        run_manager.on_agent_finish(AgentFinish(return_values=answer, log="done"))
        return answer

    prompt = ChatPromptTemplate.from_messages([("user", "{question}")])
    return prompt | model | RunnableLambda(agent_step, name="agent_step")


EXPECTED = [
    ("chain:RunnableSequence", "start"),
    ("chain:ChatPromptTemplate", "start"), ("chain:ChatPromptTemplate", "end"),
    ("llm:genericfakechatmodel", "start"), ("llm:genericfakechatmodel", "end"),
    ("chain:agent_step", "start"),
    ("agent:step", "event"),
    ("tool:multiply", "start"), ("tool:multiply", "end"),
    ("agent:finish", "event"),
    ("chain:agent_step", "end"),
    ("chain:RunnableSequence", "end"),
]


@pytest.mark.integration
def test_a_chain_with_a_tool_call_is_one_linked_graph_in_kafka(bootstrap: str, topics, tmp_path: Path,
                                                              ls_home: Path) -> None:
    ledger = ledgerstream.connect(agent_id="lc-agent", bootstrap=bootstrap, topics=topics,
                                  spool_dir=tmp_path / "spool", adapter="langchain")
    handler = LedgerCallbackHandler(ledger)
    try:
        assert make_chain().invoke({"question": "6*7?"}, config={"callbacks": [handler]}) == {"output": "42"}
        events = kafka_events(ledger, bootstrap, topics)
    finally:
        ledger.close()

    assert kinds(events) == EXPECTED
    assert handler.errors == 0
    by_id = assert_linked_graph(events)
    assert_ends_complete_starts(events)
    body = {(t, p): e["body"] for e, (t, p) in zip(events, kinds(events))}
    assert body["chain:RunnableSequence", "start"]["input"] == {"question": "6*7?"}
    llm_start, llm_end = body["llm:genericfakechatmodel", "start"], body["llm:genericfakechatmodel", "end"]
    assert llm_start["provider"] == "genericfakechatmodel"
    assert llm_start["messages"] == [[{"role": "human", "content": "6*7?"}]]
    assert llm_end["token_usage"] == {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15}
    assert llm_end["output"][0]["tool_calls"][0]["name"] == "multiply"
    assert body["tool:multiply", "start"]["input"] == {"a": 6, "b": 7}
    assert body["tool:multiply", "start"]["input_bytes"] == len('{"a":6,"b":7}')
    assert body["tool:multiply", "end"]["output"] == 42
    assert body["agent:step", "event"]["tool_input"] == {"a": 6, "b": 7}
    # the tool call was caused by the agent step's run, which the model's output fed
    tool_start = events[EXPECTED.index(("tool:multiply", "start"))]
    step_run = by_id[tool_start["links"][0]["event_id"]]
    assert step_run["action_type"] == "chain:agent_step"
    assert all(e["producer"]["adapter"] == "langchain" for e in events)


@pytest.mark.unit
def test_the_frameworks_exception_propagates_unchanged_and_is_recorded(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    handler = LedgerCallbackHandler(ledger)
    with pytest.raises(ValueError) as raised:
        make_chain("explode").invoke({"question": "?"}, config={"callbacks": [handler]})
    assert str(raised.value) == "the tool broke"
    assert type(raised.value) is ValueError

    events = spool_events(ledger, spool_dir)
    assert kinds(events)[-4:] == [("tool:explode", "start"), ("tool:explode", "error"),
                                  ("chain:agent_step", "error"), ("chain:RunnableSequence", "error")]
    assert events[-1]["body"]["error"] == {"type": "ValueError", "message": "the tool broke"}
    assert_linked_graph(events)
    assert_ends_complete_starts(events)
    assert handler.errors == 0


@pytest.mark.unit
def test_async_runs_record_the_same_graph(offline_ledger) -> None:
    ledger, spool_dir = offline_ledger
    handler = LedgerCallbackHandler(ledger)
    result = asyncio.run(make_chain().ainvoke({"question": "6*7?"}, config={"callbacks": [handler]}))
    assert result == {"output": "42"}
    events = spool_events(ledger, spool_dir)
    assert kinds(events) == EXPECTED
    assert_linked_graph(events)


@pytest.mark.unit
@pytest.mark.parametrize("failure", ["closed", "record_raises"])
def test_an_adapter_failure_never_breaks_the_chain(offline_ledger, monkeypatch: pytest.MonkeyPatch,
                                                   failure: str) -> None:
    ledger, _ = offline_ledger
    handler = LedgerCallbackHandler(ledger)
    break_ledger(ledger, failure, monkeypatch)
    assert make_chain().invoke({"question": "6*7?"}, config={"callbacks": [handler]}) == {"output": "42"}
    starts_and_decisions = [k for k in EXPECTED if k[1] in ("start", "event")]
    assert handler.errors == len(starts_and_decisions)  # ends of unrecorded starts are skipped
    with pytest.raises(ValueError, match="the tool broke"):
        make_chain("explode").invoke({"question": "?"}, config={"callbacks": [handler]})
