"""Step [8]'s rule and the call graph (core/verify/links.py) on the cases its mutation run
showed untested (docs/mutation.md). The rule is docs/spec.md section 9 step 7: resolved
links answer ``action.links`` one by one and name an *earlier* entry holding that agent's
event, with that entry's ``entry_hash``. The call graph's answers are worked out by hand
from the edges each test adds."""
from __future__ import annotations

from typing import Any

import pytest

from ledgerstream.core.verify import CallGraph, Edge, links_answer_problem, names_earlier_entry, resolved_link_problem

pytestmark = pytest.mark.unit

H1, H2 = b"\x11" * 32, b"\x22" * 32


def link(seq: int | None, entry_hash: bytes | None = H1, agent: str = "agent-b", event: str = "ev-1") -> dict[str, Any]:
    return {"agent_id": agent, "event_id": event, "status": "resolved", "seq": seq, "entry_hash": entry_hash}


# --- the rule for one resolved link ------------------------------------------------------------

def fresh(n: int) -> int:
    """The same number as another int object, as a decoded record's seq and the history's are."""
    return int(str(n))


@pytest.mark.parametrize("target_seq, seq", [(0, 1), (0, 5), (4, 5), (299, 300), (70_000, 70_001)])
def test_a_link_to_an_earlier_entry_names_an_earlier_entry(target_seq: int, seq: int) -> None:
    assert names_earlier_entry(seq, link(target_seq))
    assert resolved_link_problem(seq, link(target_seq), (target_seq, H1)) is None
    assert resolved_link_problem(fresh(seq), link(fresh(target_seq), bytes(H1)), (fresh(target_seq), bytes(H1))) is None


@pytest.mark.parametrize("target_seq, seq", [(5, 5), (6, 5), (0, 0), (-1, 5), (300, 300)])
def test_a_link_to_itself_a_later_or_a_negative_seq_names_no_earlier_entry(target_seq: int, seq: int) -> None:
    assert not names_earlier_entry(seq, link(target_seq))
    assert resolved_link_problem(seq, link(target_seq), (target_seq, H1)) is not None


def test_a_resolved_link_without_seq_or_hash_names_no_entry() -> None:
    assert not names_earlier_entry(5, link(None))
    assert not names_earlier_entry(5, link(2, None))
    assert resolved_link_problem(5, link(2, None), (2, H1)) is not None


def test_the_linked_event_must_be_in_the_named_entry() -> None:
    assert resolved_link_problem(5, link(2), None) is not None  # no entry holds the event
    assert resolved_link_problem(5, link(2), (3, H1)) is not None  # it is in entry 3, not 2
    assert resolved_link_problem(5, link(3), (2, H1)) is not None
    assert resolved_link_problem(5, link(2), (2, H1)) is None


@pytest.mark.parametrize("named, actual", [(H1, H2), (H2, H1), (b"\x00" * 32, H1), (H1, b"\xff" * 32)])
def test_the_link_must_carry_the_named_entry_hash(named: bytes, actual: bytes) -> None:
    assert resolved_link_problem(5, link(2, named), (2, actual)) is not None


def test_resolved_links_answer_the_action_links_one_by_one_in_order() -> None:
    def entry(asked: list[tuple[str, str]], answered: list[tuple[str, str]]) -> dict[str, Any]:
        return {"action": {"links": [{"agent_id": a, "event_id": e, "relation": "caused_by"} for a, e in asked]},
                "resolved_links": [link(0, agent=a, event=e) for a, e in answered]}

    ab, cd = ("a", "b"), ("c", "d")
    assert links_answer_problem(entry([], [])) is None
    assert links_answer_problem(entry([ab, cd], [ab, cd])) is None
    assert links_answer_problem(entry([ab, cd], [cd, ab])) is not None  # out of order
    assert links_answer_problem(entry([ab, cd], [ab])) is not None
    assert links_answer_problem(entry([ab], [ab, cd])) is not None
    assert links_answer_problem(entry([ab], [("a", "x")])) is not None
    assert links_answer_problem(entry([ab], [("x", "b")])) is not None
    assert links_answer_problem({"action": {"links": None}, "resolved_links": None}) is None


# --- the call graph ------------------------------------------------------------------------------

EDGES = [Edge(3, "b", 1, "a"), Edge(4, "c", 1, "a"), Edge(5, "c", 3, "b"), Edge(6, "b", 2, "a", "replied_to"),
         Edge(7, "a", 6, "b")]


def graph(max_edges: int | None = None) -> CallGraph:
    g = CallGraph(max_edges)
    for e in EDGES:
        g.add(e)
    return g


def test_the_graph_counts_links_by_agent_pair() -> None:
    g = graph()
    assert g.total_edges == 5
    assert g.agent_pairs() == {"a": {"b": 1}, "b": {"a": 2}, "c": {"a": 1, "b": 1}}
    assert list(g.agent_pairs()) == ["a", "b", "c"]  # sorted by calling agent
    assert list(g.agent_pairs()["c"]) == ["a", "b"]


def test_the_edges_of_an_agent_are_those_it_calls_or_is_called_by() -> None:
    g = graph()
    assert g.edges_of("a") == [EDGES[0], EDGES[1], EDGES[3], EDGES[4]]
    assert g.edges_of("c") == [EDGES[1], EDGES[2]]
    assert g.edges_of("nobody") == []


def test_to_dict_gives_every_edge_or_the_newest_limit() -> None:
    g = graph()
    whole = g.to_dict()
    assert whole["edges"] == [{"from_seq": e.from_seq, "from_agent": e.from_agent, "to_seq": e.to_seq,
                               "to_agent": e.to_agent, "relation": e.relation} for e in EDGES]
    assert whole["total_edges"] == 5 and whole["agents"] == g.agent_pairs()
    assert [d["from_seq"] for d in g.to_dict(limit=2)["edges"]] == [6, 7]
    assert [d["from_seq"] for d in g.to_dict(limit=1)["edges"]] == [7]
    assert [d["from_seq"] for d in g.to_dict(limit=5)["edges"]] == [3, 4, 5, 6, 7]
    assert [d["from_seq"] for d in g.to_dict(limit=9)["edges"]] == [3, 4, 5, 6, 7]
    assert g.to_dict(limit=2)["total_edges"] == 5  # the counts stay whole


@pytest.mark.parametrize("keep, kept", [(None, [3, 4, 5, 6, 7]), (2, [6, 7]), (1, [7]), (0, [])])
def test_a_graph_keeps_only_the_newest_max_edges_but_counts_all(keep: int | None, kept: list[int]) -> None:
    g = graph(keep)
    assert [e.from_seq for e in g.edges] == kept
    assert g.total_edges == 5 and g.agent_pairs() == {"a": {"b": 1}, "b": {"a": 2}, "c": {"a": 1, "b": 1}}


@pytest.mark.parametrize("keep", [None, 2, 0])
def test_an_exported_graph_restores_to_the_same_answers(keep: int | None) -> None:
    g = graph(keep)
    restored = CallGraph(keep)
    restored.restore(g.export())
    assert list(restored.edges) == list(g.edges)
    assert restored.total_edges == 5
    assert restored.agent_pairs() == g.agent_pairs() == {"a": {"b": 1}, "b": {"a": 2}, "c": {"a": 1, "b": 1}}
    assert restored.to_dict() == g.to_dict()
    restored.add(Edge(8, "a", 7, "a"))  # and it goes on counting from there
    assert restored.total_edges == 6 and restored.agent_pairs()["a"] == {"a": 1, "b": 1}
