"""``@ledger.action``: what one call records, sync and async, and that the agent's own
exceptions pass through unchanged."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledgerstream.core.wire import codec
from ledgerstream.producers.ledger import Ledger
from ledgerstream.producers.redact import REDACTED
from ledgerstream.producers.spool import Spool

pytestmark = pytest.mark.unit


def offline(tmp_path: Path, agent_id: str = "agent-a", **options) -> Ledger:
    return Ledger(agent_id, spool_dir=tmp_path / "spool", **options)


def recorded(ledger: Ledger) -> list[dict]:
    ledger.close()
    spool = Spool(ledger._sender.spool.path)
    try:
        return [codec.decode(body, expect="ActionEvent")[1] for body in spool.records()]
    finally:
        spool.close()


def payload(rec: dict) -> dict:
    return json.loads(rec["payload"])


class QuotaError(Exception):
    pass


@dataclass
class Query:
    text: str
    limit: int


def test_sync_call_records_args_result_duration(tmp_path):
    led = offline(tmp_path)

    @led.action("tool:search", redact=["api_key"])
    def search(query: Query, api_key: str, *, fuzzy: bool = False, client=object()):
        """docstring kept"""
        return {"hits": [query.text], "n": query.limit}

    assert search.__name__ == "search" and search.__doc__ == "docstring kept"
    assert search(Query("kafka", 3), "sk-123") == {"hits": ["kafka"], "n": 3}
    (rec,) = recorded(led)
    body = payload(rec)
    assert rec["action_type"] == "tool:search"
    assert body["args"]["query"] == {"text": "kafka", "limit": 3}
    assert body["args"]["api_key"] == REDACTED and body["args"]["fuzzy"] is False
    assert body["args"]["client"].startswith("<object object")  # not JSON: its repr
    assert body["result"] == {"hits": ["kafka"], "n": 3}
    assert isinstance(body["duration_ms"], float) and body["duration_ms"] >= 0
    assert "sk-123" not in rec["payload"].decode()


def test_sync_exception_is_reraised_unchanged_and_recorded(tmp_path):
    led = offline(tmp_path)
    original = QuotaError("quota exceeded for key 7")

    @led.action("llm:chat")
    def chat(prompt):
        raise original

    with pytest.raises(QuotaError) as info:
        chat("hi")
    assert info.value is original
    (rec,) = recorded(led)
    assert payload(rec)["error"] == {"type": "QuotaError", "message": "quota exceeded for key 7"}
    assert "result" not in payload(rec)


def test_methods_skip_self(tmp_path):
    led = offline(tmp_path)

    class Tool:
        @led.action("tool:method")
        def run(self, x):
            return x + 1

    assert Tool().run(1) == 2
    (rec,) = recorded(led)
    assert payload(rec)["args"] == {"x": 1}


def test_async_call_and_reraise(tmp_path):
    led = offline(tmp_path)

    @led.action("tool:fetch")
    async def fetch(url):
        await asyncio.sleep(0.02)
        if url == "bad":
            raise TimeoutError("slow host")
        return 200

    async def main():
        assert await fetch("ok") == 200
        with pytest.raises(TimeoutError, match="slow host"):
            await fetch("bad")

    assert asyncio.iscoroutinefunction(fetch)
    asyncio.run(main())
    ok, bad = recorded(led)
    assert payload(ok)["result"] == 200 and payload(ok)["duration_ms"] >= 15
    assert payload(bad)["error"]["type"] == "TimeoutError"


def test_recording_failure_never_reaches_the_agent(tmp_path):
    led = offline(tmp_path, max_payload_bytes=200)

    @led.action("tool:big")
    def big():
        return "x" * 10_000

    assert big() == "x" * 10_000  # the result is far above max_payload_bytes
    (rec,) = recorded(led)
    assert "unrecordable" in payload(rec)


def test_nested_action_of_same_agent_keeps_session(tmp_path):
    led = offline(tmp_path)

    @led.action("tool:inner")
    def inner():
        return 1

    @led.action("agent:outer")
    def outer():
        return inner() + 1

    with led.session(session_id="fixed-session"):
        assert outer() == 2
    inner_rec, outer_rec = recorded(led)
    assert inner_rec["session_id"] == outer_rec["session_id"] == "fixed-session"
    assert inner_rec["links"] == [] and outer_rec["links"] == []  # same agent: no cross-agent link
    assert inner_rec["trace"]["parent_span_id"] == outer_rec["trace"]["span_id"]
    assert inner_rec["occurred_at"] >= outer_rec["occurred_at"]  # outer started first
