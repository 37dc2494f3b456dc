"""Witnessed checkpoints on the dev stack (docs/witnesses.md): torchwood's litewitness (built
from Go modules) and ``ledgerstream witness serve`` cosign every checkpoint, every reader
reports it, Go's golang.org/x/mod/sumdb/note and sumdb/tlog accept the checkpoint note and
proofs (and refuse them after a one-byte change), and a second signer with the same keys
that writes another history is refused by both witnesses and caught as a split view."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import stack_kafka_config
from support.tlogclient import build_tlogclient, run_client
from tests.support.actions import encode_action

pytestmark = pytest.mark.e2e

LITEWITNESS = "litewitness.dev/witness"
PQ_WITNESS = "ledgerstream.dev/witness-pq"


def cli(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ledgerstream.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def need_litewitness(state: dict) -> None:
    if not any(w["name"] == LITEWITNESS for w in state["witnesses"]):
        if os.environ.get("CI") == "true":
            pytest.fail("the dev stack has no litewitness (go or ssh-agent missing?)")
        pytest.skip("go or ssh-agent is not on PATH: no litewitness in the dev stack")


def produce(state: dict, n: int, agent: str, topic: str | None = None) -> None:
    from confluent_kafka import Producer

    producer = Producer(stack_kafka_config(state, "producer" if topic is None else "admin"))
    for i in range(n):
        producer.produce(topic or state["topics"]["actions"], encode_action(agent_id=f"{agent}-{i % 3}"))
    assert producer.flush(30) == 0


def cosigned_checkpoints(env: dict, min_size: int, timeout: float = 150) -> list[dict]:
    """Wait until a checkpoint of at least ``min_size`` entries has verified cosignatures
    from both witnesses."""
    deadline, cps = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        cps = json.loads(cli(env, "checkpoints", "list", "--json").stdout or "[]")
        if cps and cps[-1]["tree_size"] >= min_size and {
                c["witness"] for c in cps[-1]["cosignatures"] if c["verified"]} == {LITEWITNESS, PQ_WITNESS}:
            return cps
        time.sleep(1)
    status = cli(env, "witness", "status").stdout
    raise AssertionError(f"no cosigned newest checkpoint within {timeout}s; witness client: {status}; {cps[-1:]}")


def ledger_size(env: dict) -> int:
    return json.loads(cli(env, "index", "status", "--json").stdout)["indexed_size"]


def test_every_checkpoint_is_cosigned_and_go_verifies_the_note_and_proofs(dev_stack: dict, tmp_path: Path) -> None:
    need_litewitness(dev_stack)
    env = dev_stack["env"]
    witnesses = {w["name"]: w for w in dev_stack["witnesses"]}
    assert all(isinstance(w["pid"], int) and w["url"].startswith("http://127.0.0.1:") for w in witnesses.values())
    start = ledger_size(env)
    produce(dev_stack, 150, "witnessed")
    cosigned_checkpoints(env, start + 150)
    produce(dev_stack, 150, "witnessed-2")
    cps = cosigned_checkpoints(env, start + 300)
    assert len(cps) >= 2
    for c in cps:  # every checkpoint, each with its own cosignatures, all verified
        got = {(s["witness"], s["key_type"]) for s in c["cosignatures"] if s["verified"]}
        assert got == {(LITEWITNESS, "ed25519"), (PQ_WITNESS, "ml-dsa-65")}, c
        assert c["witnessed"] is True, (c, json.loads(cli(env, "index", "status", "--json").stdout))
    report = json.loads(cli(env, "verify", "--json").stdout)
    assert report["ok"], report["errors"]
    # the dashboard (entry pages from the index): the entry's checkpoint is witnessed
    import urllib.request

    token = Path(dev_stack["dashboard"]["token_file"]).read_text().strip()
    req = urllib.request.Request(dev_stack["dashboard"]["url"].rstrip("/") + f"/api/entry/{start}",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback)
        page = json.loads(resp.read())
    assert page["state"] == "witnessed" and page["verified"], page["checks"]
    assert [c["status"] for c in page["checks"] if c["name"] == "witnessed"] == ["ok"]
    assert report["witnesses"]["quorum"] == 2 and report["witnesses"]["witnessed_size"] >= cps[-1]["tree_size"]
    assert {c["witness"] for c in report["witnesses"]["cosigned"]} == {LITEWITNESS, PQ_WITNESS}

    # Go: the note with the log's Ed25519 key and litewitness's cosignature key, then the tiles
    binary = build_tlogclient()
    log_vkey = (Path(dev_stack["home"]) / "keys" / "signer.vkey").read_text().splitlines()[0]
    tiles = tmp_path / "tiles"
    shutil.copytree(Path(dev_stack["index"]["tiles_dir"]), tiles)
    size = int((tiles / "checkpoint").read_text().splitlines()[1])
    code, rep = run_client(binary, str(tiles), None, None, indexes=[0, size - 1], note_vkeys=[log_vkey],
                           cosigner_vkeys=[witnesses[LITEWITNESS]["vkey"]])
    assert code == 0 and rep["ok"], json.dumps(rep)[:3000]
    assert set(rep["note"]["verified_by"]) == {"ledgerstream/dev", LITEWITNESS} and rep["note"]["size"] == size
    assert all(i["ok"] for i in rep["inclusion"])
    exported = tmp_path / "export"
    assert cli(env, "checkpoints", "export", "--tree-size", str(cps[-1]["tree_size"]), "--out", str(exported)).returncode == 0
    assert (exported / "checkpoint.note").read_bytes().count("\u2014 ".encode()) == 4  # Ed25519, ML-DSA-65, 2 cosigs
    for where in ("root", "cosignature"):
        note = bytearray((Path(dev_stack["index"]["tiles_dir"]) / "checkpoint").read_bytes())
        at = note.index(b"\n", note.index(b"\n") + 1) + 3 if where == "root" else len(note) - 20
        note[at] ^= 0x01
        (tiles / "checkpoint").write_bytes(bytes(note))
        code, rep = run_client(binary, str(tiles), None, None, indexes=[0], note_vkeys=[log_vkey],
                               cosigner_vkeys=[witnesses[LITEWITNESS]["vkey"]])
        assert code == 1 and rep["note"]["error"], (where, rep)


def test_a_second_signer_with_the_same_keys_is_refused_by_the_witnesses_and_caught(own_stack: dict,
                                                                                   tmp_path: Path) -> None:
    """The split view: signer B holds A's keys and writes another history to other topics.
    Its own stack: a verifier raises a split_view alert on it."""
    dev_stack = own_stack
    need_litewitness(dev_stack)
    from ledgerstream.core.config import Topics
    from ledgerstream.core.kafka_security import role_env
    from ledgerstream.core.verify import checker_config
    from ledgerstream.core.verify.trust import load_witnesses
    from ledgerstream.index.paths import IndexPaths
    from ledgerstream.index.reads import IndexedLedger
    from ledgerstream.stack.topics import ensure_topics
    from ledgerstream.witness.client import WitnessClient

    env, home = dev_stack["env"], Path(dev_stack["home"])
    bootstrap = dev_stack["kafka"]["bootstrap"]
    start = ledger_size(env)
    produce(dev_stack, 40, "honest")
    a_size = cosigned_checkpoints(env, start + 40)[-1]["tree_size"]
    prefix = "splitview."
    b = Topics.with_prefix(prefix)
    admin_env = {**env, **role_env(bootstrap, "admin", home)}  # an insider's principal on other topics
    ensure_topics(bootstrap, b)
    signer = subprocess.Popen([sys.executable, "-m", "ledgerstream.signer_worker", "--home", str(home),
                               "--topic-prefix", prefix, "--no-leader-election", "--checkpoint-every", "10",
                               "--status-file", str(tmp_path / "b-signer.json")],
                              env=admin_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        produce(dev_stack, a_size + 25, "evil", topic=b.actions)  # a longer, different history
        b_index = IndexPaths(tmp_path / "b-index", tmp_path / "b-tiles")
        deadline = time.monotonic() + 120
        while True:
            done = subprocess.run([sys.executable, "-m", "ledgerstream.cli.main", "index", "run", "--once",
                                   "--no-alerts", "--topic-prefix", prefix, "--index-dir", str(b_index.index_dir),
                                   "--tiles-dir", str(b_index.tiles_dir)], env=admin_env, capture_output=True,
                                  text=True, timeout=180)
            assert done.returncode == 0, done.stderr[-2000:]
            status = json.loads(subprocess.run([sys.executable, "-m", "ledgerstream.cli.main", "index", "status",
                                                "--json", "--index-dir", str(b_index.index_dir), "--tiles-dir",
                                                str(b_index.tiles_dir), "--topic-prefix", prefix],
                                               env=admin_env, capture_output=True, text=True).stdout)
            if status["tiles_size"] > a_size:
                break
            assert time.monotonic() < deadline, status
            time.sleep(1)
    finally:
        signer.terminate()
        signer.wait(30)
    # B's witness client: the same code as the dev stack's, on B's index, to the same witnesses
    config = checker_config(home)
    witnesses, _ = load_witnesses(home)
    committed: list[bytes] = []
    client = WitnessClient(witnesses, config, committed.append)
    ledger = IndexedLedger.open(b_index, bootstrap, b, config)
    try:
        assert client.step(ledger) == 0
    finally:
        ledger.close()
    assert committed == []
    for view in client.views.values():  # each answered 409 (it knows A's size), then refused B's proof
        assert view.size is not None and view.size >= a_size, view.status()
        assert view.last_error and view.last_error.startswith("HTTP 422"), view.status()
    # a verifier that sees both copies: verify --peer-prefix fails with split_view
    found = cli(admin_env, "verify", "--json", "--peer-prefix", prefix)
    report = json.loads(found.stdout)
    assert found.returncode == 1 and not report["ok"]
    assert {f["kind"] for f in report["errors"]} == {"split_view"}, report["errors"][:3]
    assert cli(env, "verify", "--json").returncode == 0  # A alone is intact
    # a verifier worker that also follows B's checkpoints raises a signed split_view alert
    from ledgerstream.core import mldsa
    from ledgerstream.core.alert_signature import verifier_key_path, verifier_public_key_path

    key = mldsa.PrivateKey.generate()
    mldsa.save_private_key(key, verifier_key_path(home, "vpeer"))
    verifier_public_key_path(home, "vpeer").write_bytes(mldsa.public_key_pem(key.public_key()))
    worker = subprocess.Popen([sys.executable, "-m", "ledgerstream.verifier_worker", "--home", str(home), "--id", "vpeer",
                               "--peer-prefix", prefix], env=admin_env, stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "vpeer.log", "w"))
    try:
        deadline, alerts = time.monotonic() + 120, []
        while time.monotonic() < deadline and not alerts:
            alerts = [a for a in json.loads(cli(env, "alerts", "--kind", "split_view", "--json").stdout or "[]")
                      if a["verifier_id"] == "vpeer"]
            time.sleep(1)
        assert alerts, (tmp_path / "vpeer.log").read_text()[-3000:]
        assert alerts[0]["authenticity"] == "verified" and alerts[0]["severity"] == "critical"
    finally:
        worker.terminate()
        worker.wait(60)


def test_bundles_carry_the_cosigned_note_and_verify_bundle_checks_the_witness_policy(dev_stack: dict,
                                                                                    tmp_path: Path) -> None:
    import hashlib
    import zipfile

    from ledgerstream.tools import bundle_format as bf

    need_litewitness(dev_stack)
    env, home = dev_stack["env"], Path(dev_stack["home"])
    start = ledger_size(env)
    produce(dev_stack, 30, "bundled")
    cosigned_checkpoints(env, start + 30)
    out = tmp_path / "b.zip"
    done = cli(env, "export", "bundle", "--agent", "bundled-0", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    pin = ["--witnesses", str(home / "witnesses.json"), "--trusted-key", str(home / "keys" / "signer.pub.pem")]
    report = json.loads(cli(env, "verify-bundle", str(out), "--json", *pin).stdout)
    assert report["ok"], report["errors"]
    w = report["witnesses"]
    assert (w["source"], w["quorum"], w["witnessed"]) == ("pinned", 2, True)
    assert {(c["witness"], c["key_type"]) for c in w["cosignatures"]} == {(LITEWITNESS, "ed25519"),
                                                                          (PQ_WITNESS, "ml-dsa-65")}
    unpinned = json.loads(cli(env, "verify-bundle", str(out), "--json").stdout)
    assert unpinned["ok"] and (unpinned["witnesses"]["source"], unpinned["witnesses"]["witnessed"]) == ("bundle", True)
    with zipfile.ZipFile(out) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}

    def rezip(changed: dict[str, bytes | None], name: str) -> Path:
        m = {k: v for k, v in {**members, **changed}.items() if v is not None and k != bf.MANIFEST}
        m[bf.MANIFEST] = bf.canonical({"format": bf.FORMAT, "format_version": bf.FORMAT_VERSION, "spec_version": 1,
                                       "members": {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
                                                   for n, d in sorted(m.items())}})
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as zf:
            for n, d in sorted(m.items()):
                zf.writestr(n, d)
        return path

    note = bytearray(members[bf.NOTE])
    # inside the last cosignature's base64 (a full group, clear of the padding): another base64
    # letter, so the line still parses and the signature must fail (flipping a bit could make
    # it a non-base64 character, e.g. 'A' -> '@', and the note would not parse at all)
    note[-10] = ord("B") if note[-10] != ord("B") else ord("C")
    for path, why in ((rezip({bf.NOTE: bytes(note)}, "forged.zip"), "does not verify"),
                      (rezip({bf.NOTE: None, bf.WITNESSES: None}, "unwitnessed.zip"), "cosigned by 2")):
        bad = json.loads(cli(env, "verify-bundle", str(path), "--json", *pin).stdout)
        assert not bad["ok"] and any(e["check"] == "witness" and why in e["detail"] for e in bad["errors"]), bad["errors"]
    # the bundle's own (unpinned) policy: a forged line still fails, a missing note only informs
    assert not json.loads(cli(env, "verify-bundle", str(tmp_path / "forged.zip"), "--json").stdout)["ok"]
    plain = json.loads(cli(env, "verify-bundle", str(tmp_path / "unwitnessed.zip"), "--json").stdout)
    assert plain["ok"] and plain["witnesses"] is None


def test_our_witness_killed_with_sigkill_restarts_from_its_state_and_keeps_cosigning(dev_stack: dict) -> None:
    import signal

    need_litewitness(dev_stack)
    env, home = dev_stack["env"], Path(dev_stack["home"])

    def pq_pid() -> int | None:
        state = json.loads(cli(env, "dev", "status", "--json").stdout)
        return next(w["pid"] for w in state["witnesses"] if w["name"] == PQ_WITNESS)

    before = pq_pid()
    assert before is not None
    state_file = home / "witness" / "pq" / "witness-state.json"
    cosigned_size = json.loads(state_file.read_text())["logs"]["ledgerstream/dev"]["size"]
    os.kill(before, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while (pid := pq_pid()) in (None, before):
        assert time.monotonic() < deadline, "the supervisor did not restart the witness"
        time.sleep(0.5)
    start = ledger_size(env)
    produce(dev_stack, 20, "after-kill")
    cps = cosigned_checkpoints(env, start + 20)
    after = json.loads(state_file.read_text())["logs"]["ledgerstream/dev"]["size"]
    assert cosigned_size < after == cps[-1]["tree_size"]  # it went on from the size it had persisted
    assert "HTTP 4" not in cli(env, "witness", "status").stdout  # no refusal: consistent with its old state
