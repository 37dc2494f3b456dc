"""``ledgerstream index run`` / ``index status`` as a user runs them, against the real broker.

Genuine signed ledgers are built with tests/support/ledger_builder.py (entries signed in
batches on two threads to keep the build short) and written in Kafka transactions like the
signer's. The rows are checked against the records decoded here with ``codec``, the tiles
against an RFC 9162 root computed here (tests/support/rfc9162_checker.py, no project
Merkle code); then foreign records, determinism of a rebuild, five ``kill -9`` at random
moments on a 20,000-entry ledger, following new records and a graceful SIGTERM.
"""
from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ledgerstream.core import mldsa, records
from ledgerstream.core.wire import codec
from ledgerstream.core.alert_signature import Authenticity, VerifierKey, check_alert
from ledgerstream.core.config import Topics
from ledgerstream.core.topic_reader import read_partition
from ledgerstream.stack.topics import ensure_topics
from support.ledger_builder import LedgerBuilder, LedgerWriter, RogueProducer, enc, entry_bytes, flip_inside, other_entry
from support.rfc9162_checker import hash_leaf, mth_from_leaf_hashes
from support.signed_notes import mldsa_checkpoint_note
from support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = mldsa.PrivateKey.from_seed(bytes(range(32)))
ROGUE = mldsa.PrivateKey.from_seed(bytes(range(7, 39)))
BIG = 20_000
CHECKPOINT_EVERY = 1_000
STATUS_KEYS = {"indexed_size": int, "lag": int, "tiles_dir": str, "foreign": int}


# --- ledgers -----------------------------------------------------------------------------------

class Ledger:
    """A genuine signed ledger: entry records and a checkpoint record every 1,000 entries."""

    def __init__(self, n: int) -> None:
        self.builder = b = LedgerBuilder(KEY, signing_mode="checkpoint")  # signed below, in batches
        agents = ("planner", "coder", "reviewer", "deployer", "auditor")
        self.cps: dict[int, dict[str, Any]] = {}
        for i in range(n):
            links = []
            if i % 50 == 49:
                target = b.entries[i - 7]["action"]
                links.append((target["agent_id"], target["event_id"]))
            b.entry(agents[i % 5], links=links, session_id=f"session-{i // 200}" if i % 3 else None,
                    action_type=("tool:search", "llm:call", "data:read", "data:delete:users")[i % 4],
                    payload={"i": i})
            if (i + 1) % CHECKPOINT_EVERY == 0:
                self.cps[i + 1] = b.checkpoint()
        messages = [records.entry_signing_message(e["entry_hash"]) for e in b.entries]
        with ThreadPoolExecutor(2) as pool:
            chunks = [messages[i:i + 500] for i in range(0, len(messages), 500)]
            signatures = [s for chunk in pool.map(KEY.sign_many, chunks) for s in chunk]
        for e, s in zip(b.entries, signatures):
            e["signature"] = s
        self.raw = [entry_bytes(e) for e in b.entries]

    def write(self, writer: LedgerWriter, start: int, end: int) -> None:
        """Entries [start, end) in transactions of 1,000 with the checkpoint at each multiple."""
        for lo in range(start, end, CHECKPOINT_EVERY):
            hi = min(end, lo + CHECKPOINT_EVERY)
            cp = [enc("Checkpoint", self.cps[hi])] if hi in self.cps else []
            writer.commit(self.raw[lo:hi], cp)


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return Ledger(BIG)


def new_topics(bootstrap: str) -> Topics:
    t = Topics.with_prefix(f"t{uuid.uuid4().hex[:10]}.")
    ensure_topics(bootstrap, t)
    return t


def prefix(topics: Topics) -> str:
    return topics.entries[: -len("entries")]


def make_home(root: Path) -> Path:
    """A home as the dev stack lays it out for trust: HOME/keys/signer.pub.pem."""
    (root / "keys").mkdir(parents=True, exist_ok=True)
    (root / "keys" / "signer.pub.pem").write_bytes(mldsa.public_key_pem(KEY.public_key()))
    return root


def cli_env(home: Path) -> dict[str, str]:
    env = dict(os.environ, LEDGERSTREAM_HOME=str(home), PYTHONUNBUFFERED="1")
    for name in ("LEDGERSTREAM_BOOTSTRAP", "LEDGERSTREAM_KAFKA_CONFIG"):
        env.pop(name, None)
    return env


def cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ledgerstream.cli.main", *args], env=cli_env(home),
                          capture_output=True, text=True, timeout=timeout)


