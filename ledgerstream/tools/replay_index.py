"""Replay from the ledger index: the selected entries, their link closure and the checkpoints
they need, in O(log n + k) for k matching entries, never a read of the whole topic.

Why: the index follower already ran the core Checker over every record (``index/``), so its
rows are the genuine ledger's entries and its ``foreign_records`` the rest. This module turns
them into the same :class:`~ledgerstream.tools.replay.Ledger` that a full read builds, so
``replay``, ``export bundle`` and the MCP server re-verify and print one shape whichever way
the ledger was read; the per-entry report (hash, signature, payload, inclusion from the tiles,
RFC 3161) is still made from the record bytes, fetched by offset and checked against the
SHA-256 the index holds.
"""
from __future__ import annotations

import fnmatch
from collections import deque
from typing import Any, Iterable

from ledgerstream.core.wire import codec
from ledgerstream.core.tiles import TileReader
from ledgerstream.index import query
from ledgerstream.index.reads import ACCEPTED_ANCHORS, IndexedLedger
from ledgerstream.index.status import newest_seq
from ledgerstream.tools.replay import CheckpointInfo, Ledger, Row, Selection, CHECK_OF_KIND

#: rows read per index query while paging through a driving filter
PAGE = 1000
#: foreign records of the entries topic shown at most (an attacker can write many)
MAX_FOREIGN = 1000


def _all(fetch: Any) -> Iterable[query.Entry]:
    """Page through ``fetch(after_seq)`` until it returns nothing."""
    after = -1
    while True:
        page = fetch(after)
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].seq


def _candidates(conn: Any, s: Selection) -> Iterable[query.Entry]:
    """Entries of the most selective indexed filter (the others are applied afterwards)."""
    if s.agents:
        for agent in sorted(set(s.agents)):
            yield from _all(lambda after, a=agent: query.entries_by_agent(conn, a, after, PAGE))
    elif s.sessions:
        for session in sorted(set(s.sessions)):
            yield from _all(lambda after, x=session: query.entries_by_session(conn, x, after, PAGE))
    elif s.seq_from is not None or s.seq_to is not None:
        lo, hi = s.seq_from or 0, s.seq_to if s.seq_to is not None else 2 ** 62
        yield from _all(lambda after: query.entries_in_range(conn, max(lo, after + 1), hi, PAGE))
    elif s.action_types:
        for action_type in query.action_types(conn):
            if any(fnmatch.fnmatchcase(action_type, g) for g in s.action_types):
                yield from _by_time(conn, action_type, s)
    else:
        yield from _by_time(conn, None, s)


def _by_time(conn: Any, action_type: str | None, s: Selection) -> Iterable[query.Entry]:
    since, after = s.since_us, -1
    while True:
        page = query.entries_by_filter(conn, action_type, since, s.until_us, PAGE, after)
        yield from page
        if len(page) < PAGE:
            return
        since, after = page[-1].time, page[-1].seq


def _row(conn: Any, e: query.Entry) -> Row:
    links = tuple((l.to_agent_id, l.to_event_id, l.relation) for l in query.links_of(conn, e.seq, "out"))
    row = Row(e.topic_offset, e.seq, e.event_id, e.agent_id, e.session_id, e.action_type, e.occurred_at, e.time,
              links, e.entry_hash, True)
    issues: dict[str, str] = {}
    for kind, detail in query.entry_findings(conn, e.seq):
        name = CHECK_OF_KIND.get(kind)
        if name:
            issues.setdefault(name, detail)
    row.issues = issues or None
    return row


def _closure(conn: Any, chosen: dict[int, query.Entry]) -> None:
    """Add every entry linked to or from a chosen one, transitively (``--follow-links``)."""
    queue = deque(chosen)
    while queue:
        seq = queue.popleft()
        neighbours = []
        for link in query.links_of(conn, seq, "both"):
            if link.from_seq == seq:
                target = link.to_seq
                if target is None:  # unresolved: the event may still be on the ledger
                    found = query.entry_by_event_id(conn, link.to_event_id)
                    target = found.seq if found is not None and found.agent_id == link.to_agent_id else None
                neighbours.append(target)
            else:
                neighbours.append(link.from_seq)
        for n in neighbours:
            if n is not None and n not in chosen:
                e = query.entry_by_seq(conn, n)
                if e is not None:
                    chosen[n] = e
                    queue.append(n)


