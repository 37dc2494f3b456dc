"""Which index the dashboard answers from (``Dashboard.open_index``): HOME's index of its topics,
only when it was built under exactly the dashboard's trusted keys and in this version's layout;
any other index would show another ledger (or fail on tables it lacks), so the dashboard keeps
its own live view then."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledgerstream.core import mldsa
from ledgerstream.core.config import Topics
from ledgerstream.core.verify import CheckerConfig
from ledgerstream.index.core import IndexCore
from ledgerstream.index.db import SCHEMA_VERSION, open_db, set_meta
from ledgerstream.index.paths import IndexPaths
from ledgerstream.tools.dashboard.app import Dashboard
from ledgerstream.tools.dashboard.checks import EntryChecker
from ledgerstream.tools.dashboard.hub import Hub
from ledgerstream.tools.dashboard.ledger import LedgerView
from ledgerstream.tools.dashboard.settings import DashboardSettings
from support.ledger_builder import LedgerBuilder, enc, entry_bytes

pytestmark = pytest.mark.unit

OURS = mldsa.PrivateKey.from_seed(bytes(range(32)))
OTHER = mldsa.PrivateKey.from_seed(bytes(range(1, 33)))
TOPICS = Topics.with_prefix("t.")


def _index(home: Path, key: mldsa.PrivateKey) -> None:
    b = LedgerBuilder(key)
    items = [("entries", i, entry_bytes(b.entry(f"agent-{i % 2}"))) for i in range(5)]
    items.append(("checkpoints", 0, enc("Checkpoint", b.checkpoint())))
    core = IndexCore(IndexPaths.of(home), CheckerConfig.from_keys([key.public_key()]), fsync=False,
                     topics={"entries": TOPICS.entries, "checkpoints": TOPICS.checkpoints})
    core.process(items)
    core.close()


def _dashboard(home: Path, *keys: mldsa.PrivateKey) -> Dashboard:
    checker = EntryChecker([k.public_key() for k in keys], None)
    settings = DashboardSettings(home=home, bootstrap="127.0.0.1:9", topics=TOPICS)
    return Dashboard(settings, LedgerView(checker.config), checker, Hub())


def test_the_index_of_the_same_keys_answers(tmp_path: Path) -> None:
    _index(tmp_path, OURS)
    dash = _dashboard(tmp_path, OURS)
    with dash.ledger() as ledger:
        head = ledger.head()
        agents = {a["agent_id"]: a["count"] for a in ledger.agent_views()}
    assert head["source"] == "index" and head["size"] == 5 and agents == {"agent-0": 3, "agent-1": 2}


@pytest.mark.parametrize("keys", [(OTHER,), (OURS, OTHER)], ids=["other key", "one key more"])
def test_an_index_under_other_keys_is_not_used(tmp_path: Path, keys: tuple[mldsa.PrivateKey, ...]) -> None:
    _index(tmp_path, OURS)
    dash = _dashboard(tmp_path, *keys)
    assert dash.open_index() is None
    with dash.ledger() as ledger:
        assert ledger.head()["source"] == "live"


def test_an_index_of_an_older_layout_is_not_used(tmp_path: Path) -> None:
    _index(tmp_path, OURS)
    conn = open_db(IndexPaths.of(tmp_path).db)
    set_meta(conn, "schema_version", SCHEMA_VERSION - 1)
    conn.close()
    assert _dashboard(tmp_path, OURS).open_index() is None


def test_no_index_means_the_live_view(tmp_path: Path) -> None:
    with _dashboard(tmp_path, OURS).ledger() as ledger:
        assert ledger.head()["source"] == "live" and ledger.head()["size"] == 0


def test_the_head_says_how_current_the_index_is(tmp_path: Path) -> None:
    """``head.index`` (what the page shows under the head) from the follower's status file: a
    live follower at the end is current; a live one with records to read says how many; a
    dead pid or no follower at all is never shown as current."""
    import json
    import subprocess
    import sys

    from ledgerstream.tools.dashboard.indexed import index_progress

    paths = IndexPaths.of(tmp_path)
    assert index_progress(paths) == {"follower": "none", "caught_up": False, "records_behind": None, "updated_at": None}
    paths.status.parent.mkdir(parents=True, exist_ok=True)

    def status(pid: int, caught_up: bool, behind: dict) -> dict:
        paths.status.write_text(json.dumps({"pid": pid, "running": True, "caught_up": caught_up,
                                            "records_behind": behind, "updated_at": 1.5}))
        return index_progress(paths)

    assert status(os.getpid(), True, {"entries": 0, "checkpoints": 0}) == {
        "follower": "running", "caught_up": True, "records_behind": 0, "updated_at": 1.5}
    assert status(os.getpid(), False, {"entries": 5, "checkpoints": 1})["records_behind"] == 6
    assert status(os.getpid(), False, {"entries": None, "checkpoints": None})["records_behind"] is None
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = status(gone.pid, True, {"entries": 0, "checkpoints": 0})
    assert dead["follower"] == "stopped" and dead["caught_up"] is False
