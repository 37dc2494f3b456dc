"""Producer library, no Kafka: ids, payload rules, redaction, hash-only, links, tokens.

Events are recorded by offline ledgers (no bootstrap) and read back from the spool, so
every assertion is about the exact ActionEvent bytes that would leave the process.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledgerstream.core import records
from ledgerstream.core.wire import codec
from ledgerstream.producers import context
from ledgerstream.producers.ledger import Ledger
from ledgerstream.producers.redact import REDACTED, Redactor
from ledgerstream.producers.spool import Spool, dir_name
from ledgerstream.producers.uuid7 import uuid7, uuid7_unix_ms

pytestmark = pytest.mark.unit

UUID7_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def offline(tmp_path: Path, agent_id: str = "agent-a", **options) -> Ledger:
    return Ledger(agent_id, spool_dir=tmp_path / "spool", **options)


def recorded(ledger: Ledger) -> list[dict]:
    """Close the ledger and decode every record its spool holds, in order."""
    ledger.close()
    spool = Spool(ledger._sender.spool.path)
    try:
        return [codec.decode(body, expect="ActionEvent")[1] for body in spool.records()]
    finally:
        spool.close()


# --- UUIDv7 -------------------------------------------------------------------------------------

def test_uuid7_format_order_and_time():
    before = time.time_ns() // 1_000_000
    ids = [uuid7() for _ in range(10_000)]
    after = time.time_ns() // 1_000_000
    assert all(UUID7_RE.match(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids), "ids minted in one process must be strictly increasing"
    assert before <= uuid7_unix_ms(ids[0]) <= uuid7_unix_ms(ids[-1]) <= after + 1


def test_uuid7_unix_ms_rejects_other_uuids():
    with pytest.raises(ValueError):
        uuid7_unix_ms("123e4567-e89b-12d3-a456-426614174000")  # a UUIDv1


# --- emit: input errors raise at once, transport never ------------------------------------------

@pytest.mark.parametrize("bad", ["", "tool::search", "tool search", ":tool", "tool:", None, 42, "x" * 300])
def test_malformed_action_type_is_value_error(tmp_path, bad):
    led = offline(tmp_path)
    with pytest.raises(ValueError):
        led.emit(bad, {})
    assert recorded(led) == []


@pytest.mark.parametrize("payload", [{"a": object()}, {"a": {1, 2}}, {"a": b"bytes"}, {1: "int key"},
                                     {"a": float("nan")}, {"a": 2**60}, ["not", "a", "dict"], "text"])
def test_unserialisable_payload_is_type_error(tmp_path, payload):
    led = offline(tmp_path)
    with pytest.raises(TypeError):
        led.emit("tool:search", payload)
    assert recorded(led) == []


def test_emit_record_is_complete_and_committed(tmp_path):
    led = offline(tmp_path, adapter="unit-test")
    event_id = led.emit("data:delete:users", {"b": [1, 2], "a": "é"}, session="s-1")
    (rec,) = recorded(led)
    assert UUID7_RE.match(event_id) and rec["event_id"] == event_id
    assert rec["agent_id"] == "agent-a" and rec["session_id"] == "s-1"
    assert rec["action_type"] == "data:delete:users"
    assert rec["payload"] == '{"a":"é","b":[1,2]}'.encode()  # RFC 8785: sorted keys, UTF-8
    assert len(rec["payload_salt"]) == records.SALT_LEN
    assert rec["payload_hash"] == records.payload_commitment(rec["payload_salt"], rec["payload"])
    assert abs(rec["occurred_at"] - time.time_ns() // 1000) < 60e6
    assert rec["producer"]["adapter"] == "unit-test" and rec["producer"]["pid"] > 0
    assert rec["offline"] is True  # no broker configured at all
    records.validate_action(rec)


def test_salts_differ_for_equal_payloads(tmp_path):
    led = offline(tmp_path)
    led.emit("tool:x", {"same": 1})
    led.emit("tool:x", {"same": 1})
    a, b = recorded(led)
    assert a["payload_salt"] != b["payload_salt"] and a["payload_hash"] != b["payload_hash"]


def test_bad_producer_settings_fail_connect_and_free_the_spool(tmp_path):
    from ledgerstream.core.errors import ConfigError

    with pytest.raises(ConfigError):
        Ledger("agent-a", bootstrap="127.0.0.1:9", spool_dir=tmp_path, producer_config={"acks": "bogus"})
    led = Ledger("agent-a", spool_dir=tmp_path)
    assert led.stats()["spool"] == str(tmp_path / "agent-a"), "the spool was not left locked"
    led.close()


def test_emit_after_close_is_an_error(tmp_path):
    led = offline(tmp_path)
    led.close()
    with pytest.raises(RuntimeError):
        led.emit("tool:x", {})


# --- hash-only and redaction -------------------------------------------------------------------

def test_hash_only_sends_no_payload_bytes(tmp_path):
    led = offline(tmp_path, hash_only=True)
    secret = "patient 4711 has condition X"
    led.emit("tool:lookup", {"note": secret})
    led.emit("tool:lookup", {"note": secret}, hash_only=False)  # per-call override
    hashed, plain = recorded(led)
    assert hashed["payload"] is None and hashed["payload_salt"] is None
    assert len(hashed["payload_hash"]) == 32
    assert plain["payload"] is not None
    raw = (tmp_path / "spool" / "agent-a").glob("*.seg")
    assert sum(p.read_bytes().count(secret.encode()) for p in raw) == 1  # only the non-hash-only one


def test_redaction_per_connection_and_per_call(tmp_path):
    led = offline(tmp_path, redact=["api_key"])
    led.emit("tool:http", {"url": "u", "api_key": "k1", "nested": {"api_key": "k2", "keep": 1}},
             redact=["auth.token", "rows.ssn"])
    led.emit("tool:http", {"auth": {"token": "t", "user": "bob"},
                           "rows": [{"ssn": "1", "name": "a"}, {"ssn": "2", "name": "b"}]})
    first, second = recorded(led)
    import json
    assert json.loads(first["payload"]) == {"url": "u", "api_key": REDACTED,
                                            "nested": {"api_key": REDACTED, "keep": 1}}
    # per-call paths applied only to the first call
    assert json.loads(second["payload"])["auth"] == {"token": "t", "user": "bob"}


def test_redactor_paths():
    r = Redactor(["password", "args.user.token", "items.secret", "users.*.ssn"])
    value = {"password": "p", "args": {"user": {"token": "t", "id": 1}, "token": "other"},
             "items": [{"secret": 1, "x": 2}, {"y": {"secret": 3}}], "deep": [{"password": "q"}],
             "users": {"bob": {"ssn": "1", "age": 3}, "amy": {"ssn": "2"}}, "ssn": "top"}
    assert r.apply(value) == {"password": REDACTED, "args": {"user": {"token": REDACTED, "id": 1}, "token": "other"},
                              "items": [{"secret": REDACTED, "x": 2}, {"y": {"secret": 3}}],
                              "deep": [{"password": REDACTED}],
                              "users": {"bob": {"ssn": REDACTED, "age": 3}, "amy": {"ssn": REDACTED}}, "ssn": "top"}
    assert value["password"] == "p", "the input must not be modified"
    with pytest.raises(ValueError):
        Redactor(["a..b"])


# --- links across agents, sessions and tokens ---------------------------------------------------

def test_agent_calls_agent_links_to_latest_event(tmp_path):
    a = offline(tmp_path, "agent-a")
    b = offline(tmp_path, "agent-b")

    @b.action("tool:search")
    def b_search(q):
        b.emit("llm:chat", {"q": q})
        return ["hit"]

    @a.action("agent:call")
    def a_calls_b(q):
        return b_search(q)

    with a.session("job") as sess:
        first = a.emit("decision:start", {})
        a_calls_b("kafka")
        last = a.emit("decision:end", {})
    b.emit("tool:alone", {})  # outside any scope: no link
    recs_a, recs_b = recorded(a), recorded(b)
    start, call, end = recs_a
    assert start["event_id"] == first and end["event_id"] == last
    assert {r["session_id"] for r in recs_a} == {sess.session_id} and sess.session_id.startswith("job-")
    assert [r["action_type"] for r in recs_b] == ["llm:chat", "tool:search", "tool:alone"]
    chat, search, alone = recs_b
    link = [{"agent_id": "agent-a", "event_id": call["event_id"], "relation": "caused_by"}]
    assert chat["links"] == link and search["links"] == link, "B's events link to A's call in progress"
    assert alone["links"] == [] and alone["session_id"] is None
    assert start["links"] == [] and call["links"] == []
    # one trace across both agents, nested spans
    assert chat["trace"]["trace_id"] == call["trace"]["trace_id"] == search["trace"]["trace_id"]
    assert search["trace"]["parent_span_id"] == call["trace"]["span_id"]
    assert chat["trace"]["parent_span_id"] == search["trace"]["span_id"]


def test_async_agents_link_across_tasks(tmp_path):
    import asyncio

    a = offline(tmp_path, "agent-a")
    b = offline(tmp_path, "agent-b")

    @b.action("tool:fetch")
    async def fetch(n):
        await asyncio.sleep(0.01)
        return n * 2

    @a.action("agent:fanout")
    async def fanout():
        return await asyncio.gather(*(fetch(i) for i in range(3)))

    async def main():
        async with a.session("async-job"):
            return await fanout()

    assert asyncio.run(main()) == [0, 2, 4]
    (call,), fetches = recorded(a), recorded(b)
    assert len(fetches) == 3
    assert all(r["links"] == [{"agent_id": "agent-a", "event_id": call["event_id"], "relation": "caused_by"}]
               for r in fetches)


def test_link_token_round_trip_and_parent_session(tmp_path):
    a = offline(tmp_path, "agent-a")
    b = offline(tmp_path, "agent-b")
    with pytest.raises(RuntimeError):
        a.current_link()
    event = a.emit("agent:handoff", {})
    token = a.current_link()
    assert token.startswith(context.TOKEN_PREFIX) and event not in token  # opaque
    assert context.parse_token(token) == context.Link("agent-a", event)
    with b.session(parent=token):  # as another process would
        b.emit("tool:x", {})
        b.emit("tool:y", {})
    b.emit("tool:z", {}, links=[f"agent-c:{event}"])
    recorded(a)
    x, y, z = recorded(b)
    assert x["links"] == y["links"] == [{"agent_id": "agent-a", "event_id": event, "relation": "caused_by"}]
    assert z["links"] == [{"agent_id": "agent-c", "event_id": event, "relation": "caused_by"}]


@pytest.mark.parametrize("token", ["", "lsl1.", "lsl1.!!!", "lsl1.e30", "other.abc", "lsl1.eyJhIjoiIn0"])
def test_bad_tokens_are_rejected(token):
    with pytest.raises(ValueError):
        context.parse_token(token)


def test_spool_dir_names_are_safe():
    assert dir_name("planner") == "planner"
    for weird in ("../x", "a/b", ".hidden", "a@1", "ü" * 200):
        name = dir_name(weird)
        assert "/" not in name and not name.startswith(".") and "@" not in name and len(name) <= 120


# --- light import --------------------------------------------------------------------------------

def test_import_is_light():
    code = ("import sys, ledgerstream, ledgerstream.producers\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] in "
            "('faust', 'aiohttp', 'aiokafka', 'confluent_kafka', 'mode', 'yarl')]\n"
            "assert not heavy, heavy\n"
            "ledgerstream.connect; ledgerstream.PolicyDenied; ledgerstream.ApprovalTimeout\n"
            "from ledgerstream.producers import ledger, action, approvals, demo, sync\n"
            "web = [m for m in sys.modules if m.split('.')[0] in ('faust', 'aiohttp', 'aiokafka', 'mode', 'yarl')]\n"
            "assert not web, web\n"
            "assert issubclass(ledgerstream.ApprovalTimeout, ledgerstream.PolicyDenied)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_record_kafka_refuses_is_kept_and_reported(tmp_path, caplog):
    import logging

    led = Ledger("agent-big", bootstrap="127.0.0.1:9", spool_dir=tmp_path,
                 producer_config={"message.max.bytes": 1000})
    with caplog.at_level(logging.ERROR, logger="ledgerstream.producer"):
        big = led.emit("tool:x", {"blob": "x" * 5000})  # librdkafka refuses it: larger than 1000 bytes
        small = led.emit("tool:y", {})
        led.flush(1.0)
    assert any("cannot be produced" in r.getMessage() for r in caplog.records)
    assert led.close(timeout=1.0) == 2
    spool = Spool(tmp_path / "agent-big")
    assert [codec.decode(b)[1]["event_id"] for b in spool.records()] == [big, small], "kept, in order"
    spool.close()