def _foreign_rows(ix: IndexedLedger, s: Selection, led: Ledger) -> list[Row]:
    """The entries topic's foreign records (decodable ones matching the filters are shown
    off chain with the finding that kept them out; undecodable ones are listed)."""
    foreign = query.foreign_records(ix.conn, "entries", limit=MAX_FOREIGN)
    if len(foreign) == MAX_FOREIGN:
        led.findings.append(f"more than {MAX_FOREIGN} foreign records on the entries topic: only the first are shown")
    decodable = [f for f in foreign if f.kind != "undecodable"]
    led.undecodable += [(f.topic_offset, f.detail) for f in foreign if f.kind == "undecodable"]
    raws = ix.records().fetch([f.topic_offset for f in decodable]) if decodable else {}
    rows = []
    for f in decodable:
        raw = raws.get(f.topic_offset)
        if raw is None:
            continue
        _, e = codec.decode(raw, expect="LedgerEntry")
        a = e["action"]
        row = Row(f.topic_offset, e["seq"], a["event_id"], a["agent_id"], a.get("session_id"), a["action_type"],
                  a["occurred_at"], e["received_at"],
                  tuple((l["agent_id"], l["event_id"], l.get("relation") or "caused_by") for l in a.get("links") or []),
                  bytes(e["entry_hash"]), False, {"chain": f"not an entry of this ledger ({f.kind}: {f.detail})"})
        if s.matches(row):
            led.raw[row.offset] = raw
            rows.append(row)
    return rows


def _checkpoint_info(ix: IndexedLedger, c: query.Checkpoint) -> CheckpointInfo:
    """A verified checkpoint with its record bytes and accepted anchors, fetched by offset."""
    raw = ix.records(ix.topics.checkpoints).fetch([c.topic_offset])[c.topic_offset]
    _, rec = codec.decode(raw, expect="Checkpoint")
    if bytes(rec["body"]) != c.body:
        raise LookupError(f"checkpoints topic offset {c.topic_offset} no longer holds the indexed checkpoint: reindex")
    info = CheckpointInfo(c.topic_offset, raw, rec, c.body, c.tree_size, c.root_hash, True)
    info.tokens = [(a["timestamp"]["tsa"], bytes(a["timestamp"]["token"])) for a in ix.anchor_records(c)]
    info.note_lines = ix.note_lines(c)
    return info


def _first_anchored(conn: Any, entries: list[query.Entry]) -> list[query.Checkpoint]:
    """Per entry, the first verified checkpoint covering it that has an accepted RFC 3161
    anchor (the tightest time bound): usually the checkpoint that first covered it (its row
    names it: one lookup), else the next anchored one (one index query per distinct
    covering checkpoint)."""
    found: dict[int | None, query.Checkpoint | None] = {}
    for e in entries:
        if e.checkpoint_size in found:
            continue
        first = query.checkpoint_at(conn, e.checkpoint_size) if e.checkpoint_size is not None else None
        if first is None or not any(a.status in ACCEPTED_ANCHORS for a in query.anchors_of(conn, first)):
            first = query.first_anchored_checkpoint(conn, e.seq, ACCEPTED_ANCHORS)
        found[e.checkpoint_size] = first
    return [c for c in found.values() if c is not None]


def indexed_ledger(ix: IndexedLedger, selection: Selection, *, wait: float) -> tuple[Ledger, list[Row]]:
    """The replay of ``selection`` from the index: the :class:`Ledger` (only the rows shown,
    the checkpoints they need, proofs from the tiles) and the rows, ordered by offset.
    Waits (up to ``wait`` s, while the follower runs) until the index holds the ledger's
    newest entry; :class:`~ledgerstream.index.reads.NotIndexed` if it does not."""
    conn = ix.conn
    newest = newest_seq(ix.bootstrap, ix.topics, ix.config)
    if newest is not None:
        ix.require(lambda: query.indexed_size(conn) > newest, f"the ledger's newest entry ({newest})", newest, wait)
    chosen: dict[int, query.Entry] = {}
    for e in _candidates(conn, selection):
        if e.seq not in chosen and selection.matches(_row(conn, e)):
            chosen[e.seq] = e
    if selection.follow_links:
        _closure(conn, chosen)
    led = Ledger(indexed_size=query.indexed_size(conn))
    entries = [chosen[seq] for seq in sorted(chosen)]
    raws = query.raw_entries(conn, entries, ix.bootstrap, ix.topics.entries, fetcher=ix.records()) if entries else {}
    led.raw.update({e.topic_offset: raws[e.seq] for e in entries})
    rows = [_row(conn, e) for e in entries] + _foreign_rows(ix, selection, led)
    tiles = TileReader(ix.paths.tiles_dir, query.tiles_size(conn))
    led.tree = tiles.tree()
    needed = {c.topic_offset: c for c in [query.latest_checkpoint(conn)] if c is not None}
    for first in _first_anchored(conn, entries):
        needed.setdefault(first.topic_offset, first)
    led.checkpoints = sorted((_checkpoint_info(ix, c) for c in needed.values()), key=lambda c: (c.tree_size, c.offset))
    counts = query.finding_counts(conn)
    led.findings += [f"{kind}: {n} finding(s) recorded by the ledger index" for kind, n in counts.items()]
    led.rows = sorted(rows, key=lambda r: r.offset)
    for index, row in enumerate(led.rows):
        if row.on_chain:
            led.by_event.setdefault(row.event_id, index)
        for link in row.links:
            led.linked_from.setdefault(link[1], []).append(index)
    return led, led.rows
