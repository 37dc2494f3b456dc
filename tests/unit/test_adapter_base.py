"""The adapters' shared core (no framework needed), and helpers the framework tests import.

The helpers read back what a ledger recorded, from Kafka or from its offline spool, and
check the shape every adapter promises: starts before ends, every link pointing at an
event recorded earlier, and every event reachable from the run's root.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterator

import pytest

from ledgerstream.core.wire import codec
from ledgerstream.core.config import Topics
from ledgerstream.producers.adapters import base
from ledgerstream.producers.adapters.base import LedgerAdapter, action_type, clip, put, token_usage
from ledgerstream.producers.ledger import Ledger
from ledgerstream.producers.spool import open_for_agent


# --- helpers for every adapter test ---------------------------------------------------------

def decode_event(raw: bytes) -> dict[str, Any]:
    _, event = codec.decode(raw, expect="ActionEvent")
    event["body"] = None if event["payload"] is None else json.loads(event["payload"])
    return event


def kafka_events(ledger: Ledger, bootstrap: str, topics: Topics) -> list[dict[str, Any]]:
    """Every ActionEvent of ``ledger``'s agent on the actions topic, in order."""
    from ledgerstream.producers.topic_reader import read_all

    assert ledger.flush(30) == 0, "ledger did not deliver everything to Kafka"
    events = [decode_event(m.value()) for m in read_all(bootstrap, topics.actions)]
    return [e for e in events if e["agent_id"] == ledger.agent_id]


def spool_events(ledger: Ledger, spool_dir: Path) -> list[dict[str, Any]]:
    """Close an offline ledger and read back everything it journaled, in order."""
    ledger.close()
    spool = open_for_agent(spool_dir, ledger.agent_id)
    try:
        return [decode_event(raw) for raw in spool.records()]
    finally:
        spool.close()


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["action_type"], e["body"]["phase"]) for e in events]


