"""``ledgerstream.index.query``: each typed read returns what the ledger holds, and each runs
on an index (SQLite's EXPLAIN QUERY PLAN: no full scan, no sort of the matching rows)."""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable

import pytest

from ledgerstream.core import mldsa
from ledgerstream.core.verify import CheckerConfig
from ledgerstream.index import query
from ledgerstream.index.core import IndexCore
from ledgerstream.index.paths import IndexPaths
from support.ledger_builder import LedgerBuilder, enc, entry_bytes

pytestmark = pytest.mark.unit

KEY = mldsa.PrivateKey.from_seed(bytes(range(32)))
AGENTS = ("planner", "coder", "reviewer")
TYPES = ("tool:search", "llm:call", "data:delete:users")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> tuple[LedgerBuilder, sqlite3.Connection]:
    b = LedgerBuilder(KEY)
    items: list[tuple[str, int, bytes]] = []
    cp = 0
    for i in range(300):
        links = []
        if i % 10 == 9:
            target = b.entries[i - 4]["action"]
            links.append((target["agent_id"], target["event_id"]))
        e = b.entry(AGENTS[i % 3], links=links, session_id=f"s{i // 100}" if i % 2 else None,
                    action_type=TYPES[i % 3], payload={"i": i})
        items.append(("entries", i, entry_bytes(e)))
        if i + 1 in (100, 250):
            items.append(("checkpoints", cp, enc("Checkpoint", b.checkpoint())))
            cp += 1
    paths = IndexPaths.of(tmp_path_factory.mktemp("idx"))
    core = IndexCore(paths, CheckerConfig.from_keys([KEY.public_key()]), fsync=False)
    core.process(items)
    core.close()
    return b, query.open_index(paths=paths)


