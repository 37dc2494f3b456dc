"""The index's pure part (``ledgerstream.index.core.IndexCore``) on ledgers built in memory:
rows against the builder's own records, tiles against an independent RFC 9162 root, foreign
records, independence from batching, recovery from a failure before the commit point, tiles
rebuilt from the database, and refusing other trust. The same over real Kafka and the CLI:
tests/integration/test_index_follower.py."""
from __future__ import annotations

import random
import shutil
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from ledgerstream.core import mldsa
from ledgerstream.core.errors import ConfigError
from ledgerstream.core.tiles import TileReader, read_checkpoint
from ledgerstream.core.verify import CheckerConfig, Finding
from ledgerstream.index import db
from ledgerstream.index.core import IndexCore
from ledgerstream.index.paths import IndexPaths
from support.ledger_builder import LedgerBuilder, enc, entry_bytes, flip_inside, other_entry
from support.rfc9162_checker import hash_leaf, mth_from_leaf_hashes
from support.signed_notes import mldsa_checkpoint_note

pytestmark = pytest.mark.unit

KEY = mldsa.PrivateKey.from_seed(bytes(range(32)))
ROGUE = mldsa.PrivateKey.from_seed(bytes(range(1, 33)))
CONFIG = CheckerConfig.from_keys([KEY.public_key()])

Record = tuple[str, int, bytes]


class Records:
    """Records of both topics with their offsets, in write order."""

    def __init__(self) -> None:
        self.items: list[Record] = []
        self.next = {"entries": 0, "checkpoints": 0}

    def add(self, role: str, raw: bytes) -> int:
        offset = self.next[role]
        self.items.append((role, offset, raw))
        self.next[role] += 1
        return offset

    def entries(self, builder_entries: list[dict[str, Any]]) -> None:
        for e in builder_entries:
            self.add("entries", entry_bytes(e))

    def checkpoint(self, b: LedgerBuilder) -> None:
        self.add("checkpoints", enc("Checkpoint", b.checkpoint()))


def genuine_ledger() -> tuple[LedgerBuilder, Records]:
    """~700 entries of 4 agents: sessions, action types, links resolved at once and later
    (a pending link whose target comes 5 entries after), checkpoints at uneven sizes."""
    b, r = LedgerBuilder(KEY), Records()
    agents = ("planner", "coder", "reviewer", "deployer")
    for i in range(700):
        agent = agents[i % 4]
        kw: dict[str, Any] = {"session_id": f"s-{i // 50}", "action_type": ("tool:search", "llm:call", "data:read")[i % 3],
                              "payload": {"i": i}}
        if i % 40 == 10:
            kw["event_id"] = f"future-{i}"
        links = []
        if i % 40 == 5:
            links.append(("coder", f"future-{i + 5}"))           # pending, resolved 5 entries later
        if i % 40 == 20 and b.entries:
            prev = b.entries[-3]["action"]
            links.append((prev["agent_id"], prev["event_id"]))     # resolved at once
        agent_for = "coder" if i % 40 == 10 else agent
        r.entries([b.entry(agent_for, links=links, **kw)])
        if i + 1 in (256, 300, 513, 640):
            r.checkpoint(b)
    r.checkpoint(b)  # covers all 700
    return b, r


@pytest.fixture(scope="module")
def ledger() -> tuple[LedgerBuilder, Records]:
    return genuine_ledger()


def tile_files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != ".tiles.lock"}


def run_index(root: Path, items: list[Record], batch: int | list[int] = 200, **kw: Any) -> IndexCore:
    core = IndexCore(IndexPaths.of(root), kw.pop("config", CONFIG), fsync=False, **kw)
    sizes = batch if isinstance(batch, list) else None
    i = 0
    while i < len(items):
        n = sizes.pop(0) if sizes else (batch if isinstance(batch, int) else 200)
        core.process(items[i:i + n])
        i += n
    return core


def snapshot(core: IndexCore) -> tuple[dict, dict]:
    return db.dump(core.conn), tile_files(core.paths.tiles_dir)