def index_args(bootstrap: str, topics: Topics, home: Path) -> list[str]:
    return ["--bootstrap", bootstrap, "--topic-prefix", prefix(topics), "--home", str(home)]


def run_once(bootstrap: str, topics: Topics, home: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = cli(home, "index", "run", "--once", *index_args(bootstrap, topics, home), *extra, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def status(bootstrap: str, topics: Topics, home: Path, *extra: str) -> dict[str, Any]:
    proc = cli(home, "index", "status", "--json", *index_args(bootstrap, topics, home), *extra)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    for key, kind in STATUS_KEYS.items():
        assert type(doc[key]) is kind, (key, doc[key])
    assert "tlog_url" in doc and doc["tlog_url"] is None
    return doc


def rows(home: Path) -> dict[str, list[tuple]]:
    """Every table of the read model, ordered by all its columns (the resume state excluded)."""
    conn = sqlite3.connect(f"file:{home / 'index' / 'index.sqlite'}?mode=ro", uri=True)
    try:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                  if t not in ("meta", "checker_journal")]
        out = {}
        for table in tables:
            ncols = len(conn.execute(f"SELECT * FROM {table} LIMIT 0").description)
            order = ", ".join(str(i) for i in range(1, ncols + 1))
            out[table] = conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
        return out
    finally:
        conn.close()


def tile_files(tiles: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tiles)): p.read_bytes() for p in sorted(tiles.rglob("*"))
            if p.is_file() and p.name != ".tiles.lock"}


