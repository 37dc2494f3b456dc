"""``show`` and ``prove`` answered from the ledger index and its tiles, on the real broker.

The oracle is independent: entry hashes and roots from the ledger built here
(tests/support/ledger_builder.py), RFC 9162 roots and proof checks from
tests/support/rfc9162_checker.py (no project Merkle code). The index path must never read
the whole topic (the full-read fallback is made to fail), must never show a forged record as
an entry, and must say so, quickly, when the index lags the ledger.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledgerstream.core import mldsa, records
from ledgerstream.core.config import Topics
from ledgerstream.index.paths import IndexPaths
from ledgerstream.index.status import follower_alive
from ledgerstream.tools import ledger_answers
from support.ledger_builder import LedgerBuilder, LedgerWriter, enc, entry_bytes
from support.waiting import wait_until
from support.rfc9162_checker import ProofFailed, hash_leaf, mth_from_leaf_hashes, verify_consistency, verify_inclusion

pytestmark = pytest.mark.integration

KEY = mldsa.PrivateKey.from_seed(bytes(range(1, 33)))
ROGUE = mldsa.PrivateKey.from_seed(bytes(range(9, 41)))
GENUINE = 600


def prefix(topics: Topics) -> str:
    return topics.entries[: -len("entries")]


def cli(home: Path, topics: Topics, bootstrap: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, LEDGERSTREAM_HOME=str(home), LEDGERSTREAM_BOOTSTRAP=bootstrap,
               LEDGERSTREAM_TOPIC_PREFIX=prefix(topics), PYTHONUNBUFFERED="1")
    env.pop("LEDGERSTREAM_KAFKA_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "ledgerstream.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def index_once(home: Path, topics: Topics, bootstrap: str) -> None:
    proc = cli(home, topics, bootstrap, "index", "run", "--once", "--topic-prefix", prefix(topics), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def leaf_hashes(builder: LedgerBuilder, size: int) -> list[bytes]:
    return [hash_leaf(records.merkle_leaf_input(bytes(e["entry_hash"]))) for e in builder.entries[:size]]


@pytest.fixture()
def ledger(bootstrap: str, topics: Topics, tmp_path: Path) -> dict:
    """600 genuine signed entries with checkpoints at 256 and 600, indexed once."""
    builder = LedgerBuilder(KEY)
    for i in range(GENUINE):
        builder.entry(("planner", "coder", "auditor")[i % 3], payload={"i": i})
    writer = LedgerWriter(bootstrap, topics)
    landed = writer.commit([entry_bytes(e) for e in builder.entries[:256]], [enc("Checkpoint", builder.checkpoint(size=256))])
    landed += writer.commit([entry_bytes(e) for e in builder.entries[256:]], [enc("Checkpoint", builder.checkpoint())])
    offsets = [o for t, o in landed if t == topics.entries]
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    (home / "keys" / "signer.pub.pem").write_bytes(mldsa.public_key_pem(KEY.public_key()))
    index_once(home, topics, bootstrap)
    return {"builder": builder, "writer": writer, "home": home, "offsets": offsets}


def test_show_and_proofs_come_from_the_index_and_match_an_independent_oracle(
        ledger: dict, bootstrap: str, topics: Topics, monkeypatch: pytest.MonkeyPatch) -> None:
    builder, home = ledger["builder"], ledger["home"]

    def full_read(*_: object, **__: object) -> None:
        raise AssertionError("the whole topic was read although an index exists")

    monkeypatch.setattr(ledger_answers, "load_ledger", full_read)
    root = mth_from_leaf_hashes(leaf_hashes(builder, GENUINE))
    for seq in (0, 255, 256, 599):
        entry, offset = ledger_answers.entry(home, bootstrap, topics, seq, wait=0)
        assert bytes(entry["entry_hash"]) == bytes(builder.entries[seq]["entry_hash"])
        assert offset == ledger["offsets"][seq]
        proof = ledger_answers.inclusion(home, bootstrap, topics, seq, None, wait=0)
        assert (proof["tree_size"], bytes.fromhex(proof["root_hash"])) == (GENUINE, root)
        path = [bytes.fromhex(h) for h in proof["audit_path"]]
        verify_inclusion(bytes.fromhex(proof["leaf_hash"]), seq, GENUINE, path, root)
        if path:
            with pytest.raises(ProofFailed):
                verify_inclusion(bytes.fromhex(proof["leaf_hash"]), seq, GENUINE, path[:-1] + [bytes(32)], root)
    older = ledger_answers.inclusion(home, bootstrap, topics, 17, 100, wait=0)  # a size between checkpoints
    verify_inclusion(bytes.fromhex(older["leaf_hash"]), 17, 100, [bytes.fromhex(h) for h in older["audit_path"]],
                     mth_from_leaf_hashes(leaf_hashes(builder, 100)))
    c = ledger_answers.consistency(home, bootstrap, topics, 37, GENUINE, wait=0)
    assert bytes.fromhex(c["first_root"]) == mth_from_leaf_hashes(leaf_hashes(builder, 37))
    verify_consistency(37, GENUINE, bytes.fromhex(c["first_root"]), root, [bytes.fromhex(h) for h in c["consistency_path"]])
    listed = ledger_answers.checkpoints(home, bootstrap, topics)
    assert [(c["tree_size"], c["root_hash"], c["anchored"]) for c in listed] == [
        (256, mth_from_leaf_hashes(leaf_hashes(builder, 256)).hex(), False), (GENUINE, root.hex(), False)]
    # the CLI as a user runs it: same document, key material for an offline check
    shown = json.loads(cli(home, topics, bootstrap, "show", "--seq", "7", "--json").stdout)
    assert shown["entry_hash"] == bytes(builder.entries[7]["entry_hash"]).hex() and shown["offset"] == ledger["offsets"][7]
    mldsa.load_public_key(mldsa.public_key_pem(KEY.public_key())).verify(
        bytes.fromhex(shown["signature_hex"]), bytes.fromhex(shown["signed_message_hex"]))


def test_forged_records_are_never_answered_and_a_lagging_index_says_so(
        ledger: dict, bootstrap: str, topics: Topics) -> None:
    builder, home, writer = ledger["builder"], ledger["home"], ledger["writer"]
    genuine_root = mth_from_leaf_hashes(leaf_hashes(builder, GENUINE))
    forged = builder.copy()
    forged.entry("planner", payload={"forged": True}, key=ROGUE)  # continues the chain, other key
    writer.commit([entry_bytes(forged.entries[-1])], [enc("Checkpoint", forged.checkpoint(key=ROGUE)),
                                                      enc("Checkpoint", forged.checkpoint(size=256, key=ROGUE))])
    index_once(home, topics, bootstrap)
    listed = json.loads(cli(home, topics, bootstrap, "checkpoints", "list", "--json").stdout)
    assert [c["tree_size"] for c in listed] == [256, GENUINE]
    assert {c["key_id"] for c in listed} == {KEY.public_key().key_id}
    proc = cli(home, topics, bootstrap, "checkpoints", "export", "--tree-size", str(GENUINE + 1), "--out",
               str(home / "forged-export"), "--wait", "0")
    assert proc.returncode == 1 and not (home / "forged-export").exists(), proc.stderr
    proc = cli(home, topics, bootstrap, "checkpoints", "export", "--tree-size", "256", "--out", str(home / "cp256"))
    assert proc.returncode == 0, proc.stderr
    mldsa.load_public_key((home / "cp256" / "signer.pub.pem").read_bytes()).verify(
        (home / "cp256" / "checkpoint.sig").read_bytes(), (home / "cp256" / "checkpoint").read_bytes())
    assert (home / "cp256" / "checkpoint").read_bytes() == bytes(builder.checkpoints[0]["body"])
    proc = cli(home, topics, bootstrap, "show", "--seq", str(GENUINE), "--json", "--wait", "0")
    assert proc.returncode == 1 and f"no entry with seq {GENUINE}" in proc.stderr, proc.stderr
    proof = json.loads(cli(home, topics, bootstrap, "prove", "inclusion", "--seq", "3", "--json").stdout)
    assert (proof["tree_size"], bytes.fromhex(proof["root_hash"])) == (GENUINE, genuine_root)

    # genuine entries the index has not read yet: refused at once while no follower runs
    more = [builder.entry("coder", payload={"late": i}) for i in range(40)]
    writer.commit([entry_bytes(e) for e in more], [enc("Checkpoint", builder.checkpoint())])
    started = time.monotonic()
    proc = cli(home, topics, bootstrap, "show", "--seq", str(GENUINE + 5), "--json", "--wait", "60")
    assert proc.returncode == 1 and "not in the index yet" in proc.stderr and "not running" in proc.stderr, proc.stderr
    assert time.monotonic() - started < 30  # no waiting for a follower that does not run
    proc = cli(home, topics, bootstrap, "prove", "consistency", "--from", "10", "--to", str(GENUINE + 40), "--json")
    assert proc.returncode == 1 and "not in the index yet" in proc.stderr, proc.stderr
    proc = cli(home, topics, bootstrap, "prove", "consistency", "--from", "10", "--to", "99999", "--json")
    assert proc.returncode == 1 and f"must be <= {GENUINE + 40} (ledger size)" in proc.stderr, proc.stderr

    # with a follower running, the read waits for it and answers
    follower = subprocess.Popen([sys.executable, "-m", "ledgerstream.cli.main", "index", "run", "--topic-prefix",
                                 prefix(topics), "--bootstrap", bootstrap, "--home", str(home)],
                                env=dict(os.environ, LEDGERSTREAM_HOME=str(home)), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:  # a read waits only while a follower runs: let it start first (its status file names its pid)
        wait_until(lambda: follower_alive(IndexPaths.of(home)), 60, "the index follower to start")
        shown = cli(home, topics, bootstrap, "show", "--seq", str(GENUINE + 39), "--json", "--wait", "90")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["entry_hash"] == bytes(more[-1]["entry_hash"]).hex()
    finally:
        follower.send_signal(signal.SIGTERM)
        follower.wait(60)


def test_without_an_index_the_full_read_still_refuses_forged_records(
        ledger: dict, bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    builder, writer = ledger["builder"], ledger["writer"]
    forged = builder.copy()
    forged.entry("planner", payload={"forged": True}, key=ROGUE)
    writer.commit([entry_bytes(forged.entries[-1])], [enc("Checkpoint", forged.checkpoint(key=ROGUE))])
    bare = tmp_path / "bare"  # trusted key, no index
    (bare / "keys").mkdir(parents=True)
    (bare / "keys" / "signer.pub.pem").write_bytes(mldsa.public_key_pem(KEY.public_key()))
    notes: list[str] = []
    with pytest.raises(LookupError, match=f"no entry with seq {GENUINE}"):
        ledger_answers.entry(bare, bootstrap, topics, GENUINE, note=notes.append)
    assert notes and "no ledger index" in notes[0]
    assert [c["tree_size"] for c in ledger_answers.checkpoints(bare, bootstrap, topics)] == [256, GENUINE]
    proof = ledger_answers.inclusion(bare, bootstrap, topics, 5, None)
    assert (proof["tree_size"], bytes.fromhex(proof["root_hash"])) == (
        GENUINE, mth_from_leaf_hashes(leaf_hashes(builder, GENUINE)))


def test_replay_from_the_index_equals_the_full_read_and_reads_k_entries(
        bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    """``replay`` (agent filter, --follow-links across three agents, a forged record under
    another key) from the index gives the same entries and verdicts as the full read through
    the core (a second path), and both match the ledger built here."""
    builder = LedgerBuilder(KEY)
    linked: list[int] = []
    for i in range(300):
        if i % 50 == 10:  # planner -> researcher -> writer, each linked to its cause
            plan = builder.entry("planner", action_type="llm:plan")
            research = builder.entry("researcher", action_type="tool:search",
                                     links=[("planner", plan["action"]["event_id"])])
            write = builder.entry("writer", action_type="data:write:report",
                                  links=[("researcher", research["action"]["event_id"])])
            linked += [plan["seq"], research["seq"], write["seq"]]
        else:
            builder.entry(("noise-a", "noise-b")[i % 2], action_type="tool:ping")
    forged = builder.copy()
    forged.entry("researcher", action_type="data:delete:everything", key=ROGUE)  # continues the chain, other key
    writer = LedgerWriter(bootstrap, topics)
    half = len(builder.entries) // 2
    writer.commit([entry_bytes(e) for e in builder.entries[:half]], [enc("Checkpoint", builder.checkpoint(size=half))])
    writer.commit([entry_bytes(forged.entries[-1])])
    writer.commit([entry_bytes(e) for e in builder.entries[half:]], [enc("Checkpoint", builder.checkpoint())])
    home, bare = tmp_path / "home", tmp_path / "bare"
    for h in (home, bare):
        (h / "keys").mkdir(parents=True)
        (h / "keys" / "signer.pub.pem").write_bytes(mldsa.public_key_pem(KEY.public_key()))
    index_once(home, topics, bootstrap)

    def replay(h: Path, *args: str) -> dict:
        proc = cli(h, topics, bootstrap, "replay", *args, "--json", "--wait", "0")
        assert proc.returncode in (0, 1) and proc.stdout, (proc.returncode, proc.stderr[-3000:])
        return json.loads(proc.stdout)

    for args in (["--agent", "researcher", "--follow-links"], ["--action-type", "data:*"], ["--seq", "40..80"],
                 ["--session", "nope"]):
        fast, full = replay(home, *args), replay(bare, *args)
        assert (fast["ledger"]["source"], full["ledger"]["source"]) == ("index", "topics")
        assert fast["entries"] == full["entries"], args
        assert fast["summary"] == full["summary"] and fast["ok"] == full["ok"], args
    chained = replay(home, "--agent", "researcher", "--follow-links")
    on_chain = [e for e in chained["entries"] if e["checks"]["chain"]["status"] == "ok"]
    assert sorted(e["seq"] for e in on_chain) == linked  # the closure: every planner, researcher, writer entry
    assert all(e["ok"] for e in on_chain) and {e["checks"]["inclusion"]["status"] for e in on_chain} == {"ok"}
    rogue = [e for e in chained["entries"] if e["action_type"] == "data:delete:everything"]
    assert len(rogue) == 1 and not rogue[0]["ok"] and "unknown_key" in rogue[0]["checks"]["chain"]["detail"]
    assert chained["ledger"]["entries"] == len(builder.entries)
    # agents: the same rows from the index and from the full read, the forged record not counted
    want = {}
    for e in builder.entries:
        agent = e["action"]["agent_id"]
        n, first = want.get(agent, (0, e["seq"]))
        want[agent] = (n + 1, first)
    for h in (home, bare):
        proc = cli(h, topics, bootstrap, "agents", "--json", "--wait", "0")
        assert proc.returncode == 0, proc.stderr
        assert "1 record(s) on the entries topic are not entries of this ledger" in proc.stderr
        rows = json.loads(proc.stdout)
        assert {r["agent_id"]: (r["entries"], r["first_seq"]) for r in rows} == want
        assert next(r for r in rows if r["agent_id"] == "researcher")["chain_head"] == \
            bytes([e for e in builder.entries if e["action"]["agent_id"] == "researcher"][-1]["entry_hash"]).hex()
