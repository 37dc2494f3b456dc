"""Step [8], cross-agent links: the rule for one resolved link and the call graph they build."""
from __future__ import annotations

import dataclasses
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Mapping

@dataclass
class Edge:
    """A resolved cross-agent link: entry ``from_seq`` names entry ``to_seq`` as its cause."""

    from_seq: int
    from_agent: str
    to_seq: int
    to_agent: str
    relation: str = "caused_by"

    def to_dict(self) -> dict[str, Any]:
        return {"from_seq": self.from_seq, "from_agent": self.from_agent, "to_seq": self.to_seq,
                "to_agent": self.to_agent, "relation": self.relation}


class CallGraph:
    """The cross-agent call graph built from resolved links; answers who called whom."""

    def __init__(self, max_edges: int | None = None) -> None:
        """``max_edges``: keep only the newest this many edges (0: none, None: all); edges are
        always counted by agent pair, so memory can stay independent of the ledger's size
        (the ledger index keeps every edge in its database instead)."""
        self.edges: deque[Edge] = deque(maxlen=max_edges)
        self.total_edges = 0
        self._pairs: Counter[tuple[str, str]] = Counter()

    def add(self, edge: Edge) -> None:
        self.edges.append(edge)
        self.total_edges += 1
        self._pairs[(edge.from_agent, edge.to_agent)] += 1

    def edges_of(self, agent_id: str) -> list[Edge]:
        return [e for e in self.edges if agent_id in (e.from_agent, e.to_agent)]

    def agent_pairs(self) -> dict[str, dict[str, int]]:
        """``{from_agent: {to_agent: number of links}}``."""
        out: dict[str, dict[str, int]] = {}
        for (src, dst), n in sorted(self._pairs.items()):
            out.setdefault(src, {})[dst] = n
        return out

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        edges = list(self.edges)[-limit:] if limit else list(self.edges)
        return {"edges": [e.to_dict() for e in edges], "agents": self.agent_pairs(),
                "total_edges": self.total_edges}

    def export(self) -> dict[str, Any]:
        """The counts and kept edges, for a checker whose history outlives it (no journal of edges)."""
        return {"edges": [dataclasses.astuple(e) for e in self.edges], "total_edges": self.total_edges,
                "pairs": [[src, dst, n] for (src, dst), n in sorted(self._pairs.items())]}

    def restore(self, saved: Mapping[str, Any]) -> None:
        self.edges.extend(Edge(*e) for e in saved["edges"])
        self.total_edges = int(saved["total_edges"])
        self._pairs = Counter({(src, dst): int(n) for src, dst, n in saved["pairs"]})


@dataclass
class PendingLink:
    from_seq: int
    from_agent: str
    to_agent: str
    to_event: str
    relation: str
    since_us: int
    done: bool = False



def links_answer_problem(entry: Mapping[str, Any]) -> str | None:
    """The signer answers an action's links one by one, in order: ``resolved_links[i]`` names
    the same agent and event as ``action.links[i]``. The message if not."""
    links = list(entry["action"].get("links") or [])
    resolved = list(entry.get("resolved_links") or [])
    if [(l["agent_id"], l["event_id"]) for l in links] != [(r["agent_id"], r["event_id"]) for r in resolved]:
        return f"resolved_links {len(resolved)} do not answer the action's links {len(links)} one by one"
    return None


def names_earlier_entry(seq: int, r: Mapping[str, Any]) -> bool:
    """A resolved link of entry ``seq`` names an entry (seq and hash) before it."""
    return r["seq"] is not None and r["entry_hash"] is not None and 0 <= r["seq"] < seq


def resolved_link_problem(seq: int, r: Mapping[str, Any], target: tuple[int, bytes | None] | None) -> str | None:
    """The rule for one ``resolved`` link ``r`` of entry ``seq``: it names an earlier entry,
    which holds the linked event, with that entry's hash. ``target``: (seq, entry_hash) of the
    entry holding the linked agent/event, None if no known entry does. The message if broken."""
    to = f"{r['agent_id']}/{r['event_id']}"
    if not names_earlier_entry(seq, r):
        return f"resolved link to {to} names no earlier entry (seq {r['seq']})"
    if target is None or target[0] != r["seq"]:
        return f"resolved link to {to} names seq {r['seq']}, but that event is " + (
            "not in the ledger" if target is None else f"at seq {target[0]}")
    if bytes(r["entry_hash"]) != target[1]:
        return f"resolved link to {to} names a different entry_hash than entry {r['seq']}"
    return None