def assert_linked_graph(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each link names an event recorded before it; every event leads back to the first one
    (the root run's start). Returns the events by id."""
    by_id: dict[str, dict[str, Any]] = {}
    for event in events:
        for link in event["links"]:
            assert link["event_id"] in by_id, f"{event['action_type']} links to an event not recorded before it"
            assert link["agent_id"] == event["agent_id"]
        by_id[event["event_id"]] = event
    root = events[0]
    assert root["links"] == [] and root["body"]["phase"] == "start"
    for event in events[1:]:
        node, hops = event, 0
        while node is not root:
            assert node["links"], f"{node['action_type']} ({node['body']['phase']}) is not linked to the run"
            node, hops = by_id[node["links"][0]["event_id"]], hops + 1
            assert hops <= len(events)
    return by_id


def assert_ends_complete_starts(events: list[dict[str, Any]]) -> None:
    """Every end/error event links ``completes`` to the start of the same run and type."""
    by_id = {e["event_id"]: e for e in events}
    for event in events:
        if event["body"]["phase"] in ("end", "error"):
            (link,) = event["links"]
            start = by_id[link["event_id"]]
            assert link["relation"] == "completes"
            assert (start["action_type"], start["body"]["phase"]) == (event["action_type"], "start")
            assert start["body"]["run_id"] == event["body"]["run_id"]
            assert event["body"]["duration_ms"] >= 0


def break_ledger(ledger: Ledger, failure: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``ledger`` fail the way an adapter must survive: closed, or ``record`` raising."""
    if failure == "closed":
        ledger.close()
        return

    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("ledger exploded")
    monkeypatch.setattr(ledger, "record", broken)


@pytest.fixture()
def offline_ledger(tmp_path: Path, ls_home: Path) -> Iterator[tuple[Ledger, Path]]:
    spool_dir = tmp_path / "spool"
    ledger = Ledger("adapter-test", spool_dir=spool_dir)
    yield ledger, spool_dir
    ledger.close()


# --- the shared core ------------------------------------------------------------------------

pytestmark = pytest.mark.unit


def test_action_type_makes_any_name_a_valid_segment() -> None:
    assert action_type("tool", "web_search") == "tool:web_search"
    assert action_type("chain", "My Chain: v2/β") == "chain:My_Chain_v2"
    assert action_type("llm", None) == "llm:unnamed"
    assert len(action_type("tool", "x" * 500)) == len("tool:") + 100


def test_clip_and_put_bound_payloads_but_keep_sizes() -> None:
    long = "a" * (base.MAX_TEXT + 10)
    assert clip({"s": long})["s"].endswith("...[10 more]")
    assert clip(list(range(base.MAX_ITEMS + 5)))[-1] == "...[5 more]"
    payload: dict[str, Any] = {}
    put(payload, "input", {"q": "héllo"})
    put(payload, "missing", None)
    put(payload, "step", 3)
    assert payload == {"input": {"q": "héllo"}, "input_bytes": len('{"q":"héllo"}'.encode()), "step": 3}


def test_token_usage_one_shape_for_every_framework() -> None:
    assert token_usage({"prompt_tokens": 3, "completion_tokens": 4}) == \
        {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
    assert token_usage({"input_tokens": 1, "output_tokens": 2, "total_tokens": 9}) == \
        {"input_tokens": 1, "output_tokens": 2, "total_tokens": 9}
    assert token_usage(None) is None and token_usage({"cost": 1.0}) is None


def test_runs_become_linked_start_and_end_events(offline_ledger: tuple[Ledger, Path]) -> None:
    ledger, spool_dir = offline_ledger
    adapter = LedgerAdapter(ledger)
    root = adapter.start_run("r1", "chain:root", {"name": "root"})
    adapter.start_run("r2", "tool:search", {"input": "q"}, parent_id="r1")
    adapter.record_event("agent:step", {"tool": "search"}, parent_id="r2")
    adapter.end_run("r2", {"output": "hit"})
    assert adapter.end_run("r2", {"output": "again"}) is None      # one outcome per run
    adapter.end_run("r1", error=ValueError("bad"))
    assert adapter.end_run("nope") is None                          # unknown run, no fallback
    adapter.end_run("lost", fallback_type="tool:lost")              # unknown run, recorded unlinked

    events = spool_events(ledger, spool_dir)
    assert kinds(events) == [("chain:root", "start"), ("tool:search", "start"), ("agent:step", "event"),
                             ("tool:search", "end"), ("chain:root", "error"), ("tool:lost", "end")]
    assert events[0]["event_id"] == root
    assert_linked_graph(events[:-1])
    assert_ends_complete_starts(events[:-1])
    assert events[1]["links"][0]["relation"] == "caused_by"
    assert events[4]["body"]["error"] == {"type": "ValueError", "message": "bad"}
    assert events[5]["links"] == [] and "duration_ms" not in events[5]["body"]
    assert all(e["body"]["framework"] == "generic" for e in events)


def test_redaction_and_hash_only_pass_through(offline_ledger: tuple[Ledger, Path]) -> None:
    ledger, spool_dir = offline_ledger
    redacting = LedgerAdapter(ledger, redact=["input"], session="s-1")
    payload: dict[str, Any] = {}
    put(payload, "input", {"password": "hunter2"})
    redacting.start_run("a", "tool:login", payload)
    LedgerAdapter(ledger, hash_only=True).start_run("b", "tool:login", {"secret": 1})
    redacted, hashed = spool_events(ledger, spool_dir)
    assert redacted["body"]["input"] == "[REDACTED]" and redacted["body"]["input_bytes"] > 0
    assert redacted["session_id"] == "s-1"
    assert hashed["payload"] is None and len(hashed["payload_hash"]) == 32


def test_a_payload_the_ledger_refuses_is_replaced_but_the_event_and_links_stay(tmp_path: Path,
                                                                               ls_home: Path) -> None:
    ledger = Ledger("adapter-test", spool_dir=tmp_path / "spool", max_payload_bytes=400)
    adapter = LedgerAdapter(ledger)
    adapter.start_run("r1", "chain:root", {})
    adapter.start_run("r2", "tool:big", {"input": "x" * 1000}, parent_id="r1")
    root, big = spool_events(ledger, tmp_path / "spool")
    assert "more than max_payload_bytes" in big["body"]["unrecordable"]
    assert big["body"]["run_id"] == "r2" and big["links"][0]["event_id"] == root["event_id"]
    assert adapter.errors == 0


def test_a_failing_ledger_never_raises_and_is_counted_and_logged_once(
        offline_ledger: tuple[Ledger, Path], caplog: pytest.LogCaptureFixture) -> None:
    ledger, _ = offline_ledger
    adapter = LedgerAdapter(ledger)

    class Hook(LedgerAdapter):
        @base.shielded
        def on_start(self) -> str | None:
            return self.start_run("r", "tool:x", {})

    hook = Hook(ledger)
    ledger.close()
    with caplog.at_level(logging.DEBUG, logger="ledgerstream.adapters"):
        assert hook.on_start() is None
        assert hook.on_start() is None
    assert hook.errors == 2 and adapter.errors == 0
    assert ledger.stats()["errors"] == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "could not record" in warnings[0].getMessage()


def test_the_adapters_package_imports_no_framework() -> None:
    import subprocess
    import sys

    code = ("import sys, ledgerstream.producers.adapters as a; a.LedgerAdapter; "
            "print(sorted(m for m in ('langchain_core', 'crewai', 'litellm', 'haystack', 'agents', 'llama_index', "
            "'pydantic_ai', 'smolagents', 'autogen_agentchat', 'google.adk') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