def test_rows_match_the_builder_and_tiles_give_the_rfc9162_root(ledger, tmp_path: Path) -> None:
    b, r = ledger
    core = run_index(tmp_path, r.items)
    try:
        rows = {row[0]: row for row in core.conn.execute(
            "SELECT seq, event_id, entry_hash, topic_offset, agent_id, agent_seq, session_id, action_type, time, "
            "checkpoint_size FROM entries")}
        assert len(rows) == len(b.entries) == core.indexed_size == 700
        cp_sizes = sorted(cp["tree_size"] for cp in b.checkpoints)
        for e in b.entries:
            a = e["action"]
            covering = min(s for s in cp_sizes if s > e["seq"])
            assert rows[e["seq"]] == (e["seq"], a["event_id"], e["entry_hash"], e["seq"], a["agent_id"],
                                      e["agent_seq"], a["session_id"], a["action_type"], e["received_at"], covering)
        # links: every action link, resolved ones with the target's seq (pending ones resolved later too)
        links = core.conn.execute("SELECT from_seq, to_event_id, to_seq FROM links ORDER BY from_seq").fetchall()
        want = []
        for e in b.entries:
            for link in e["action"]["links"]:
                want.append((e["seq"], link["event_id"], b.events[link["event_id"]][1]))
        assert links == want and any(row[2] > row[0] for row in links)  # one resolved after its source
        # checkpoints: all verified; tiles at the last one, its signed note as the checkpoint file
        assert [s for (s,) in core.conn.execute("SELECT status FROM checkpoints")] == ["verified"] * 5
        assert core.tiles_size == 700
        last = b.checkpoints[-1]
        note = mldsa_checkpoint_note(last["body"], last["origin"], KEY.public_key().raw, last["signature"])
        assert (tmp_path / "tiles" / "checkpoint").read_bytes() == note
        assert read_checkpoint(tmp_path / "tiles").root == mth_from_leaf_hashes(
            [hash_leaf(e["entry_hash"]) for e in b.entries]) == last["root_hash"]
        reader = TileReader(tmp_path / "tiles")
        assert [reader.leaf_data(i) for i in (0, 255, 256, 699)] == [b.entries[i]["entry_hash"] for i in (0, 255, 256, 699)]
        assert core.conn.execute("SELECT COUNT(*) FROM foreign_records").fetchone()[0] == 0
    finally:
        core.close()


def test_the_head_waits_for_confirmation_and_tiles_for_a_verified_checkpoint(ledger, tmp_path: Path) -> None:
    b, r = ledger
    entries_only = [rec for rec in r.items if rec[0] == "entries"][:400]
    cps = [rec for rec in r.items if rec[0] == "checkpoints"][:2]  # sizes 256, 300
    core = run_index(tmp_path, entries_only + cps)
    try:
        assert core.indexed_size == 399  # entry 399 is the tentative head until entry 400 or a checkpoint
        assert core.tiles_size == 300
        assert read_checkpoint(tmp_path / "tiles").size == 300
    finally:
        core.close()


def test_batching_and_interleaving_do_not_change_rows_or_tiles(ledger, tmp_path: Path) -> None:
    _, r = ledger
    reference = run_index(tmp_path / "ref", r.items, batch=len(r.items))
    want = snapshot(reference)
    reference.close()
    rng = random.Random(5)
    entries = [x for x in r.items if x[0] == "entries"]
    cps = [x for x in r.items if x[0] == "checkpoints"]
    mixed: list[Record] = []
    ei = ci = 0
    while ei < len(entries) or ci < len(cps):  # random interleaving, each topic in order
        if ci < len(cps) and (ei == len(entries) or rng.random() < 0.02):
            mixed.append(cps[ci]); ci += 1
        else:
            mixed.append(entries[ei]); ei += 1
    variants = {"checkpoints first": (cps + entries, 97), "batches of 1..60": (r.items, [rng.randint(1, 60) for _ in range(800)]),
                "random interleaving": (mixed, 33)}
    for name, (items, batch) in variants.items():
        core = run_index(tmp_path / name.replace(" ", "_"), items, batch=batch)
        try:
            got = snapshot(core)
            assert got[0] == want[0], name
            assert got[1] == want[1], name
        finally:
            core.close()


def tampered_ledger() -> tuple[LedgerBuilder, Records, dict[str, int]]:
    """300 genuine entries, then: an entry for seq 300 signed with a rogue key, a bit-flipped
    copy of genuine entry 300, genuine 300, a replay of genuine 150, a fork of 301 under the
    trusted key after genuine 301 (the chain goes on from genuine 301), random bytes, then
    genuine entries up to 400 and a checkpoint; a checkpoint signed by the rogue key too."""
    b, r = LedgerBuilder(KEY), Records()
    r.entries(b.many(300))
    r.checkpoint(b)
    where: dict[str, int] = {}
    rogue = b.copy()
    where["forged"] = r.add("entries", entry_bytes(rogue.entry("agent-a", key=ROGUE)))
    genuine_300 = b.entry("agent-b")
    where["flipped"] = r.add("entries", flip_inside(entry_bytes(genuine_300), genuine_300["action"]["event_id"].encode()))
    r.entries([genuine_300])
    where["replayed"] = r.add("entries", entry_bytes(b.entries[150]))
    genuine_301 = b.entry("agent-c")
    r.entries([genuine_301])
    where["fork"] = r.add("entries", entry_bytes(other_entry(genuine_301, KEY)))
    where["garbage"] = r.add("entries", b"\xc3\x01" + bytes(range(200)))
    r.entries(b.many(98))
    rogue_cp = b.checkpoint(key=ROGUE)
    b.checkpoints.pop()
    where["forged checkpoint"] = r.add("checkpoints", enc("Checkpoint", rogue_cp))
    r.checkpoint(b)
    return b, r, where