def read_status_file(home: Path) -> dict[str, Any]:
    try:
        return json.loads((home / "index" / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def committed_size(home: Path) -> int:
    """The index's committed size as its database says now (the status file lags a little)."""
    try:
        conn = sqlite3.connect(f"file:{home / 'index' / 'index.sqlite'}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'indexed_size'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
    return 0 if row is None else int(row[0])


# --- tests -------------------------------------------------------------------------------------

def test_a_genuine_ledger_against_an_independent_oracle_then_following_and_sigterm(
        bootstrap: str, ledger: Ledger, tmp_path: Path) -> None:
    topics = new_topics(bootstrap)
    writer = LedgerWriter(bootstrap, topics)
    ledger.write(writer, 0, 3000)
    home = make_home(tmp_path / "home")

    before = status(bootstrap, topics, home)
    assert (before["indexed_size"], before["lag"], before["foreign"]) == (0, 3000, 0)
    assert before["tiles_dir"] == str(home / "tiles")
    run_once(bootstrap, topics, home)
    after = status(bootstrap, topics, home)
    assert (after["indexed_size"], after["lag"], after["tiles_size"], after["foreign"]) == (3000, 0, 3000, 0)
    human = cli(home, "index", "status", *index_args(bootstrap, topics, home))
    assert human.returncode == 0 and "indexed:   3000 entries" in human.stdout and "lag:       0" in human.stdout

    # following: new records are indexed as they come; SIGTERM stops it cleanly
    follower = subprocess.Popen([sys.executable, "-m", "ledgerstream.cli.main", "index", "run",
                                 *index_args(bootstrap, topics, home), "--status-seconds", "0.2"],
                                env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: read_status_file(home).get("pid") == follower.pid, 60, "the follower to start")
        ledger.write(writer, 3000, 4000)
        wait_until(lambda: read_status_file(home).get("tiles_size") == 4000, 60, "entries 3000..3999 indexed")
        follower.send_signal(signal.SIGTERM)
        assert follower.wait(30) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
    out = follower.stdout.read()
    assert "stopped at seq 4000" in out, out[-2000:]
    assert read_status_file(home)["running"] is False

    # the oracle: every committed record decoded here
    topic_entries = list(read_partition(bootstrap, topics.entries))
    decoded = [(offset, raw, codec.decode(raw, expect="LedgerEntry")[1]) for offset, raw in topic_entries]
    assert len(decoded) == 4000
    cp_sizes = sorted(codec.decode(raw, expect="Checkpoint")[1]["tree_size"]
                      for _, raw in read_partition(bootstrap, topics.checkpoints))
    got = rows(home)
    want = []
    for offset, raw, e in decoded:
        a = e["action"]
        want.append((e["seq"], a["event_id"], e["entry_hash"], offset, a["agent_id"], e["agent_seq"], a["session_id"],
                     a["action_type"], e["received_at"], min(s for s in cp_sizes if s > e["seq"])))
    conn = sqlite3.connect(f"file:{home / 'index' / 'index.sqlite'}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT seq, event_id, entry_hash, topic_offset, agent_id, agent_seq, session_id, "
                            "action_type, time, checkpoint_size FROM entries ORDER BY seq").fetchall() == want
        assert conn.execute("SELECT tree_size, status FROM checkpoints ORDER BY tree_size").fetchall() == [
            (s, "verified") for s in cp_sizes]
        links = conn.execute("SELECT from_seq, to_event_id, to_seq FROM links ORDER BY from_seq").fetchall()
        seq_of = {e["action"]["event_id"]: e["seq"] for _, _, e in decoded}
        assert links == [(e["seq"], link["event_id"], seq_of[link["event_id"]])
                         for _, _, e in decoded for link in e["action"]["links"]]
        assert len(links) == 80
    finally:
        conn.close()
    assert got["foreign_records"] == [] and got["findings"] == []
    tiles = home / "tiles"
    root = mth_from_leaf_hashes([hash_leaf(e["entry_hash"]) for _, _, e in decoded])
    note = (tiles / "checkpoint").read_bytes()
    last = ledger.cps[4000]
    assert note == mldsa_checkpoint_note(last["body"], last["origin"], KEY.public_key().raw, last["signature"])
    assert note.split(b"\n")[2] == base64.b64encode(root)

    # raw bytes by offset, checked against the index
    from ledgerstream.index import query

    conn = query.open_index(home)
    try:
        entries = [query.entry_by_seq(conn, s) for s in (0, 1234, 3999)]
        raw = query.raw_entries(conn, entries, bootstrap, topics.entries)
        assert raw == {s: topic_entries[s][1] for s in (0, 1234, 3999)}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def tampered(bootstrap: str, ledger: Ledger) -> tuple[Topics, dict[str, int]]:
    """Genuine 0..999, an entry for seq 1000 signed with another ML-DSA key, a bit-flipped
    copy of genuine entry 1000, then genuine 1000..1999: on the real entries topic."""
    topics = new_topics(bootstrap)
    writer = LedgerWriter(bootstrap, topics)
    ledger.write(writer, 0, 1000)
    rogue = RogueProducer(bootstrap)
    genuine = ledger.builder.entries[1000]
    where = {"forged": rogue.send(topics.entries, entry_bytes(other_entry(genuine, ROGUE)))[1],
             "flipped": rogue.send(topics.entries, flip_inside(ledger.raw[1000], genuine["action"]["event_id"].encode()))[1]}
    ledger.write(writer, 1000, 2000)
    return topics, where


def test_forged_and_bit_flipped_records_are_foreign_and_indexing_goes_on(
        bootstrap: str, ledger: Ledger, tampered: tuple[Topics, dict[str, int]], tmp_path: Path) -> None:
    topics, where = tampered
    home = make_home(tmp_path / "home")
    index_key = mldsa.PrivateKey.generate()  # where dev up puts the index's alert key
    mldsa.save_private_key(index_key, home / "keys" / "verifier-index.pem")
    tiles = tmp_path / "served" / "tiles"
    run_once(bootstrap, topics, home, "--tiles-dir", str(tiles))
    got = rows(home)
    foreign = {(r[0], r[1]): (r[2], r[4]) for r in got["foreign_records"]}
    assert foreign == {("entries", where["forged"]): ("unknown_key", 1000),
                       ("entries", where["flipped"]): ("hash_mismatch", 1000)}
    seqs = [(r[0], r[3], r[4]) for r in got["entries"]]  # seq, entry_hash, topic offset
    assert [(s, h) for s, h, _ in seqs] == [(e["seq"], e["entry_hash"]) for e in ledger.builder.entries[:2000]]
    assert {o for _, _, o in seqs}.isdisjoint(o for (_, o) in foreign)
    assert {r[1] for r in got["findings"]} == {"unknown_key", "hash_mismatch"}
    doc = status(bootstrap, topics, home, "--tiles-dir", str(tiles))
    assert (doc["indexed_size"], doc["lag"], doc["foreign"], doc["tiles_size"]) == (2000, 0, 2, 2000)
    assert doc["tiles_dir"] == str(tiles) and not (home / "tiles").exists()
    assert doc["findings"] == {"hash_mismatch": 1, "unknown_key": 1}
    assert doc["follower"]["alerts_topic"] == topics.alerts
    # the same two findings were published as alerts, signed with the index's key
    alerts = [codec.decode(value, expect="Alert")[1] for partition in range(3)
              for _, value in read_partition(bootstrap, topics.alerts, partition)]
    assert sorted((a["verifier_id"], a["kind"], a["evidence"]["offset"]) for a in alerts) == sorted(
        [("index", "unknown_key", str(where["forged"])), ("index", "hash_mismatch", str(where["flipped"]))])
    trusted = {index_key.public_key().key_id: VerifierKey("index", index_key.public_key())}
    assert [check_alert(a, trusted).verdict for a in alerts] == [Authenticity.VERIFIED] * 2
    assert {a["alert_id"] for a in alerts} == {r[0] for r in got["findings"]}
    assert (tiles / "checkpoint").read_bytes().split(b"\n")[2] == base64.b64encode(
        mth_from_leaf_hashes([hash_leaf(e["entry_hash"]) for e in ledger.builder.entries[:2000]]))


def test_a_rebuild_from_kafka_gives_identical_rows_and_tile_bytes(
        bootstrap: str, tampered: tuple[Topics, dict[str, int]], tmp_path: Path) -> None:
    topics, _ = tampered
    home = make_home(tmp_path / "home")
    run_once(bootstrap, topics, home, "--batch-size", "300")
    first_rows, first_tiles = rows(home), tile_files(home / "tiles")
    assert len(first_rows["entries"]) == 2000 and "checkpoint" in first_tiles
    shutil.rmtree(home / "index")
    shutil.rmtree(home / "tiles")
    run_once(bootstrap, topics, home, "--batch-size", "777")
    assert rows(home) == first_rows
    assert tile_files(home / "tiles") == first_tiles
    run_once(bootstrap, topics, home, "--reindex")
    assert rows(home) == first_rows
    assert tile_files(home / "tiles") == first_tiles


def test_five_kill9_at_random_moments_then_the_same_end_state(
        bootstrap: str, ledger: Ledger, tmp_path: Path) -> None:
    topics = new_topics(bootstrap)
    ledger.write(LedgerWriter(bootstrap, topics), 0, BIG)
    reference = make_home(tmp_path / "reference")
    started = time.monotonic()
    run_once(bootstrap, topics, reference)
    elapsed = time.monotonic() - started
    print(f"\nindex run --once over {BIG} entries: {elapsed:.1f}s wall, {BIG / elapsed:.0f} entries/s "
          f"(process start included; the follower's own rate: {read_status_file(reference).get('entries_per_second')})")
    want_rows, want_tiles = rows(reference), tile_files(reference / "tiles")
    assert len(want_rows["entries"]) == BIG and want_rows["foreign_records"] == []
    rate = max(read_status_file(reference).get("entries_per_second") or 0.0, BIG / elapsed)

    home = make_home(tmp_path / "crashed")
    seed = int(time.time())
    rng = random.Random(seed)
    # random moments spread over the run: once the follower has passed a random seq, plus a
    # random fraction of a batch's time (the kill lands anywhere in feeding, tiles, commit)
    reached, passed = [], []
    for _ in range(5):
        # each run gets somewhere first (its target a random step past the last kill), and is
        # killed well before the end (a kill overshoots its target by a batch or two)
        target = (reached[-1] if reached else 0) + rng.randint(300, 1500)
        passed.append(target)
        proc = subprocess.Popen([sys.executable, "-m", "ledgerstream.cli.main", "index", "run", "--once",
                                 *index_args(bootstrap, topics, home), "--status-seconds", "0.1",
                                 "--batch-size", "1000"],  # 20 commits: kills land between many of them
                                env=cli_env(home), stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"kill-{target}.log", "w"))
        try:
            wait_until(lambda: committed_size(home) >= target or proc.poll() is not None,
                       120, f"the follower to pass seq {target}", poll=0.01)
            # a batch at most at the reference's rate, and half the time the rest of the run
            # takes: the kill lands before the end however fast the follower is
            time.sleep(rng.uniform(0.0, min(0.4, 1000 / rate, (BIG - 1000 - target) / rate / 2)))
            assert proc.poll() is None, (tmp_path / f"kill-{target}.log").read_text()[-3000:]
        finally:
            proc.kill()  # SIGKILL
            proc.wait()
        conn = sqlite3.connect(home / "index" / "index.sqlite")
        reached.append(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
        conn.close()
    print(f"seed {seed}: killed past seqs {passed}; entries committed at each kill: {reached}")
    assert len(reached) == 5 and reached == sorted(reached) and reached[-1] < BIG
    run_once(bootstrap, topics, home)
    assert rows(home) == want_rows
    assert tile_files(home / "tiles") == want_tiles


def test_a_follower_far_behind_holds_the_checkpoint_topic_back_and_loses_none_of_it(
        bootstrap: str, ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """D48: every checkpoint of a ledger already written is fetched before most of its
    entries. With a read-ahead of 2 the Checker never holds more than 2 of them, the topic is
    held back and read again where it stopped, and the index is the same as one built
    without a bound (the CLI's default, 256, never reached by 20 checkpoints)."""
    from ledgerstream.core.config import CHECKPOINT_READ_AHEAD
    from ledgerstream.core.verify import checker_config
    from ledgerstream.index import follower as follower_module
    from ledgerstream.index.paths import IndexPaths

    assert CHECKPOINT_READ_AHEAD > len(ledger.cps)
    topics = new_topics(bootstrap)
    ledger.write(LedgerWriter(bootstrap, topics), 0, BIG)
    reference = make_home(tmp_path / "reference")
    run_once(bootstrap, topics, reference)
    assert read_status_file(reference)["checkpoint_holds"] == 0

    waiting: list[int] = []
    feed = follower_module.IndexCore.feed

    def observed(core: Any, batch: Any) -> Any:  # how many checkpoint records wait after each batch
        result = feed(core, batch)
        waiting.append(core.checker.queued_checkpoints)
        return result

    monkeypatch.setattr(follower_module.IndexCore, "feed", observed)
    for name in ("LEDGERSTREAM_BOOTSTRAP", "LEDGERSTREAM_KAFKA_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    home = make_home(tmp_path / "bounded")
    follower = follower_module.IndexFollower(follower_module.IndexSettings(
        home=home, bootstrap=bootstrap, topics=topics, checker=checker_config(home), paths=IndexPaths.of(home),
        once=True, batch_size=500, checkpoint_read_ahead=2, watchdog_seconds=0))
    assert follower.run() == follower_module.EXIT_OK
    assert follower.checkpoint_holds >= 1 and max(waiting) <= 2, (follower.checkpoint_holds, waiting)
    assert read_status_file(home)["checkpoint_holds"] == follower.checkpoint_holds
    got = rows(home)
    assert [r[1] for r in got["checkpoints"]] == sorted(ledger.cps)  # every checkpoint, once
    assert got == rows(reference)
    assert tile_files(home / "tiles") == tile_files(reference / "tiles")


def test_a_checkpoint_claiming_entries_that_never_come_does_not_stop_the_tiles(
        bootstrap: str, tmp_path: Path) -> None:
    """A checkpoint under the trusted key over 310 entries, of which only 300 are ever
    written, then the genuine checkpoint of size 300 (which waits behind it, arrival
    order). ``--once`` judges it at its end (D21: every entry it could cover was read);
    a following index once the entries' end has lasted ``--checkpoint-wait-seconds``.
    Either way: reported as checkpoint_root_mismatch, and the tiles reach 300."""
    b = LedgerBuilder(KEY)
    for i in range(310):
        b.entry(("planner", "coder")[i % 2], payload={"i": i})
    topics = new_topics(bootstrap)
    beyond, genuine = b.checkpoint(), b.checkpoint(size=300)
    LedgerWriter(bootstrap, topics).commit([entry_bytes(e) for e in b.entries[:300]],
                                           [enc("Checkpoint", beyond), enc("Checkpoint", genuine)])

    def judged(home: Path) -> None:
        after = status(bootstrap, topics, home)
        assert (after["indexed_size"], after["tiles_size"]) == (300, 300), after
        assert after["findings"] == {"checkpoint_root_mismatch": 1}, after
        assert [(r[1], r[10], r[11]) for r in rows(home)["checkpoints"]] == [
            (310, "failed", "checkpoint_root_mismatch"), (300, "verified", None)]

    once = make_home(tmp_path / "once")
    run_once(bootstrap, topics, once)
    judged(once)

    home = make_home(tmp_path / "following")
    follower = subprocess.Popen([sys.executable, "-m", "ledgerstream.cli.main", "index", "run",
                                 *index_args(bootstrap, topics, home), "--status-seconds", "0.2",
                                 "--checkpoint-wait-seconds", "2"],
                                env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: read_status_file(home).get("indexed_size") == 299, 60, "entries indexed")
        started = time.monotonic()
        wait_until(lambda: read_status_file(home).get("tiles_size") == 300, 60, "the checkpoints judged")
        assert time.monotonic() - started > 1.0  # not before the wait
        follower.send_signal(signal.SIGTERM)
        assert follower.wait(30) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
    judged(home)