def plans(conn: sqlite3.Connection, call: Callable[[], Any]) -> tuple[Any, list[str]]:
    """Run ``call`` and return its result and the query plan lines of every SELECT it ran."""
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        result = call()
    finally:
        conn.set_trace_callback(None)
    lines = []
    for sql in statements:
        if sql.lstrip().upper().startswith("SELECT"):
            lines += [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    return result, lines


def assert_indexed(lines: list[str]) -> None:
    assert lines
    for line in lines:
        assert not (line.startswith("SCAN") and "INDEX" not in line), lines
        assert "TEMP B-TREE" not in line, lines


def test_lookups(index) -> None:
    b, conn = index
    e = b.entries[123]
    got, lines = plans(conn, lambda: query.entry_by_seq(conn, 123))
    assert_indexed(lines)
    assert (got.seq, got.event_id, got.entry_hash, got.topic_offset, got.agent_id, got.agent_seq, got.action_type,
            got.time, got.signed, got.checkpoint_size) == (123, e["action"]["event_id"], e["entry_hash"], 123,
                                                           e["action"]["agent_id"], e["agent_seq"],
                                                           e["action"]["action_type"], e["received_at"], True, 250)
    got, lines = plans(conn, lambda: query.entry_by_event_id(conn, e["action"]["event_id"]))
    assert_indexed(lines)
    assert got.seq == 123
    got, lines = plans(conn, lambda: query.entry_by_agent_seq(conn, e["action"]["agent_id"], e["agent_seq"]))
    assert_indexed(lines)
    assert got.seq == 123
    assert query.entry_by_seq(conn, 299) is None  # the tentative head: no checkpoint confirmed it yet
    assert query.entry_by_event_id(conn, "nope") is None
    assert query.indexed_size(conn) == 299 and query.tiles_size(conn) == 250


def test_lists_page_through_by_seq(index) -> None:
    b, conn = index
    want = [e["seq"] for e in b.entries[:299] if e["action"]["agent_id"] == "coder"]
    got, lines = plans(conn, lambda: query.entries_by_agent(conn, "coder", limit=40))
    assert_indexed(lines)
    page2 = query.entries_by_agent(conn, "coder", after_seq=got[-1].seq, limit=1000)
    assert [x.seq for x in got + page2] == want
    want = [e["seq"] for e in b.entries[:299] if e["action"]["session_id"] == "s1"]
    got, lines = plans(conn, lambda: query.entries_by_session(conn, "s1", after_seq=110, limit=10))
    assert_indexed(lines)
    assert [x.seq for x in got] == [s for s in want if s > 110][:10]


def test_filter_by_action_type_and_time(index) -> None:
    b, conn = index
    since, until = b.entries[50]["received_at"], b.entries[200]["received_at"]
    want = [e["seq"] for e in b.entries[:299] if e["action"]["action_type"] == "llm:call"
            and since <= e["received_at"] < until]
    got, lines = plans(conn, lambda: query.entries_by_filter(conn, "llm:call", since, until, limit=20))
    assert_indexed(lines)
    last = got[-1]
    rest = query.entries_by_filter(conn, "llm:call", last.time, until, limit=1000, after_seq=last.seq)
    assert [x.seq for x in got + rest] == want
    got, lines = plans(conn, lambda: query.entries_by_filter(conn, since=since, limit=5))
    assert_indexed(lines)
    assert [x.seq for x in got] == [50, 51, 52, 53, 54]


def test_links_both_ways_and_the_covering_checkpoint(index) -> None:
    b, conn = index
    out, lines = plans(conn, lambda: query.links_of(conn, 19, "out"))
    assert_indexed(lines)
    assert [(x.to_event_id, x.to_seq) for x in out] == [(b.entries[15]["action"]["event_id"], 15)]
    incoming, lines = plans(conn, lambda: query.links_of(conn, 15, "in"))
    assert_indexed(lines)
    assert [x.from_seq for x in incoming] == [19]
    assert [x.from_seq for x in query.links_of(conn, 19, "both")] == [19]
    with pytest.raises(ValueError):
        query.links_of(conn, 1, "sideways")  # type: ignore[arg-type]
    cp, lines = plans(conn, lambda: query.covering_checkpoint(conn, 100))
    assert_indexed(lines)
    assert (cp.tree_size, cp.status, cp.root_hash) == (250, "verified", b.checkpoints[1]["root_hash"])
    assert query.covering_checkpoint(conn, 99).tree_size == 100
    assert query.covering_checkpoint(conn, 250) is None
    assert query.latest_checkpoint(conn).tree_size == 250
    assert query.checkpoint_at(conn, 100).record()["body"] == b.checkpoints[0]["body"]
    assert query.foreign_records(conn) == []


def test_open_index_without_an_index(tmp_path: Path) -> None:
    from ledgerstream.core.errors import ConfigError

    with pytest.raises(ConfigError, match="index run"):
        query.open_index(tmp_path)


def test_replay_drivers_seq_range_action_types_and_entry_findings(index) -> None:
    b, conn = index
    got, lines = plans(conn, lambda: query.entries_in_range(conn, 40, 60, limit=15))
    assert_indexed(lines)
    assert [x.seq for x in got] == list(range(40, 55))
    types, lines = plans(conn, lambda: query.action_types(conn))
    assert_indexed(lines)
    assert types == sorted(TYPES) and len(lines) == len(TYPES) + 1  # one seek per type, then one past the last
    first, lines = plans(conn, lambda: query.first_anchored_checkpoint(conn, 10, ("verified", "unchecked")))
    assert_indexed(lines)
    assert first is None  # no checkpoint here has an RFC 3161 anchor
    assert query.entry_findings(conn, 5) == [] and query.finding_counts(conn) == {}


def test_agent_summaries_and_the_call_graph_match_the_entries(index) -> None:
    """The follower's ``agents`` and ``agent_calls`` rows against a fold of the builder's
    own entries (the oracle), and each summary read is a bounded index read."""
    b, conn = index
    size = query.indexed_size(conn)
    assert size >= 299
    expected: dict[str, tuple] = {}
    calls: dict[tuple[str, str], int] = {}
    recent = []
    for e in b.entries[:size]:
        a = e["action"]
        first = expected.get(a["agent_id"])
        count, first_seq, first_time = (first[1] + 1, first[2], first[4]) if first else (1, e["seq"], e["received_at"])
        expected[a["agent_id"]] = (a["agent_id"], count, first_seq, e["seq"], first_time, e["received_at"],
                                   a["occurred_at"], a["action_type"], e["entry_hash"])
        for link in a["links"]:
            caller_seq = next(x["seq"] for x in b.entries if x["action"]["event_id"] == link["event_id"])
            calls[(link["agent_id"], a["agent_id"])] = calls.get((link["agent_id"], a["agent_id"]), 0) + 1
            recent.append((caller_seq, link["agent_id"], e["seq"], a["agent_id"]))
    got = query.agents(conn)  # a scan of the agents table: one row per agent
    assert [tuple(vars(x).values()) for x in got] == [expected[k] for k in sorted(expected)]
    assert query.agent_calls(conn) == calls and len(calls) == 3
    got, lines = plans(conn, lambda: query.recent_calls(conn, 5))
    assert_indexed(lines)
    assert got == recent[-5:]
    since = b.entries[200]["received_at"]
    got, lines = plans(conn, lambda: query.entries_since(conn, since))
    assert_indexed(lines)
    assert got == size - 200
    got, lines = plans(conn, lambda: query.recent_checkpoints(conn, 1))
    assert lines == ["SCAN checkpoints"]  # backwards along the rowid (topic_offset), stopping at the limit
    assert [c.tree_size for c in got] == [250]
    assert query.recent_foreign(conn, "entries", 5) == []