def test_foreign_records_are_kept_apart_and_never_given_a_seq(tmp_path: Path) -> None:
    b, r, where = tampered_ledger()
    seen: list[Finding] = []
    core = run_index(tmp_path, r.items, batch=50, on_findings=seen.extend)
    try:
        foreign = {(t, o): (k, s) for t, o, k, s in core.conn.execute(
            "SELECT topic, topic_offset, kind, claimed_seq FROM foreign_records")}
        assert foreign == {
            ("entries", where["forged"]): ("unknown_key", 300),
            ("entries", where["flipped"]): ("hash_mismatch", 300),
            ("entries", where["replayed"]): ("duplicate", 150),
            ("entries", where["fork"]): ("fork", 301),
            ("entries", where["garbage"]): ("undecodable", None),
            ("checkpoints", where["forged checkpoint"]): ("checkpoint_bad_signature", None),
        }
        rows = core.conn.execute("SELECT seq, entry_hash FROM entries ORDER BY seq").fetchall()
        assert rows == [(e["seq"], e["entry_hash"]) for e in b.entries] and len(rows) == 400
        offsets = {o for (o,) in core.conn.execute("SELECT topic_offset FROM entries")}
        assert not offsets & {o for (t, o) in foreign if t == "entries"}
        assert core.tiles_size == 400
        assert read_checkpoint(tmp_path / "tiles").root == b.checkpoints[-1]["root_hash"]
        kinds = {k for (k,) in core.conn.execute("SELECT kind FROM findings")}
        assert {"unknown_key", "hash_mismatch", "duplicate", "fork", "undecodable", "checkpoint_bad_signature"} <= kinds
        assert {f.kind.value for f in seen} == kinds  # the hook saw every finding stored
    finally:
        core.close()


class Boom(Exception):
    pass


def test_a_failure_before_the_commit_point_is_redone_without_gaps_or_duplicates(tmp_path: Path) -> None:
    """The findings hook fails on the batch that also verifies the last checkpoint: the tiles
    are already written, the database is not. Reopened, the index reads the batch again."""
    _, r, _ = tampered_ledger()
    reference = run_index(tmp_path / "ref", r.items, batch=50)
    want = snapshot(reference)
    reference.close()
    calls = {"n": 0}

    def failing(findings: list[Finding]) -> None:
        calls["n"] += 1
        if any(f.kind.value == "checkpoint_bad_signature" for f in findings):
            raise Boom()

    core = IndexCore(IndexPaths.of(tmp_path / "crash"), CONFIG, fsync=False, on_findings=failing)
    with pytest.raises(Boom):
        for i in range(0, len(r.items), 50):
            core.process(r.items[i:i + 50])
    committed = db.get_meta(core.conn, "tiles_size")
    assert read_checkpoint(tmp_path / "crash" / "tiles").size == 400 > committed  # tiles ran ahead
    with pytest.raises(RuntimeError):
        core.process(r.items[:1])  # unusable after a failed batch
    core.close()
    resumed = run_index(tmp_path / "crash", r.items, batch=50)
    try:
        assert snapshot(resumed) == want
    finally:
        resumed.close()


def test_deleted_tiles_are_rebuilt_from_the_database(ledger, tmp_path: Path) -> None:
    _, r = ledger
    core = run_index(tmp_path, r.items)
    want = snapshot(core)
    core.close()
    shutil.rmtree(tmp_path / "tiles")
    core = IndexCore(IndexPaths.of(tmp_path), CONFIG, fsync=False)
    try:
        assert snapshot(core) == want
    finally:
        core.close()


def test_an_index_built_under_other_trust_is_refused(ledger, tmp_path: Path) -> None:
    _, r = ledger
    run_index(tmp_path, r.items[:50]).close()
    with pytest.raises(ConfigError, match="reindex"):
        IndexCore(IndexPaths.of(tmp_path), CheckerConfig.from_keys([KEY.public_key(), ROGUE.public_key()]))


