"""``ledgerstream index status``: how far the index is, read from its database and Kafka.

``lag`` is the number of committed entries in Kafka not yet indexed: the seq of the newest
genuine entry on ``entries`` (the newest of the last few records that passes the Checker's
stateless checks under the configured trust, so that a rogue record claiming a huge seq
does not count) plus one, minus ``indexed_size``. The newest entry is indexed once the next
entry or a checkpoint covering it confirms its place (the Checker's tentative head); the
signer publishes such a checkpoint within its ``--checkpoint-ms``, so an idle ledger has
lag 0.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ledgerstream.core.wire import codec
from ledgerstream.core.config import Topics, read_stack
from ledgerstream.core.errors import ConfigError, DecodeError, LedgerstreamError
from ledgerstream.core.verify import CheckerConfig, check_entry
from ledgerstream.index.db import get_meta, open_db
from ledgerstream.index.paths import IndexPaths

#: records read back from the end of entries to find the newest genuine entry, widened while
#: the tail holds none (rogue records appended after the ledger)
TAILS = (16, 512, 8192)


class NoGenuineEntry(Exception):
    """The tail of entries holds records, but no genuine entry among the last TAILS[-1]."""


def newest_seq(bootstrap: str, topics: Topics, config: CheckerConfig | None) -> int | None:
    """seq of the newest genuine committed entry (None: the topic has no record). ``config``
    None: the newest decodable one."""
    from ledgerstream.tools.ledger_reader import last_records

    for n in TAILS:
        tail = last_records(bootstrap, topics.entries, n, role="reader")
        if not tail:
            return None
        for offset, raw in reversed(tail):
            if config is not None:
                checked = check_entry((offset, raw), config)
                if checked.rejection is None:
                    return checked.seq
                continue
            try:
                return int(codec.decode(raw, expect="LedgerEntry")[1]["seq"])
            except DecodeError:
                continue
        if len(tail) < n:
            break  # the whole topic was read
    raise NoGenuineEntry(f"no genuine entry among the last {len(tail)} records of {topics.entries}")


def follower_status(paths: IndexPaths) -> dict[str, Any] | None:
    """The follower's status file, with ``alive``: whether its pid runs now (None: no file)."""
    try:
        status = json.loads(paths.status.read_text())
    except (OSError, ValueError):
        return None
    pid = status.get("pid")
    alive = False
    if isinstance(pid, int) and status.get("running"):
        try:
            os.kill(pid, 0)
            alive = True
        except (ProcessLookupError, PermissionError):
            alive = False
    return {**status, "alive": alive}


def follower_alive(paths: IndexPaths) -> bool:
    """Whether an index follower runs on ``paths`` now (its status file's pid is alive)."""
    follower = follower_status(paths)
    return bool(follower and follower["alive"])


def index_status(paths: IndexPaths, bootstrap: str | None, topics: Topics,
                 config: CheckerConfig | None, tlog_url: str | None = None) -> dict[str, Any]:
    """The ``index status --json`` document (docs/index.md). ``bootstrap`` None, Kafka
    unreachable, or no genuine entry in the topic's tail: ``lag`` is null and ``kafka_error``
    says why. ``tlog_url``: where a dashboard serves these tiles, if one does."""
    doc: dict[str, Any] = {"indexed_size": 0, "lag": None, "tiles_dir": str(paths.tiles_dir), "foreign": 0,
                           "tlog_url": tlog_url, "tiles_size": 0, "db": str(paths.db), "exists": paths.db.exists(),
                           "next_offset": None, "findings": {}, "checkpoints_verified": 0, "last_checkpoint": None,
                           "newest_seq": None, "kafka_error": None}
    if doc["exists"]:
        conn = open_db(paths.db, readonly=True)
        try:
            doc["indexed_size"] = int(get_meta(conn, "indexed_size", 0))
            doc["tiles_size"] = int(get_meta(conn, "tiles_size", 0))
            doc["next_offset"] = get_meta(conn, "next_offset")
            doc["last_checkpoint"] = get_meta(conn, "last_checkpoint")
            doc["foreign"] = conn.execute("SELECT COUNT(*) FROM foreign_records").fetchone()[0]
            doc["findings"] = dict(conn.execute("SELECT kind, COUNT(*) FROM findings GROUP BY kind ORDER BY kind"))
            doc["checkpoints_verified"] = conn.execute(
                "SELECT COUNT(*) FROM checkpoints WHERE status = 'verified'").fetchone()[0]
        finally:
            conn.close()
    if bootstrap is None:
        doc["kafka_error"] = "no Kafka bootstrap"
    else:
        try:
            newest = newest_seq(bootstrap, topics, config)
        except (LedgerstreamError, ConfigError, NoGenuineEntry) as exc:
            doc["kafka_error"] = str(exc)
        else:
            doc["newest_seq"] = newest
            doc["lag"] = 0 if newest is None else max(0, newest + 1 - doc["indexed_size"])
    doc["follower"] = follower_status(paths)
    return doc


def served_tlog_url(home: Path, paths: IndexPaths) -> str | None:
    """The dev stack dashboard's ``/tlog/`` URL when it serves these tiles (HOME/tiles)."""
    from ledgerstream.stack.devstack import status as stack_status

    if read_stack(home) is None:
        return None
    dashboard = stack_status(home).get("dashboard") or {}
    url = dashboard.get("url") if dashboard.get("pid") else None
    if not url or paths.tiles_dir != IndexPaths.of(home).tiles_dir:
        return None
    return url.rstrip("/") + "/tlog/"
