"""Who is acting right now: sessions, actions in progress and cross-agent links.

A :class:`Scope` is pushed on a context variable by ``Ledger.session()`` and by every
``@ledger.action`` call. When a *different* agent's Ledger records an event while a scope is
active (agent A calls agent B in the same process, in the same thread or asyncio task),
B's event gets a ``caused_by`` link to A's latest event. Across processes the same link
travels as an opaque token (:func:`make_token` / :func:`parse_token`).

Context variables follow asyncio tasks automatically; plain threads do not inherit them
(run thread work through ``contextvars.copy_context().run``).
"""
from __future__ import annotations

import base64
import binascii
import json
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ledgerstream.core import records
from ledgerstream.producers.entropy import random_bytes

TOKEN_PREFIX = "lsl1."


class Link(NamedTuple):
    """A causal link from an event to another agent's event (Avro ``ledgerstream.Link``)."""

    agent_id: str
    event_id: str
    relation: str = "caused_by"

    def as_record(self) -> dict[str, str]:
        return {"agent_id": self.agent_id, "event_id": self.event_id, "relation": self.relation}


def new_trace_id() -> str:
    return random_bytes(16).hex()


def new_span_id() -> str:
    return random_bytes(8).hex()


@dataclass(eq=False)
class Scope:
    """One agent's session or action in progress.

    ``last_event_id`` is the agent's latest event inside the scope (for an action in
    progress: the id reserved for its own record), the target of links from other agents.
    ``inbound`` are the links every event of this scope carries.
    """

    agent_id: str
    session_id: str | None
    trace_id: str
    span_id: str | None
    last_event_id: str | None = None
    inbound: tuple[Link, ...] = ()
    parent: "Scope | None" = field(default=None, repr=False)


_SCOPE: ContextVar[Scope | None] = ContextVar("ledgerstream_scope", default=None)


class Placement(NamedTuple):
    """Where a new event of an agent sits: its session, automatic links, trace parent."""

    session_id: str | None
    links: tuple[Link, ...]
    trace_id: str | None
    parent_span_id: str | None


def placement(agent_id: str) -> Placement:
    """Session, automatic links and trace context for an event ``agent_id`` records now."""
    scope = _SCOPE.get()
    if scope is None:
        return Placement(None, (), None, None)
    if scope.agent_id == agent_id:
        return Placement(scope.session_id, scope.inbound, scope.trace_id, scope.span_id)
    links = (Link(scope.agent_id, scope.last_event_id),) if scope.last_event_id else ()
    return Placement(None, links, scope.trace_id, scope.span_id)


def enter(agent_id: str, *, session_id: str | None = None, span_id: str | None = None,
          last_event_id: str | None = None, extra_links: tuple[Link, ...] = ()) -> tuple[Scope, Token]:
    """Push a scope of ``agent_id``; it inherits session and links from the placement."""
    where = placement(agent_id)
    scope = Scope(
        agent_id=agent_id,
        session_id=session_id if session_id is not None else where.session_id,
        trace_id=where.trace_id or new_trace_id(),
        span_id=span_id,
        last_event_id=last_event_id,
        inbound=_dedup(where.links + extra_links),
        parent=_SCOPE.get(),
    )
    return scope, _SCOPE.set(scope)


def leave(scope: Scope, token: Token) -> None:
    """Pop ``scope``; an enclosing scope of the same agent takes over its latest event."""
    _SCOPE.reset(token)
    parent = scope.parent
    if parent is not None and parent.agent_id == scope.agent_id and scope.last_event_id:
        parent.last_event_id = scope.last_event_id


def note_event(agent_id: str, event_id: str) -> None:
    """Remember ``event_id`` as the latest event of ``agent_id`` in the current scope."""
    scope = _SCOPE.get()
    if scope is not None and scope.agent_id == agent_id:
        scope.last_event_id = event_id


def latest_event(agent_id: str) -> str | None:
    """The latest event of ``agent_id`` visible from here (innermost scope of that agent)."""
    scope = _SCOPE.get()
    while scope is not None:
        if scope.agent_id == agent_id and scope.last_event_id:
            return scope.last_event_id
        scope = scope.parent
    return None


def _dedup(links: tuple[Link, ...]) -> tuple[Link, ...]:
    return tuple(dict.fromkeys(links))


# --- tokens across processes ---------------------------------------------------------------

def make_token(agent_id: str, event_id: str) -> str:
    """An opaque, URL-safe token naming one agent's event, for handing to another process."""
    body = json.dumps({"a": agent_id, "e": event_id}, separators=(",", ":")).encode()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(body).decode().rstrip("=")


def parse_token(token: str) -> Link:
    """The link a token names; ValueError for anything that is not a token we made."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
        raise ValueError(f"not a ledgerstream link token: {token!r}")
    raw = token[len(TOKEN_PREFIX):]
    try:
        data: Any = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"corrupt ledgerstream link token: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("a"), str) or not isinstance(data.get("e"), str) \
            or not data["a"] or not data["e"]:
        raise ValueError("corrupt ledgerstream link token: missing agent or event id")
    return Link(data["a"], data["e"])


def to_link(value: Any) -> Link:
    """Accept a Link, a token, an ``AGENT:EVENT`` string, a dict or an (agent, event[, relation]) pair."""
    if isinstance(value, Link):
        link = value
    elif isinstance(value, str):
        if value.startswith(TOKEN_PREFIX):
            link = parse_token(value)
        elif ":" in value:
            agent, _, event = value.rpartition(":")
            link = Link(agent, event)
        else:
            raise ValueError(f"a link is a token or AGENT:EVENT_ID, got {value!r}")
    elif isinstance(value, dict):
        link = Link(value.get("agent_id"), value.get("event_id"), value.get("relation") or "caused_by")
    elif isinstance(value, (tuple, list)) and len(value) in (2, 3):
        link = Link(*value)
    else:
        raise TypeError(f"cannot make a link of {type(value).__name__}")
    if not all(isinstance(part, str) and part for part in link):
        raise ValueError(f"a link needs non-empty string agent_id, event_id and relation: {value!r}")
    records.validate_identifier("link agent_id", link.agent_id)
    records.validate_identifier("link event_id", link.event_id)
    return link