@pytest.mark.parametrize("batch", [200, [2, 200], [1, 1, 1, 200]], ids=["one-batch", "later-batch", "each-alone"])
def test_a_reused_event_id_keeps_the_first_entry_under_event_id(tmp_path: Path, batch: int | list[int]) -> None:
    b, r = LedgerBuilder(KEY), Records()
    r.entries([b.entry("a", event_id="same"), b.entry("b"), b.entry("a", event_id="same"), b.entry("c"),
               b.entry("b", event_id="same")])
    r.checkpoint(b)
    core = run_index(tmp_path, r.items, batch)
    try:
        assert core.conn.execute("SELECT seq, event_id, event_id_reused FROM entries ORDER BY seq").fetchall() == [
            (0, "same", None), (1, b.entries[1]["action"]["event_id"], None), (2, None, "same"),
            (3, b.entries[3]["action"]["event_id"], None), (4, None, "same")]
        assert core.conn.execute("SELECT agent_id, entries, last_seq FROM agents ORDER BY agent_id").fetchall() == [
            ("a", 2, 2), ("b", 2, 4), ("c", 1, 3)]
    finally:
        core.close()


def test_a_one_entry_gap_keeps_the_tiles_exact(tmp_path: Path) -> None:
    """A missing entry whose hash the next entry's prev_hash names: a ``missing`` row, a gap
    finding, and tiles that still match the signer's checkpoint."""
    b, r = LedgerBuilder(KEY), Records()
    r.entries(b.many(10))
    skipped = b.skip()
    r.entries(b.many(10))
    r.checkpoint(b)
    core = run_index(tmp_path, r.items)
    try:
        assert core.conn.execute("SELECT seq, entry_hash FROM missing").fetchall() == [(10, skipped["entry_hash"])]
        assert core.conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 20
        assert core.indexed_size == core.tiles_size == 21
        assert read_checkpoint(tmp_path / "tiles").root == b.checkpoints[-1]["root_hash"]
        assert [k for (k,) in core.conn.execute("SELECT kind FROM findings")] == ["gap"]
    finally:
        core.close()


def test_the_writer_keeps_a_bounded_page_cache_and_fewer_wal_checkpoints(tmp_path: Path) -> None:
    """The follower's connection: 64 MiB of cache and 10,000-page WAL checkpoints (SQLite's
    defaults are 2 MiB and 1,000, measured 1.27x slower at 500k entries); a reader keeps the
    defaults, so a dashboard does not hold another 64 MiB."""
    path = tmp_path / "index.sqlite"
    writer = db.open_db(path)
    reader = db.open_db(path, readonly=True)
    try:
        assert writer.execute("PRAGMA cache_size").fetchone()[0] == -64 * 1024
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 10_000
        assert reader.execute("PRAGMA cache_size").fetchone()[0] == -2000  # SQLite's default
    finally:
        reader.close()
        writer.close()


def test_the_follower_fixes_the_mmap_threshold_before_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decision D41: the follower's RSS must not depend on the blocks glibc has seen freed."""
    from ledgerstream.index import follower

    calls: list[str] = []
    monkeypatch.setattr(follower.procinfo, "fix_mmap_threshold", lambda: calls.append("mallopt") or True)

    class Follower:
        def __init__(self, settings: object) -> None:
            calls.append("init")

        def request_stop(self, *_: object) -> None:
            pass

        def run(self) -> int:
            calls.append("run")
            return 0

    monkeypatch.setattr(follower, "IndexFollower", Follower)
    assert follower.run_follower(None) == 0  # type: ignore[arg-type]
    assert calls == ["mallopt", "init", "run"]


