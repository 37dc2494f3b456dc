"""LiteLLM adapter against real litellm: mocked completions (sync and async, success and
failure) made inside another agent's session, so each call links to that agent's event."""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")   # no download of the price list

litellm = pytest.importorskip("litellm", reason="needs the adapters-litellm extra")

from test_adapter_base import break_ledger, kafka_events, kinds, offline_ledger, spool_events  # noqa: E402,F401

import ledgerstream  # noqa: E402
from ledgerstream.producers.adapters.litellm import LedgerLogger  # noqa: E402

MESSAGES = [{"role": "user", "content": "6*7?"}]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """LiteLLM reports sync successes from a worker thread, a moment after returning."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "LiteLLM never reported the call"
        time.sleep(0.02)


@pytest.fixture()
def install() -> Iterator[Callable[[Any], LedgerLogger]]:
    installed: list[LedgerLogger] = []

    def _install(ledger: Any) -> LedgerLogger:
        logger = LedgerLogger(ledger)
        litellm.callbacks.append(logger)
        installed.append(logger)
        return logger

    yield _install
    for logger in installed:   # LiteLLM copies callbacks into several lists on first use
        litellm.logging_callback_manager.remove_callback_from_all_lists(logger)


def complete(answer: Any) -> Any:
    return litellm.completion(model="gpt-3.5-turbo", messages=MESSAGES, mock_response=answer)


async def acomplete(ledger: Any) -> Any:
    """An async call; the loop lives until LiteLLM's logging worker reported its outcome."""
    reply = await litellm.acompletion(model="gpt-3.5-turbo", messages=MESSAGES, mock_response="async 42")
    deadline = time.monotonic() + 10
    while ledger.stats()["emitted"] < 4:
        assert time.monotonic() < deadline, "LiteLLM never reported the async call"
        await asyncio.sleep(0.02)
    return reply


@pytest.mark.integration
def test_calls_in_another_agents_session_link_to_it_in_kafka(bootstrap: str, topics, tmp_path: Path,
                                                            ls_home: Path, install) -> None:
    options = dict(bootstrap=bootstrap, topics=topics, spool_dir=tmp_path / "spool")
    planner = ledgerstream.connect(agent_id="planner", **options)
    gateway = ledgerstream.connect(agent_id="llm-gateway", adapter="litellm", **options)
    logger = install(gateway)
    try:
        with planner.session("plan"):
            root = planner.emit("task:plan", {"goal": "multiply"})
            assert complete("42").choices[0].message.content == "42"
            wait_for(lambda: gateway.stats()["emitted"] == 2)
            assert asyncio.run(acomplete(gateway)).choices[0].message.content == "async 42"
            with pytest.raises(litellm.InternalServerError) as raised:
                complete(Exception("provider down"))
        wait_for(lambda: gateway.stats()["emitted"] == 6)
        events = kafka_events(gateway, bootstrap, topics)
        planner.flush()
    finally:
        gateway.close()
        planner.close()

    assert kinds(events) == [("llm:openai", "start"), ("llm:openai", "end")] * 2 + \
        [("llm:openai", "start"), ("llm:openai", "error")]
    assert logger.errors == 0
    for start, end in zip(events[::2], events[1::2]):
        assert [(l["agent_id"], l["event_id"], l["relation"]) for l in start["links"]] == \
            [("planner", root, "caused_by")]                      # contextvars carried the session over
        assert (start["event_id"], "completes") in [(l["event_id"], l["relation"]) for l in end["links"]]
        assert start["body"]["run_id"] == end["body"]["run_id"]
        assert start["body"]["messages"] == MESSAGES and start["body"]["model"] == "gpt-3.5-turbo"
    ok = events[1]["body"]
    assert ok["output"][0]["content"] == "42" and ok["finish_reasons"] == ["stop"]
    assert set(ok["token_usage"]) == {"input_tokens", "output_tokens", "total_tokens"}
    assert events[3]["body"]["output"][0]["content"] == "async 42"
    error = events[5]["body"]["error"]
    assert error["type"] == type(raised.value).__qualname__ and error["message"] == str(raised.value)
    assert "provider down" in error["message"]


@pytest.mark.unit
@pytest.mark.parametrize("failure", ["closed", "record_raises"])
def test_an_adapter_failure_never_breaks_the_call(offline_ledger, install, monkeypatch: pytest.MonkeyPatch,
                                                 failure: str) -> None:
    ledger, _ = offline_ledger
    logger = install(ledger)
    break_ledger(ledger, failure, monkeypatch)
    assert complete("still 42").choices[0].message.content == "still 42"
    with pytest.raises(litellm.InternalServerError, match="provider down"):
        complete(Exception("provider down"))
    wait_for(lambda: logger.errors == 4)     # two starts, one success, one failure


@pytest.mark.unit
def test_an_outcome_without_a_seen_start_is_still_recorded(offline_ledger, install) -> None:
    ledger, spool_dir = offline_ledger
    logger = install(ledger)
    logger.log_failure_event({"litellm_call_id": "c-1", "custom_llm_provider": "anthropic", "model": "claude",
                              "exception": TimeoutError("slow")}, None, None, None)
    (event,) = spool_events(ledger, spool_dir)
    assert (event["action_type"], event["body"]["phase"], event["links"]) == ("llm:anthropic", "error", [])
    assert event["body"]["error"] == {"type": "TimeoutError", "message": "slow"}
