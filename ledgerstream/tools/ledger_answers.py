"""``show`` and ``prove`` answers for the CLI and the MCP server: from the ledger index when
HOME has one (O(log n), ``index/reads.py``), else from a full read of the topics
(``ledger_snapshot.py``, records checked under HOME's trusted keys). One function per question, so both front ends answer alike."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from ledgerstream.core.config import Topics
from ledgerstream.core.errors import ConfigError
from ledgerstream.core.verify import CheckerConfig
from ledgerstream.core.verify.checkpoints import checkpoint_note
from ledgerstream.index.reads import IndexedLedger, open_for, trust_of
from ledgerstream.tools.ledger_snapshot import LedgerSnapshot, checkpoint_json, inclusion_json, load_ledger

#: default seconds a read waits for a running index follower to reach what it asks for
DEFAULT_WAIT = 30.0
Note = Callable[[str], None]


def _trust(home: Path) -> CheckerConfig:
    """HOME's trust, without which a full read cannot tell entries from forged records."""
    config = trust_of(home)
    if config is None:
        raise ConfigError(f"no trusted signer key in {home / 'keys'} (signer.pub.pem or trusted/*.pem): "
                          "cannot tell the ledger's entries from forged records")
    return config


@contextmanager
def _index(home: Path, bootstrap: str, topics: Topics, note: Note | None) -> Iterator[IndexedLedger | None]:
    ledger = open_for(home, bootstrap, topics)
    if ledger is None and note is not None:
        note(f"no ledger index in {home / 'index'} for these topics: reading the whole entries topic "
             "(run 'ledgerstream index run' for O(log n) reads)")
    try:
        yield ledger
    finally:
        if ledger is not None:
            ledger.close()


def entry(home: Path, bootstrap: str, topics: Topics, seq: int, *, wait: float = DEFAULT_WAIT,
          note: Note | None = None) -> tuple[dict[str, Any], int]:
    """Entry ``seq`` (decoded LedgerEntry) and its offset on the entries topic; LookupError
    if the ledger has none (or the index cannot answer yet: ``NotIndexed``)."""
    with _index(home, bootstrap, topics, note) as ledger:
        if ledger is not None:
            row, record = ledger.entry(seq, wait)
            return record, row.topic_offset
    snap = load_ledger(bootstrap, topics, _trust(home))
    return snap.entry(seq), snap.offsets[seq]


def inclusion(home: Path, bootstrap: str, topics: Topics, seq: int, tree_size: int | None, *,
              wait: float = DEFAULT_WAIT, note: Note | None = None) -> dict[str, Any]:
    """``prove inclusion --json``: default size the newest (verified, with an index) checkpoint."""
    with _index(home, bootstrap, topics, note) as ledger:
        if ledger is not None:
            return ledger.inclusion(seq, tree_size, wait)
    return inclusion_json(load_ledger(bootstrap, topics, _trust(home)), seq, tree_size)


def consistency(home: Path, bootstrap: str, topics: Topics, first: int, second: int, *,
                wait: float = DEFAULT_WAIT, note: Note | None = None) -> dict[str, Any]:
    """``prove consistency --json`` between trees of ``first`` <= ``second`` entries."""
    with _index(home, bootstrap, topics, note) as ledger:
        if ledger is not None:
            return ledger.consistency(first, second, wait)
    return _snapshot_consistency(load_ledger(bootstrap, topics, _trust(home)), first, second)


def _snapshot_consistency(snap: LedgerSnapshot, first: int, second: int) -> dict[str, Any]:
    if not 0 <= first <= second <= snap.tree.size:
        raise LookupError(f"need 0 <= from <= to <= {snap.tree.size} (ledger size)")
    return {"first_size": first, "second_size": second, "first_root": snap.tree.root(first).hex(),
            "second_root": snap.tree.root(second).hex(),
            "consistency_path": [h.hex() for h in snap.tree.consistency_proof(first, second)]}


def checkpoints(home: Path, bootstrap: str, topics: Topics, *, note: Note | None = None) -> list[dict[str, Any]]:
    """``checkpoints list --json``: the verified checkpoints only (a forged or failed
    checkpoint record is never listed), from the index or from a full read."""
    with _index(home, bootstrap, topics, note) as ledger:
        if ledger is not None:
            with ledger.consistent():  # the witnessed size and the cosignatures from the same commit
                witnessed = ledger.witnessed_size
                return [checkpoint_json(c.record(), ledger.anchor_records(c), ledger.note_lines(c), witnessed)
                        for c in ledger.checkpoints()]
    snap = load_ledger(bootstrap, topics, _trust(home))
    return [checkpoint_json(c, snap.anchors_for(c), snap.note_lines_for(c), snap.witnessed_size)
            for c in snap.checkpoints]


def checkpoint(home: Path, bootstrap: str, topics: Topics, tree_size: int, *, wait: float = DEFAULT_WAIT,
               note: Note | None = None) -> tuple[dict[str, Any], list[dict[str, Any]], bytes]:
    """The checkpoint record of ``tree_size`` entries, its TimestampAnchor records and its
    full signed note (log lines and verified cosignatures) for ``checkpoints export``;
    LookupError if there is none (with an index: no verified one)."""
    config = _trust(home)
    with _index(home, bootstrap, topics, note) as ledger:
        if ledger is not None:
            found = ledger.checkpoint(tree_size, wait)
            return (found.record(), ledger.anchor_records(found),
                    checkpoint_note(found.record(), ledger.note_lines(found), config))
    snap = load_ledger(bootstrap, topics, config)
    c = snap.checkpoint_for(tree_size=tree_size)
    return c, snap.anchors_for(c), checkpoint_note(c, snap.note_lines_for(c), config)