def test_a_checkpoint_claiming_entries_that_never_come_is_judged_and_stops_nothing(tmp_path: Path) -> None:
    """A checkpoint signed by the trusted key over 310 entries of which only 300 are ever
    written waits for them; the genuine checkpoint of size 300 behind it waits too (arrival
    order), so the tiles stay at 0 until the follower says every entry committed before both
    was fed. Then the first is failed as checkpoint_root_mismatch (docs/alerts.md) and the
    second verified: tiles at 300."""
    b, r = LedgerBuilder(KEY), Records()
    for i in range(310):
        b.entry(("planner", "coder")[i % 2], payload={"i": i})
    r.entries(b.entries[:300])
    r.add("checkpoints", enc("Checkpoint", b.checkpoint()))             # size 310: entries 300.. never come
    r.add("checkpoints", enc("Checkpoint", b.checkpoint(size=300)))
    core = run_index(tmp_path, r.items)
    try:
        assert (core.tiles_size, core.indexed_size, core.checker.queued_checkpoints) == (0, 299, 2)
        assert core.expire_checkpoints(0).findings == [] and core.checker.queued_checkpoints == 2
        result = core.expire_checkpoints(2)
        assert [(f.kind.value, f.seq_from, f.seq_to) for f in result.findings] == [
            ("checkpoint_root_mismatch", 300, 309)]
        assert (result.tiles_size, result.indexed_size, core.checker.queued_checkpoints) == (300, 300, 0)
        assert core.conn.execute("SELECT topic_offset, tree_size, status, finding FROM checkpoints "
                                 "ORDER BY topic_offset").fetchall() == [
            (0, 310, "failed", "checkpoint_root_mismatch"), (1, 300, "verified", None)]
        assert read_checkpoint(tmp_path / "tiles").root == mth_from_leaf_hashes(
            [hash_leaf(e["entry_hash"]) for e in b.entries[:300]])
        assert core.conn.execute(
            "SELECT COUNT(*) FROM findings WHERE kind = 'checkpoint_root_mismatch'").fetchone()[0] == 1
    finally:
        core.close()
    reopened = IndexCore(IndexPaths.of(tmp_path), CONFIG, fsync=False)  # the judgement was committed
    try:
        assert (reopened.tiles_size, reopened.checker.queued_checkpoints) == (300, 0)
    finally:
        reopened.close()


def test_the_follower_keeps_checkpoint_marks_only_for_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A caught-up follower with nothing waiting still forgets marks older than the wait (one
    per batch that read checkpoints would otherwise pile up for ever) and names the offset
    handed a wait ago once something waits (the verifier's rule, docs/index.md)."""
    from types import SimpleNamespace

    from ledgerstream.index import follower as follower_module

    clock = [1000.0]
    monkeypatch.setattr(follower_module.time, "monotonic", lambda: clock[0])
    f = follower_module.IndexFollower.__new__(follower_module.IndexFollower)
    f.s = SimpleNamespace(checkpoint_wait_seconds=30.0)
    f._at_eof = {"entries": True, "checkpoints": True}
    f._handed = follower_module.deque([(clock[0], 0)])
    checker = SimpleNamespace(queued_checkpoints=0)
    f.core = SimpleNamespace(next_offset={"checkpoints": 0}, checker=checker)
    for offset in range(1, 10_001):  # 10,000 batches, one per second, nothing waiting
        clock[0] += 1.0
        f.core.next_offset = {"checkpoints": offset}
        assert f._overdue_before() == 0
    assert len(f._handed) <= 32
    checker.queued_checkpoints = 1
    assert f._overdue_before() == 10_000 - 30  # handed 30 s ago


def test_the_next_batch_is_fed_while_the_previous_one_commits(ledger, tmp_path: Path) -> None:
    """D50: ``feed`` hands a batch's commit to the writer thread and returns; the next ``feed``
    runs the Checker while that commit is still in flight (held here), then waits for it. The
    second batch links to an entry of the first (entry 220 -> 217), which only the in-flight
    generation of the history knows. Committed sizes move only with commits, and the index
    ends equal to one built batch by batch."""
    _, r = ledger
    reference = run_index(tmp_path / "ref", r.items, batch=219)
    want = snapshot(reference)
    reference.close()
    core = IndexCore(IndexPaths.of(tmp_path / "pipe"), CONFIG, fsync=False)
    writing, release = threading.Event(), threading.Event()
    write = core._write

    def held(*args: Any) -> int:
        writing.set()
        assert release.wait(30)
        return write(*args)

    core._write = held  # type: ignore[method-assign]
    try:
        first = core.feed(r.items[:219])
        assert writing.wait(30)
        fed: list[Any] = []
        second = threading.Thread(target=lambda: fed.append(core.feed(r.items[219:438])))
        second.start()
        deadline = time.monotonic() + 30
        while core.checker.tree.size < 400 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert core.checker.tree.size >= 400  # batch 2 fed while batch 1 is not committed
        assert second.is_alive() and core.indexed_size == 0 and first.indexed_size == 0
        with closing(db.open_db(core.paths.db, readonly=True)) as reader:
            assert reader.execute("SELECT COUNT(*) FROM entries").fetchone() == (0,)
        release.set()
        second.join(30)
        assert fed and 0 < first.indexed_size <= 219
        core.drain()
        assert core.indexed_size == fed[0].indexed_size >= 400
        for i in range(438, len(r.items), 219):
            core.feed(r.items[i:i + 219])
        core.drain()
        assert snapshot(core) == want
        assert not core.conn.execute("SELECT 1 FROM findings").fetchall()
    finally:
        release.set()
        core.close()
